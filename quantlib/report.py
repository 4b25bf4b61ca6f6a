"""Tables and figures for the book, from the summary table only (cheap stage)."""
from __future__ import annotations

import matplotlib.pyplot as plt  # inline backend inside the book's kernels
import pandas as pd

from . import paths

METHOD_ORDER = ["fp", "bnb-int8", "bnb-nf4", "bnb-fp4", "gptq"]
PPL = {"wikitext2": "WikiText-2", "ptb": "PTB", "c4": "C4"}
BENCH = {"mmlu": "MMLU (acc)", "gsm8k": "GSM8K (exact match)"}
MIB = 2 ** 20


def summary(path=paths.SUMMARY) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make summary` (or `make runs` first)")
    df = pd.read_csv(path)
    df["method"] = pd.Categorical(df["method"], METHOD_ORDER + sorted(set(df["method"]) - set(METHOD_ORDER)),
                                  ordered=True)
    return df.sort_values(["model", "method", "bits"], ascending=[True, True, False]).reset_index(drop=True)


def done(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "done"].copy()


def baseline(df: pd.DataFrame, model: str) -> pd.Series:
    fp = df[(df["model"] == model) & (df["method"] == "fp")]
    if fp.empty:
        raise ValueError(f"no finished fp baseline for {model}")
    return fp.iloc[0]


VARIANTS = ["fp", "bnb_int8", "bnb_nf4", "bnb_fp4", "gptq_8b", "gptq_4b", "gptq_3b", "gptq_2b"]


def key(label: str) -> str:
    """Glue-friendly variant key; every full-precision baseline is 'fp' (fp32 on CPU, bf16 on GPU)."""
    return "fp" if label in ("fp32", "bf16", "fp16") else label.replace("-", "_")


def per_variant(df: pd.DataFrame, model: str, value) -> dict:
    """value(row) for each expected variant of one model; NaN where a run is missing or failed."""
    out = {k: float("nan") for k in VARIANTS}
    for _, r in df[df["model"] == model].iterrows():
        out[key(r["label"])] = value(r)
    return out


def table(df: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """Rows = variants, columns renamed for print; missing metrics stay empty."""
    out = df[["model", "label"] + [c for c in columns if c in df]].rename(columns=columns)
    return out.rename(columns={"model": "Model", "label": "Variant"})


def plot_vs_bits(df: pd.DataFrame, metrics: dict, ylabel: str | None = None, logy: bool = False):
    """One panel per metric: GPTQ as a line over bits, other methods as points, fp as a dashed line."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, (col, title) in zip(axes[0], metrics.items()):
        for model, g in df.groupby("model"):
            gq = g[g["method"] == "gptq"].sort_values("bits")
            if not gq.empty:
                ax.plot(gq["bits"], gq[col], "o-", label=f"GPTQ ({model})")
            for m, marker in (("bnb-int8", "s"), ("bnb-nf4", "^"), ("bnb-fp4", "v")):
                gm = g[g["method"] == m]
                if not gm.empty:
                    ax.plot(gm["bits"], gm[col], marker, ms=8, label=f"{m} ({model})")
            fp = g[g["method"] == "fp"]
            if not fp.empty:
                ax.axhline(fp[col].iloc[0], ls="--", color="grey", label=f"{fp['label'].iloc[0]} ({model})")
        ax.set_title(title)
        ax.set_xlabel("bits per weight")
        ax.set_xticks([2, 3, 4, 8])
        if logy:
            ax.set_yscale("log")
        if ylabel:
            ax.set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def glue_value(name: str, value) -> None:
    """Glue a number or text for the prose; numpy scalars become Python ones so formats like :.2f work."""
    from myst_nb import glue

    glue(name, value.item() if hasattr(value, "item") else value, display=False)
