"""Tables and figures for the book, from the summary table only (cheap stage)."""
from __future__ import annotations

import matplotlib.pyplot as plt  # inline backend inside the book's kernels
import pandas as pd

from . import benchmarks, paths

METHOD_ORDER = ["fp", "bnb-int8", "bnb-nf4", "bnb-fp4", "gptq", "spqr"]
PPL = {"wikitext2": "WikiText-2", "ptb": "PTB", "c4": "C4"}
METRIC_NAMES = {"acc": "acc", "exact_match": "exact match", "bleu": "BLEU", "rouge1": "ROUGE-1",
                "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "acc_sum": "acc (summed log-lik.)",
                "amb_bias_score": "bias, ambiguous", "disamb_bias_score": "bias, disambiguated",
                "accuracy_amb": "acc, ambiguous", "accuracy_disamb": "acc, disambiguated",
                "hsr": "HSR", "ssr": "SSR", "csl": "CSL"} | {f"hsr_level{k}": f"HSR level {k}" for k in range(1, 6)}
MIB = 2 ** 20
LINES = ("gptq", "spqr")  # methods drawn as a line over bits; the others as points
MARKERS = {"bnb-int8": "s", "bnb-nf4": "^", "bnb-fp4": "v"}


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


VARIANTS = ["fp", "bnb_int8", "bnb_nf4", "bnb_fp4"] + [f"{m}_{b}b" for m in LINES for b in (8, 4, 3, 2)]


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


def title(name: str, metric: str | None = None) -> str:
    """'MMLU (acc)', 'XSum (ROUGE-2)': a benchmark and one of its metrics, for axes and headers."""
    metric = metric or benchmarks.headline(name)
    return f"{benchmarks.registry()[name]['title']} ({METRIC_NAMES.get(metric, metric)})"


def column(name: str, metric: str | None = None) -> str:
    """The summary column of a benchmark metric (the headline metric is the bare name)."""
    return name if metric in (None, benchmarks.headline(name)) else f"{name}_{metric}"


def bench_table(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Every metric of one benchmark per variant, plus the number of items scored."""
    cols = {column(name, m): METRIC_NAMES.get(m, m) for m in benchmarks.registry()[name]["metrics"]}
    cols[f"{name}_n"] = "n"
    return table(df, cols)


def groups_table(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Per-discipline scores (MMLU's four groups, C-Eval's four and its Hard subset) per variant."""
    cols = {name: "all"} | {f"{name}_group_{g}": g for g in benchmarks.groups(name)}
    return table(df, cols)


def baseline_table(df: pd.DataFrame, model: str, names) -> pd.DataFrame:
    """Per benchmark: the fp baseline's headline score beside its chance level and the range
    the quantized variants span."""
    fp = baseline(df, model)
    quant = df[(df["model"] == model) & (df["method"] != "fp")]
    rows = []
    for n in names:
        if n not in df:
            continue
        rows.append({"benchmark": title(n), "items": fp[f"{n}_n"], "baseline": fp[n],
                     "chance": fp.get(f"{n}_chance"), "quantized min": quant[n].min(),
                     "quantized max": quant[n].max()})
    return pd.DataFrame(rows)


def _main_variants(g: pd.DataFrame, method: str) -> pd.DataFrame:
    """A method's line: its runs at default settings (no ablation variants), sorted by bits."""
    return g[g["label"] == [f"{method}-{int(b)}b" for b in g["bits"]]].sort_values("bits") if not g.empty else g


def plot_vs_bits(df: pd.DataFrame, metrics: dict, ylabel: str | None = None, logy: bool = False,
                 x: str = "bits", xlabel: str = "bits per weight", ncols: int | None = None):
    """One panel per metric: GPTQ and SpQR as lines over bits, bitsandbytes as points, fp dashed.
    With x='linear_bits' every method sits at the bits it really stores (fp as a point too)."""
    ncols = ncols or len(metrics)
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax, (col, name) in zip(axes.flat, metrics.items()):
        for model, g in df.groupby("model"):
            for m in LINES:
                gm = _main_variants(g[g["method"] == m], m)
                if not gm.empty and gm[col].notna().any():
                    gm = gm.sort_values(x)
                    ax.plot(gm[x], gm[col], "o-", label=f"{m.upper()} ({model})")
            for m, marker in MARKERS.items():
                gm = g[g["method"] == m]
                if not gm.empty:
                    ax.plot(gm[x], gm[col], marker, ms=8, label=f"{m} ({model})")
            fp = g[g["method"] == "fp"]
            if not fp.empty:
                lab = f"{fp['label'].iloc[0]} ({model})"
                if x == "bits":
                    ax.axhline(fp[col].iloc[0], ls="--", color="grey", label=lab)
                else:
                    ax.plot(fp[x], fp[col], "*", ms=11, color="grey", label=lab)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        if x == "bits":
            ax.set_xticks([2, 3, 4, 8])
        if logy:
            ax.set_yscale("log")
        if ylabel:
            ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def glue_value(name: str, value) -> None:
    """Glue a number or text for the prose; numpy scalars become Python ones so formats like :.2f work."""
    from myst_nb import glue

    glue(name, value.item() if hasattr(value, "item") else value, display=False)
