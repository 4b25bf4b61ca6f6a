"""Tables and figures for the book, from the summary table only (cheap stage)."""
from __future__ import annotations

import os

import matplotlib.pyplot as plt  # inline backend inside the book's kernels
import numpy as np
import pandas as pd
import seaborn as sns

from quantlib.io import files, paths
from quantlib.models import embedded
from quantlib.quantization import methods
from quantlib.scoring import suite

PPL = {"wikitext2": "WikiText-2", "ptb": "PTB", "c4": "C4"}
METRIC_NAMES = {"acc": "acc", "exact_match": "exact match", "bleu": "BLEU", "rouge1": "ROUGE-1",
                "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "acc_sum": "acc (summed log-lik.)",
                "amb_bias_score": "bias, ambiguous", "disamb_bias_score": "bias, disambiguated",
                "accuracy_amb": "acc, ambiguous", "accuracy_disamb": "acc, disambiguated",
                "hsr": "HSR", "ssr": "SSR", "csl": "CSL"} | {f"hsr_level{k}": f"HSR level {k}" for k in range(1, 6)}
MIB = 2 ** 20
sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)  # every figure of the book


# the book's two parts: the study (the Qwen chat models) and the default grid (make report's fast check)
SCOPES = {"study": ("study.yaml", "study-1.5b.yaml"), "default": ("default.yaml", "spqr-ablation.yaml"),
          "seeds": ("gptq3-seeds.yaml",)}


def scope_runs(scope: str) -> set[str]:
    """The run names a scope's grids produce (a run belongs to the grids whose spec it was run from)."""
    from quantlib.running.spec import load_grid

    return {s.name for g in SCOPES[scope] if (paths.GRIDS / g).exists() for s in load_grid(paths.GRIDS / g)}


def summary(path=paths.SUMMARY, scope: str | None = None) -> pd.DataFrame:
    """The summary, one row per run (the long table's one pivot), methods in the registry's order;
    `scope` keeps the runs of one group of grids (SCOPES: the study, the default grid, the seed spread)."""
    from quantlib.reporting.summary import wide

    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make summary` (or `make runs` first)")
    df = wide(pd.read_csv(path, dtype={"value": object}))
    if scope is not None:
        df = df[df["run"].isin(scope_runs(scope))]
    order = list(methods.registry())
    df["method"] = pd.Categorical(df["method"], order + sorted(set(df["method"]) - set(order)),
                                  ordered=True)
    return df.sort_values(["model", "method", "bits"], ascending=[True, True, False]).reset_index(drop=True)


def done(df: pd.DataFrame) -> pd.DataFrame:
    """Finished runs; where two runs share a variant (the same variant under another protocol, e.g.
    a grid that scores fewer benchmarks), the one with the most measurements is kept."""
    d = df[df["status"] == "done"]
    keep = d.notna().sum(axis=1).sort_values(ascending=False, kind="stable").index
    return comparable_speeds(d.loc[keep].drop_duplicates(["model", "label"]).sort_index().copy())


def timed(df: pd.DataFrame) -> pd.DataFrame:
    """Runs with a recorded speed, one per variant: the finished run, else an unfinished one whose timing
    is written (speed is timed right after quantization and never redone, so C4 and the speed table need
    not wait for a run's benchmarks). Speeds are put on one footing as in `done`."""
    if "decode_tok_s" not in df:
        return done(df)
    d = df[df["decode_tok_s"].notna()]
    first = [i for i in done(df).index if i in d.index]  # the run `done` keeps, where it was timed
    order = first + [i for i in d.index if i not in first]
    return comparable_speeds(d.loc[order].drop_duplicates(["model", "label"]).sort_index().copy())


def speed_class(machine: pd.Series) -> pd.Series:
    """What speeds are compared by: the part of the machine in parentheses (cores, native or emulated
    bf16; CUDA), so a CPU model name that varies in wording does not split one kind of machine."""
    return machine.astype("string").str.extract(r"\(([^()]*)\)\s*$", expand=False)


def comparable_speeds(df: pd.DataFrame) -> pd.DataFrame:
    """Speeds put on one footing with their model's baseline. A run timed beside the baseline in its own
    sitting (efficiency.json `baseline`; interleaved with it, repeat by repeat, in newer records) keeps
    its ratio to it, rescaled to the baseline record's speed (sittings on the same kind of machine
    differ by up to 1.6x here); the measured value stays in `decode_tok_s_measured`. A run without that
    (or whose baseline was timed beside busy processes) is compared as measured only if it ran on the
    same kind of machine (speed_class) as the baseline record. Runs timed beside busy processes
    (efficiency.QUIET_CPUS) and runs on another kind of machine move to `speed_elsewhere` (tokens/s and
    why, in words), out of every ratio, figure and verdict."""
    from quantlib.scoring.efficiency import QUIET_CPUS

    if "speed_machine" not in df or "decode_tok_s" not in df or "decode_tok_s_measured" in df:
        return df  # nothing to compare, or already compared (done() of done() rescales once)
    nan = pd.Series(np.nan, index=df.index)
    df["speed_elsewhere"] = pd.Series(pd.NA, index=df.index, dtype="object")
    df["decode_tok_s_measured"] = df["decode_tok_s"]
    cls = speed_class(df["speed_machine"])
    others = pd.to_numeric(df.get("speed_other_cpus", nan))
    beside = {k: pd.to_numeric(df.get(f"speed_baseline_{k}", nan)) for k in ("decode", "prefill")}
    paired = {k: pd.to_numeric(df.get(f"speed_interleaved_{k}", nan)) for k in ("decode", "prefill")}
    quiet_beside = ~(pd.to_numeric(df.get("speed_baseline_other_cpus", nan)) >= QUIET_CPUS)
    for _, m in df.groupby("model"):
        base = m[m["method"] == "fp"]
        b = base.index[0] if not base.empty else None
        for i in m.index[m["decode_tok_s"].notna()]:
            if others[i] >= QUIET_CPUS:
                why = f"while other processes kept {others[i]:.2f} CPUs busy"
            elif b is not None and i != b and pd.notna(beside["decode"][i]) and quiet_beside[i]:
                for k in ("decode", "prefill"):  # the run's speed in the interleaved timing, where it has one
                    own = paired[k][i] if pd.notna(paired[k][i]) else df.at[i, f"{k}_tok_s"]
                    df.at[i, f"{k}_tok_s"] = own * (df.at[b, f"{k}_tok_s"] / beside[k][i])
                continue
            elif b is not None and pd.notna(cls[b]) and pd.notna(cls[i]) and cls[i] != cls[b]:
                why = f"on {df.at[i, 'speed_machine']}"
            else:
                continue
            df.at[i, "speed_elsewhere"] = f"{df.at[i, 'decode_tok_s']:.1f} tokens/s {why}"
            df.loc[i, ["decode_tok_s", "prefill_tok_s"]] = np.nan
    return df


def baseline(df: pd.DataFrame, model: str) -> pd.Series:
    fp = df[(df["model"] == model) & (df["method"] == "fp")]
    if fp.empty:
        raise ValueError(f"no finished fp baseline for {model}")
    return fp.iloc[0]


def is_dense_speed(df: pd.DataFrame) -> pd.Series:
    """Runs whose speed was measured on dense kernels: as recorded (speed_kernel), else the registry's
    `dense` (records made before kernels were recorded)."""
    by_method = df["method"].map(lambda k: methods.get(k).dense).astype(bool)
    if "speed_kernel" not in df:
        return by_method
    return df["speed_kernel"].astype(str).str.startswith("dense").where(df["speed_kernel"].notna(), by_method)


def speed_setup(df: pd.DataFrame) -> pd.Series:
    """What each speed was measured on: compute dtype, kernel and threads, as recorded (records made
    before the dtype and kernel were recorded: the run's dtype, and dense or the method's own kernel
    from the registry)."""
    dtype = df.get("speed_dtype", pd.Series(index=df.index, dtype=object)).fillna(df["dtype"])
    kernel = df.get("speed_kernel", pd.Series(index=df.index, dtype=object)).fillna(
        df["method"].map(lambda k: "dense" if methods.get(k).dense else f"{methods.get(k).title} kernel"))
    threads = df.get("speed_threads", pd.Series(index=df.index, dtype=float))
    return pd.Series([f"{d}, {k}" + (f", {int(t)} threads" if pd.notna(t) else "")
                      for d, k, t in zip(dtype, kernel, threads)], index=df.index)


def dense_decode(df: pd.DataFrame, model: str) -> pd.Series:
    """Decode tokens/s of one model's runs on dense kernels (the baseline and the dequantized
    methods). They run the same computation, so their spread is the machine's timing noise: the one
    noise band of the report, used by every page and by claim C4."""
    m = df[df["model"] == model]
    return m[is_dense_speed(m).astype(bool)]["decode_tok_s"].dropna()


def samples_file(run: str, benchmark: str):
    return paths.RUNS / run / "samples" / f"{benchmark}.jsonl"


def bbq_categories(df: pd.DataFrame) -> list[str]:
    """BBQ categories with scored items in these runs (the offline copy lacks some of the 11)."""
    return sorted(c.removeprefix("bbq_amb_bias_score_") for c in df.columns
                  if c.startswith("bbq_amb_bias_score_") and df[c].notna().any())


def key(label: str) -> str:
    """Glue-friendly variant key; every full-precision baseline is 'fp' (fp32 on CPU, bf16 on GPU)."""
    return "fp" if label in ("fp32", "bf16", "fp16") else label.replace("-", "_")


def variants() -> list[str]:
    """Glue keys of every variant the registry can make at its defaults: fp, bnb_nf4, gptq_4b, ..."""
    return ["fp"] + [key(m.label(b, m.group_size, m.params, "")) for n, m in methods.registry().items()
                     if n != "fp" for b in sorted(m.bits, reverse=True)]


def per_variant(df: pd.DataFrame, model: str, value) -> dict:
    """value(row) for each expected variant of one model; NaN where a run is missing or failed."""
    out = {k: float("nan") for k in variants()}
    for _, r in df[df["model"] == model].iterrows():
        out[key(r["label"])] = value(r)
    return out


def table(df: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """Rows = variants, columns renamed for print; missing metrics stay empty; counts print as integers."""
    out = df[["model", "label"] + [c for c in columns if c in df]]
    out = out.astype({c: "Int64" for c in out if c.endswith(("_n", "_paired_n"))}).rename(columns=columns)
    if out["model"].nunique() == 1:  # a constant column says nothing (the caption names the model)
        out = out.drop(columns="model")
    return out.rename(columns={"model": "Model", "label": "Variant"})


def title(name: str, metric: str | None = None) -> str:
    """'MMLU (acc)', 'XSum (ROUGE-2)': a benchmark and one of its metrics, for axes and headers."""
    metric = metric or suite.headline(name)
    return f"{suite.registry()[name]['title']} ({METRIC_NAMES.get(metric, metric)})"


def column(name: str, metric: str | None = None) -> str:
    """The summary column of a benchmark metric (the headline metric is the bare name)."""
    return name if metric in (None, suite.headline(name)) else f"{name}_{metric}"


def bench_table(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Every metric of one benchmark per variant, the headline's 95% CI, and against the baseline
    on the same items: the share of flipped outcomes and the paired p-value; plus the items scored."""
    cols = {column(name, m): METRIC_NAMES.get(m, m) for m in suite.registry()[name]["metrics"]}
    out = table(df.assign(**{f"{name}_ci": ci_text(df, name)}), cols | {
        f"{name}_ci": "95% CI", f"{name}_flips": "flips", f"{name}_p": "p vs baseline", f"{name}_n": "n"})
    return out


def bench_tables(df: pd.DataFrame, names) -> pd.DataFrame:
    """bench_table of several benchmarks stacked, a Benchmark column first (metrics they lack stay empty)."""
    parts = [bench_table(df, n).assign(Benchmark=suite.registry()[n]["title"]) for n in names]
    out = pd.concat(parts, ignore_index=True)
    return out[["Benchmark"] + [c for c in out.columns if c != "Benchmark"]]


def ci_text(df: pd.DataFrame, name: str) -> list[str]:
    lo, hi = df.get(f"{name}_ci_lo"), df.get(f"{name}_ci_hi")
    if lo is None:
        return [""] * len(df)
    return ["" if pd.isna(a) else f"[{a:.3g}, {b:.3g}]" for a, b in zip(lo, hi)]


def groups_table(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Per-discipline scores (MMLU's four groups, C-Eval's four and its Hard subset) per variant."""
    cols = {name: "all"} | {f"{name}_group_{g}": g for g in suite.groups(name)}
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
        same = quant[quant[f"{n}_n"] == fp[f"{n}_n"]]  # runs scored on the baseline's items only
        rows.append({"benchmark": title(n), "items": fp[f"{n}_n"], "baseline": fp[n],
                     "chance": fp.get(f"{n}_chance"), "quantized min": same[n].min(),
                     "quantized max": same[n].max(), "runs": same[n].notna().sum()})
    return pd.DataFrame(rows).astype({"items": "Int64", "runs": "Int64"})


def main_variants(g: pd.DataFrame, method: str) -> pd.DataFrame:
    """A method's line: its runs at its default group size and protocol (no ablation variants), by bits."""
    m = methods.get(method)
    main = [m.label(int(b), m.group_size, m.params, "") for b in g["bits"]]
    return g[g["label"] == main].sort_values("bits") if not g.empty else g


def _draw(ax, g: pd.DataFrame, x: str, col: str, fmt: str, **kw) -> None:
    """Points or a line, with 95% bootstrap intervals as error bars where the summary has them."""
    lo, hi = f"{col}_ci_lo", f"{col}_ci_hi"
    if lo in g and g[lo].notna().any():
        err = [(g[col] - g[lo]).clip(lower=0), (g[hi] - g[col]).clip(lower=0)]
        ax.errorbar(g[x], g[col], yerr=err, fmt=fmt, capsize=2, **kw)
    else:
        ax.plot(g[x], g[col], fmt, **kw)


def models_by_size(df: pd.DataFrame) -> list[str]:
    """The models in `df`, smallest (by their runs' largest weight bytes) first."""
    size = df.groupby("model")["weight_bytes"].max() if "weight_bytes" in df else {}
    return sorted(df["model"].unique(), key=lambda m: size.get(m, 0))


def plot_vs_bits(df: pd.DataFrame, metrics: dict, ylabel: str | None = None, logy: bool = False,
                 x: str = "bits", xlabel: str | None = None, ncols: int | None = None):
    """One panel per metric (n items in its title): line methods (GPTQ, RTN, SpQR) over nominal bits,
    the others as points, one colour per method (the registry's), one line style and marker fill per
    model (filled for the first, hollow for the second, so a lone point still says its model); each
    model's baseline a horizontal reference line (its 95% interval shaded), the chance level dotted.
    Error bars are 95% bootstrap intervals over items; a panel's title gives each model's n. With
    x='stored_bits' every method sits at the bits it really stores (the baseline as a point too). The
    legend sits below the panels, clear of the data."""
    ncols = ncols or min(2, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.7 * ncols, 3.0 * nrows), squeeze=False)
    models = models_by_size(df)
    styles = dict(zip(models, ("-", "--", ":", "-.")))
    faces = dict(zip(models, ({}, {"mfc": "white"}, {}, {"mfc": "white"})))
    for ax, (col, name) in zip(axes.flat, metrics.items()):
        for model, g in df.groupby("model"):
            ls = styles[model]
            who = f" ({embedded.size(model)})" if len(styles) > 1 else ""
            for key_, m in methods.registry().items():
                if key_ == "fp":
                    continue
                gm = main_variants(g[g["method"] == key_], key_) if m.line else g[g["method"] == key_]
                if not gm.empty and gm[col].notna().any():
                    _draw(ax, gm.sort_values(x), x, col, m.marker + (ls if m.line else ""), color=m.color,
                          ms=6 if m.line else 8, label=m.title + who, **faces[model])
            fp = g[g["method"] == "fp"]
            if not fp.empty and pd.notna(fp[col].iloc[0]):
                lab = f"baseline, {fp['label'].iloc[0]}{who}"
                if x == "bits":
                    ax.axhline(fp[col].iloc[0], ls=ls, lw=1.2, color="#4d4d4d", label=lab)
                    if f"{col}_ci_lo" in fp and fp[f"{col}_ci_lo"].notna().iloc[0]:
                        ax.axhspan(fp[f"{col}_ci_lo"].iloc[0], fp[f"{col}_ci_hi"].iloc[0], color="grey", alpha=0.12)
                else:
                    _draw(ax, fp, x, col, "*", ms=11, color="#4d4d4d", label=lab)
        chance = df[f"{col}_chance"].dropna() if f"{col}_chance" in df else pd.Series(dtype=float)
        if not chance.empty:
            ax.axhline(chance.iloc[0], ls=":", lw=1, color="#d62728", label="chance")
        n = sorted({int(v) for v in df[f"{col}_n"].dropna()}) if f"{col}_n" in df else []
        ax.set_title(name + (f", n = {' / '.join(f'{v:,}' for v in n)}" if n else ""), fontsize=10)
        ax.set_xlabel(xlabel or ("nominal bits per weight" if x == "bits" else "stored bits per weight"))
        if x == "bits":
            ax.set_xticks([2, 3, 4, 8])
        if logy:
            ax.set_yscale("log")
        if ylabel:
            ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    fig.tight_layout()
    legend = {}  # every panel's entries, once each, in the order drawn
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab, h)
    fig.legend(legend.values(), legend.keys(), loc="upper center", bbox_to_anchor=(0.5, 0), fontsize=8,
               ncol=min(3, len(legend)) or 1, frameon=False)
    return fig


def plot_decode(df: pd.DataFrame):
    """Decode tokens/s (batch 1) of every run, one panel per model, bars coloured by the kernel each
    speed was measured on (dense, packed int4, bitsandbytes) and the model's dense noise band shaded."""
    d = df[df["decode_tok_s"].notna()].copy()
    d["setup"] = speed_setup(d).str.split(", ").str[1]
    if d.empty:
        return None
    g = sns.catplot(d, kind="bar", x="decode_tok_s", y="label", hue="setup", col="model", dodge=False,
                    sharey=False, height=max(3.0, 0.3 * d.groupby("model").size().max()), aspect=1.2,
                    errorbar=None, palette="colorblind")
    for (model, ax) in zip(g.col_names, g.axes.flat):
        dense = dense_decode(df, model)
        if len(dense):
            ax.axvspan(dense.min(), dense.max(), color="grey", alpha=0.15, zorder=0)
        ax.set_title(model, fontsize=10)
    g.set_axis_labels("decode tokens/s (batch 1)", "")
    sns.move_legend(g, "upper center", bbox_to_anchor=(0.5, 0), ncol=3, title="kernel", frameon=False)
    g.figure.tight_layout()
    return g.figure


def glue_value(name: str, value) -> None:
    """Glue a number or text for the prose; numpy scalars become Python ones so formats like :.2f work."""
    from myst_nb import glue

    value = value.item() if hasattr(value, "item") else value
    glue(name, float("nan") if value is None else value, display=False)  # a missing number prints "nan"


def mean_ppl(df: pd.DataFrame) -> pd.Series:
    """Each run's perplexity averaged over the corpora it was measured on."""
    return df[[f"ppl_{k}" for k in PPL if f"ppl_{k}" in df]].mean(axis=1)


def ppl_correlations(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 3: across quantized runs, Pearson (on log10 of the mean perplexity over the
    corpora) and Spearman correlation of perplexity with each benchmark's headline score."""
    from quantlib.reporting import paper, stats

    q = df[df["method"] != "fp"]
    log_ppl = np.log10(mean_ppl(q))
    rows = []
    for n in suite.names():
        if n in q and q[n].notna().sum() >= 4:
            r = stats.correlation(log_ppl, q[n])
            rows.append({"benchmark": title(n), "runs": r["n"], "Pearson (log ppl)": r["pearson"],
                         "paper's Pearson r (Table 3)": paper.pearson(n, suite.headline(n)),
                         "Pearson 95% CI": f"[{r['pearson_lo']:.2f}, {r['pearson_hi']:.2f}]",
                         "Spearman": r["spearman"],
                         "Spearman 95% CI": f"[{r['spearman_lo']:.2f}, {r['spearman_hi']:.2f}]"})
    return pd.DataFrame(rows)


PREDICTORS = {"log_ppl_ratio": "log perplexity ratio", "kl_mean": "next-token KL",
              "top1_flip_mean": "top-1 flips (text)", "answer_flips": "answer flips (other benchmarks)"}


def drop_predictors(df: pd.DataFrame) -> pd.DataFrame:
    """Which per-run quantity best ranks the benchmark drops: across quantized runs, Spearman between
    each predictor and each benchmark's drop (baseline score minus the run's). Predictors: log of the
    mean-perplexity ratio to the baseline, next-token KL and top-1 flips on the perplexity text
    (quantlib.scoring.divergence), and the share of flipped answers on the *other* benchmarks (leave-one-out,
    so a benchmark's own flips do not predict its own drop)."""
    from quantlib.reporting import stats

    d = df.assign(_ppl=mean_ppl(df))
    q = d[d["method"] != "fp"].copy()
    base = {m: baseline(d, m) for m in q["model"].unique()}
    q["log_ppl_ratio"] = np.log([r["_ppl"] / base[r["model"]]["_ppl"] for _, r in q.iterrows()])
    names = [n for n in suite.names() if n in q and q[n].notna().sum() >= 4]
    flips = q[[f"{n}_flips" for n in names if f"{n}_flips" in q]]
    rows = []
    for n in names:
        drop = np.array([base[r["model"]][n] - r[n] for _, r in q.iterrows()])
        others = flips.drop(columns=[f"{n}_flips"], errors="ignore")
        preds = {"log_ppl_ratio": q["log_ppl_ratio"], "kl_mean": q.get("kl_mean"),
                 "top1_flip_mean": q.get("top1_flip_mean"),
                 "answer_flips": others.mean(axis=1) if not others.empty else None}
        row = {"benchmark": title(n), "runs": int(np.isfinite(drop).sum())}
        for k, x in preds.items():
            row[PREDICTORS[k]] = stats.correlation(x, drop)["spearman"] if x is not None else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def scatter_vs_ppl(df: pd.DataFrame, ncols: int = 2):
    """Each benchmark's headline score against the mean perplexity, one point per quantized run."""
    q = df[df["method"] != "fp"]
    names = [n for n in suite.names() if n in q and q[n].notna().sum() >= 4]
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.7 * ncols, 3.0 * nrows), squeeze=False)
    for ax, n in zip(axes.flat, names):
        for m, g in q.groupby("method", observed=True):
            style = methods.get(m)
            ax.plot(mean_ppl(g), g[n], style.marker, color=style.color, label=style.title)
        ax.set(xscale="log", title=title(n))
        ax.title.set_fontsize(9)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("mean perplexity")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def pareto(df: pd.DataFrame, x: str, y: str, higher_is_better: bool = True) -> pd.DataFrame:
    """Runs no other run beats on both axes (less memory and a better score), sorted by x."""
    d = df[[x, y]].dropna().sort_values([x, y], ascending=[True, not higher_is_better])
    best, keep = None, []
    for i, v in d[y].items():
        if best is None or (v > best if higher_is_better else v < best):
            best = v
            keep.append(i)
    return df.loc[keep].sort_values(x)


def plot_vs_memory(df: pd.DataFrame, metrics: dict, ncols: int = 2):
    """Score against weight memory, every model and method, the Pareto front as a line (the paper's
    scale-versus-bits question: does a bigger quantized model beat a smaller full-precision one?)."""
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.7 * ncols, 3.0 * nrows), squeeze=False)
    for ax, (col, (name, higher)) in zip(axes.flat, metrics.items()):
        for (model, m), g in df.groupby(["model", "method"], observed=True):
            style = methods.get(m)
            ax.plot(g["weight_bytes"] / MIB, g[col], style.marker, color=style.color, label=f"{style.title} ({model})")
        front = pareto(df, "weight_bytes", col, higher)
        ax.plot(front["weight_bytes"] / MIB, front[col], "-", color="black", lw=1, label="Pareto front")
        ax.set(xlabel="weight memory (MiB)", title=name, yscale="log" if col.startswith("ppl_") else "linear")
        ax.title.set_fontsize(9)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def prompts(run: str) -> pd.DataFrame:
    """The prompt template and generation settings of every benchmark, as recorded in one run."""
    rows = []
    for f in sorted((paths.RUNS / run / "benchmarks").glob("*.json")):
        name, b = f.stem, files.read_json(f)
        task = next(iter(b["tasks"].values()))
        gen = task.get("generation_kwargs")
        rows.append({"benchmark": suite.registry()[name]["title"] if name in suite.registry() else name,
                     "prompt (user turn, chat template applied)": task.get("prompt"),
                     "answer": "generated, greedy, at most {} new tokens".format(gen.get("max_gen_toks"))
                     if gen else "log-likelihood of each choice"})
    return pd.DataFrame(rows)


def _styler_markdown(styler) -> str:
    """A styled table (formatted values, hidden index honoured) as a MyST list-table, whose column
    widths let LaTeX wrap long cells, and a longtable, so that LaTeX breaks it between rows at a page's
    end rather than running past the page; every ASCII punctuation mark is escaped, so cell text
    stays literal (no math from "$", no HTML from "<|im_start|>")."""
    import copy
    import re
    import string

    s = copy.copy(styler)
    s.data = styler.data.map(lambda v: v.replace("\n", " ") if isinstance(v, str) else v)
    rows = [line.split("\t") for line in s.to_string(delimiter="\t").splitlines()]
    esc = re.compile("([" + re.escape(string.punctuation) + "])")
    widths = [min(max(len(r[i]) for r in rows), 50) + 8 for i in range(len(rows[0]))]
    body = "\n".join("* " + "\n".join(("- " if i == 0 else "  - ") + (esc.sub(r"\\\1", c) or " ")
                                        for i, c in enumerate(r)) for r in rows)
    return (f"```{{list-table}}\n:header-rows: 1\n:class: longtable\n:widths: {' '.join(map(str, widths))}\n\n"
            f"{body}\n```")


def _tables_as_markdown() -> None:
    """`make pdf`: the LaTeX builder drops HTML outputs, so tables are also given as Markdown,
    which myst-nb parses into real tables."""
    from IPython import get_ipython
    from pandas.io.formats.style import Styler

    if get_ipython() is not None:
        get_ipython().display_formatter.formatters["text/markdown"].for_type(Styler, _styler_markdown)


if os.environ.get("QUANTLIB_BOOK_FORMAT") == "latex":
    _tables_as_markdown()


def number(x) -> str:
    """One number at a readable precision: 4 significant digits, thousands separated from 100,000 on,
    integers as integers, blanks for missing values."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        return str(x)
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.0f}" if abs(x) >= 1e5 else f"{x:.4g}"


def show(table: pd.DataFrame, caption: str):
    """A report table: captioned, no index, every number at `number`'s precision."""
    return table.style.format(number).hide(axis="index").set_caption(caption)
