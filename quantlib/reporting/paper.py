"""The paper's own numbers (Jin et al., 2024, Tables 2-15) beside this project's, as effects.

The tables are read from QUANTLIB_PAPER_DIR (the offline copy's `paper/` folder; never part of the
project). Models differ in size and baseline, so the comparison is of effects against each model's
own baseline: score deltas in this project's units (the benchmark registry's `paper.factor`), and
perplexity as a ratio. Which benchmark and method of the paper match ours is said by the benchmark
registry (`paper:`) and the method registry (`paper`), nothing else.
"""
from __future__ import annotations

from functools import cache

import pandas as pd

from quantlib.io import paths
from quantlib.quantization import methods
from quantlib.scoring import suite

MODELS = ("Qwen-7B-Chat", "Qwen-14B-Chat", "Qwen-72B-Chat")


def available() -> bool:
    return paths.paper_dir() is not None


@cache
def _csv(name: str) -> pd.DataFrame:
    """A table of the paper; `value_text` keeps each value as printed (its decimals are its precision)."""
    path = paths.paper_dir() / name
    df = pd.read_csv(path, dtype={"subset": str}, keep_default_na=False, na_values=[""])
    if "value" in df:
        df["value_text"] = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=["value"])["value"]
    return df


def _printed_step(text: str) -> float:
    """The step of a value as printed: 0.01 for "0.21", 1 for "54"."""
    return 10.0 ** -len(text.partition(".")[2])


def _config_label(method: str, bits: int) -> str:
    """The paper's configuration as this project labels it (bf16, bnb-int8, gptq-4b)."""
    ours = next((m for m in methods.registry().values() if m.paper == method), None)
    if ours is None:
        return f"{method}-{bits}b"
    return "bf16" if ours.name == "fp" else ours.label(int(bits), ours.group_size, ours.params, "")


def effects(name: str) -> pd.DataFrame:
    """The paper's effect on one benchmark's mapped metric: per model and configuration, the value,
    its delta from that model's bf16 baseline (our units), the paper's significance mark, and `step`,
    the precision it printed the value to in our units (ROUGE as a fraction to two decimals: 1 point)."""
    spec = suite.registry()[name].get("paper")
    none = pd.DataFrame(columns=["model", "label", "value", "delta", "significant", "step"])
    if not spec or not available():
        return none
    r = _csv("results.csv")
    r = r[(r["table"] == f"Table {spec['table']}") & (r["benchmark"] == spec["benchmark"])
          & (r["metric"] == spec["measure"])]
    if spec.get("subset"):
        r = r[r["subset"] == spec["subset"]]
    if r.empty:  # a copy of the tables without this benchmark
        return none
    r = r.assign(value=r["value"].astype(float) * spec["factor"],
                 step=[_printed_step(t) * spec["factor"] for t in r["value_text"]],
                 label=[_config_label(m, b) for m, b in zip(r["method"], r["bits"])])
    base = r[r["method"] == "bf16"].set_index("model")["value"]
    r = r.assign(delta=r["value"] - r["model"].map(base))
    return r[["model", "label", "value", "delta", "significant", "step"]].reset_index(drop=True)


def perplexity_ratios() -> pd.DataFrame:
    """Table 7 as ratios: each configuration's perplexity over its model's bf16 perplexity."""
    r = _csv("results.csv")
    r = r[r["table"] == "Table 7"].assign(value=lambda d: d["value"].astype(float))
    r = r.assign(label=[_config_label(m, b) for m, b in zip(r["method"], r["bits"])])
    base = r[r["method"] == "bf16"].set_index(["model", "benchmark"])["value"]
    r = r.assign(ratio=[v / base[(m, c)] for v, m, c in zip(r["value"], r["model"], r["benchmark"])])
    return r.rename(columns={"benchmark": "corpus"})[["model", "label", "corpus", "value", "ratio"]]


def wikitext2_ratios() -> pd.Series:
    """Table 7's WikiText-2 ratios, indexed by (model, label)."""
    r = perplexity_ratios()
    return r[r["corpus"] == "wikitext2"].set_index(["model", "label"])["ratio"]


def correlations() -> pd.DataFrame:
    """Table 3: Pearson r between average perplexity and each benchmark metric."""
    return _csv("perplexity_correlation.csv")


def spqr_ablation() -> pd.DataFrame:
    return _csv("spqr_ablation.csv")


def spqr_outliers() -> pd.DataFrame:
    return _csv("spqr_outliers.csv")


def pearson(name: str, metric: str) -> float | None:
    """Table 3's Pearson r between perplexity and one benchmark metric, where the registry maps it."""
    spec = suite.registry()[name].get("paper")
    if not available() or not spec or spec["metric"] != metric:
        return None
    c = correlations()
    c = c[(c["benchmark"] == spec["benchmark"]) & (c["metric"] == spec["measure"])]
    if spec.get("subset"):
        c = c[c["subset"] == spec["subset"]]
    return float(c["pearson_r"].iloc[0]) if len(c) else None


def outlier_shares() -> pd.DataFrame:
    """Table 5: the share of weights SpQR keeps in high precision (%), bits x model."""
    t = spqr_outliers().pivot(index="bits", columns="model", values="outlier_percent")[list(MODELS)]
    return t.rename(columns=lambda m: f"paper {m.removesuffix('-Chat')}").sort_index(ascending=False)


def ablation_ratios(corpus: str = "wikitext2") -> pd.DataFrame:
    """Table 4 as ratios: each 2-bit SpQR variant's perplexity over the paper's default (group 16 with
    outliers), per model."""
    a = spqr_ablation()
    a = a[a["dataset"] == corpus]
    base = a[(a["group_size"] == 16) & (a["outliers_isolated"].astype(str) == "True")].set_index("model")["perplexity"]
    a = a.assign(ratio=a["perplexity"] / a["model"].map(base))
    return a.pivot(index="config_label", columns="model", values="ratio")[list(MODELS)].rename(
        columns=lambda m: f"paper {m.removesuffix('-Chat')}")


def significant_drops(label: str) -> dict[str, tuple[list[str], int]]:
    """Per paper model: the benchmarks where the paper marks `label` significantly below its BF16
    baseline, and how many mapped benchmarks carry such marks at all (C1's rule, on the paper's tables)."""
    out = {m: ([], 0) for m in MODELS}
    for name in suite.names():
        e = effects(name)
        for _, r in e[(e["label"] == label) & e["significant"].notna()].iterrows():
            drops, marked = out[r["model"]]
            dropped = str(r["significant"]) == "True" and r["delta"] < 0
            out[r["model"]] = (drops + [name] if dropped else drops, marked + 1)
    return out


def _short(model: str) -> str:
    return model.removesuffix("-Chat").removeprefix("Qwen-")


def _table(table: str, **match) -> pd.DataFrame:
    r = _csv("results.csv")
    r = r[r["table"] == table]
    for k, v in match.items():
        r = r[r[k] == v]
    return r.assign(value=r["value"].astype(float),
                    label=[_config_label(m, b) for m, b in zip(r["method"], r["bits"])])


def claim_numbers(key: str, cfg: dict) -> str:
    """The paper's own numbers behind one claim (data/claims.yaml's key), computed from its tables:
    the effect each claim is about, for each of the paper's models."""
    if not available():
        return ""
    ratios = perplexity_ratios()
    wiki = wikitext2_ratios()
    if key == "C1":
        v = cfg["C1"]["variant"]
        mmlu = effects("mmlu").set_index(["model", "label"])["delta"]
        drops = significant_drops(v)
        return "; ".join(f"{_short(m)}: WikiText-2 x{wiki[(m, v)]:.3f}, MMLU {100 * mmlu[(m, v)]:+.1f} pts, "
                         f"marked significant drops on {len(drops[m][0])} of {drops[m][1]} benchmarks"
                         for m in MODELS)
    if key == "C2":
        r = correlations()["pearson_r"].astype(float)
        return f"Table 3: mean |Pearson r| {r.abs().mean():.2f} over {len(r)} benchmark metrics"
    if key == "C3":  # as ours: the larger model's best-perplexity variant within the memory budget
        mmlu = _table("Table 9", benchmark="mmlu", subset="average").set_index(["model", "label"])["value"]
        mem = _table("Table 8", metric="memory_gb").set_index(["model", "label"])["value"]
        ppl = ratios[ratios["corpus"] == "wikitext2"].set_index(["model", "label"])["value"]
        out = []
        for big, small in zip(MODELS[1:], MODELS[:-1]):
            fits = [lab for (m, lab), gb in mem.items() if m == big and lab != "bf16"
                    and gb <= cfg["C3"]["max_memory_ratio"] * mem[(small, "bf16")]]
            best = min(fits, key=lambda lab: ppl[(big, lab)])
            out.append(f"{_short(big)} {best} ({mem[(big, best)]:.1f} GB) vs {_short(small)} BF16 "
                       f"({mem[(small, 'bf16')]:.1f} GB): MMLU {mmlu[(big, best)]:.1f} vs {mmlu[(small, 'bf16')]:.1f}")
        return "; ".join(out)
    if key == "C4":
        speed = _table("Table 8", metric="tokens_per_s").set_index(["model", "label"])["value"]
        gptq = {m: "/".join(f"{speed[(m, f'gptq-{b}b')]:.1f}" for b in (8, 4, 3, 2)) for m in MODELS}
        return "; ".join(f"{_short(m)} tokens/s: BF16 {speed[(m, 'bf16')]:.1f}, "
                         f"LLM.int8() {speed[(m, 'bnb-int8')]:.1f}, GPTQ 8/4/3/2 {gptq[m]}" for m in MODELS)
    if key == "C5":
        return "; ".join(f"{_short(m)}: WikiText-2 x{wiki[(m, 'gptq-2b')]:.3g} (GPTQ-2) vs "
                         f"x{wiki[(m, 'spqr-2b')]:.3g} (SpQR-2)" for m in MODELS)
    return ""


def efficiency_ratios() -> pd.DataFrame:
    """Table 8 as ratios to each model's BF16 baseline: memory (GB) and decode speed (tokens/s)."""
    r = _table("Table 8")
    base = r[r["method"] == "bf16"].set_index(["model", "metric"])["value"]
    r = r.assign(ratio=[v / base[(m, k)] for v, m, k in zip(r["value"], r["model"], r["metric"])])
    return r[["model", "label", "metric", "value", "ratio"]].reset_index(drop=True)
