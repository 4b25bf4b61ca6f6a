"""The paper's claims, each with this build's evidence and a verdict computed from the summary
(thresholds in data/claims.yaml): holds / does not hold / inconclusive, with the threshold it was
judged by, the number of items or windows behind it, an interval, and the caveats that bound it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import yaml

from quantlib.io import paths
from quantlib.reporting import paper, report, stats
from quantlib.scoring import suite

HOLDS, FAILS, OPEN = "holds", "does not hold", "inconclusive"


def config() -> dict:
    return yaml.safe_load((paths.DATA / "claims.yaml").read_text())


def _bench(df):
    return [n for n in suite.names() if n in df and df[n].notna().any()]


def _get(row, col, default=float("nan")):
    v = row.get(col, default)
    return default if v is None or (isinstance(v, float) and np.isnan(v)) else v


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" + ("" if k == 1 else "s")


def _out(verdict, evidence, threshold, n="", interval=""):
    return {"verdict": verdict, "evidence": evidence, "threshold": threshold, "n": n, "interval": interval}


def c1(df, cfg, model):
    c = cfg["C1"]
    limit = 1 + c["max_ppl_rise"]
    threshold = (f"WikiText-2 perplexity ratio to the baseline at most {limit:.2f} (95% interval over windows), "
                 f"and no benchmark drop significant at {cfg['alpha']}")
    v = df[(df["model"] == model) & (df["label"] == c["variant"])]
    if v.empty:
        return _out(OPEN, f"no {c['variant']} run", threshold)
    v = v.iloc[0]
    fp = report.baseline(df, model)
    tested = [n for n in _bench(df) if pd.notna(_get(v, f"{n}_p"))]
    drops = [n for n in tested if v[f"{n}_p"] < cfg["alpha"] and _get(v, f"{n}_delta", v[n] - fp[n]) < 0]
    items = int(sum(_get(v, f"{n}_paired_n", 0) for n in tested))
    windows = int(_get(v, "ppl_wikitext2_windows", 0))
    ratio, lo, hi = (_get(v, f"ppl_wikitext2_{k}") for k in ("ratio", "ratio_lo", "ratio_hi"))
    if np.isnan(ratio):
        ratio = v["ppl_wikitext2"] / fp["ppl_wikitext2"]
    interval = f"ratio {ratio:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if not np.isnan(lo) else " (no interval: 1 window)")
    held = stats.holm({n: v[f"{n}_p"] for n in tested}, cfg["alpha"]) & set(drops)
    ev = (f"{c['variant']}: WikiText-2 perplexity x{ratio:.3f}; significant drops on {len(drops)} of "
          f"{len(tested)} benchmarks" + (f" ({', '.join(drops)}; {len(held)} after Holm's correction for "
                                         f"{len(tested)} tests)" if drops else ""))
    n = f"{_count(windows, 'window')}; {items:,} paired items"
    if drops or (not np.isnan(lo) and lo > limit):
        return _out(FAILS, ev, threshold, n, interval)
    if not np.isnan(lo) and hi <= limit:
        return _out(HOLDS, ev, threshold, n, interval)
    return _out(OPEN, ev + ("; one window cannot bound the rise" if np.isnan(lo) else ""), threshold, n, interval)


def c1_on_paper(cfg) -> dict[str, str]:
    """C1's rule applied to the paper's own tables, per paper model: its WikiText-2 ratio (a point value:
    the paper gives no interval) and the drops it marks significant. Shows how strict the rule is."""
    if not paper.available():
        return {}
    v, limit = cfg["C1"]["variant"], 1 + cfg["C1"]["max_ppl_rise"]
    wiki = paper.wikitext2_ratios()
    return {m: FAILS if drops or wiki[(m, v)] > limit else HOLDS
            for m, (drops, _) in paper.significant_drops(v).items()}


def c1_strictness(cfg) -> str:
    """A sentence for the reader: what C1's rule says of the paper's own evidence."""
    on_paper = c1_on_paper(cfg)
    if not on_paper:
        return "(the paper's tables are not found: set QUANTLIB_PAPER_DIR to judge them by the same rule)"
    fails = [m.removesuffix("-Chat").removeprefix("Qwen-") for m, v in on_paper.items() if v == FAILS]
    return (f"C1's rule is strict: applied to the paper's own tables (the WikiText-2 ratio and the drops the "
            f"paper marks significant at {cfg['C1']['variant']}), it does not hold on {len(fails)} of the paper's "
            f"{len(on_paper)} models" + (f" ({', '.join(fails)})" if fails else "") + ". The paper reads small "
            "significant drops as performance kept; this report counts them")


def c2(df, cfg, model):
    threshold = (f"Spearman(perplexity, score) below 0 with 95% confidence on at least "
                 f"{cfg['C2']['min_share']:.0%} of benchmarks")
    q = df[(df["model"] == model) & (df["method"] != "fp")]
    log_ppl = np.log10(report.mean_ppl(q))
    rows = [(n, stats.correlation(log_ppl, q[n])) for n in _bench(q)]
    rows = [(n, r) for n, r in rows if np.isfinite(r["spearman"])]
    if not rows:
        return _out(OPEN, "fewer than 4 scored quantized runs", threshold, f"{len(q)} quantized runs")
    neg = [n for n, r in rows if r["spearman_hi"] < 0]
    rho = np.median([r["spearman"] for _, r in rows])
    ev = f"Spearman below zero with 95% confidence on {len(neg)} of {len(rows)} benchmarks" + (
        f" ({', '.join(neg)})" if neg else "")
    verdict = HOLDS if len(neg) >= cfg["C2"]["min_share"] * len(rows) else OPEN
    return _out(verdict, ev, threshold, f"{rows[0][1]['n']} quantized runs", f"median Spearman {rho:.2f}")


def c3(df, cfg, model):
    ratio = cfg["C3"]["max_memory_ratio"]
    threshold = (f"the larger model's best quantized variant within {ratio}x the smaller baseline's weight bytes "
                 "scores higher on most benchmarks (paired 95% intervals on the same items)")
    fp = df[df["method"] == "fp"].set_index("model")
    if len(fp) < 2:
        return _out(OPEN, "one model size: the claim needs two sizes of one family", threshold)
    small, large = fp["weight_bytes"].idxmin(), fp["weight_bytes"].idxmax()
    budget = ratio * fp.loc[small, "weight_bytes"]
    lq = df[(df["model"] == large) & (df["method"] != "fp") & (df["weight_bytes"] <= budget)]
    if lq.empty:
        return _out(OPEN, f"no quantized {large} run within {ratio}x the memory of {small} at full precision",
                    threshold)
    best = lq.sort_values("ppl_wikitext2").iloc[0]
    wins, losses, names = [], [], []
    for n in _bench(df):
        a, b = report.samples_file(best["run"], n), report.samples_file(fp.loc[small, "run"], n)
        if pd.isna(best.get(n)) or not a.exists() or not b.exists():
            continue
        st = stats.benchmark_stats(n, suite.headline(n), a, b)
        names.append(n)
        if st.get("delta_lo", 0) > 0:
            wins.append(n)
        elif st.get("delta_hi", 0) < 0:
            losses.append(n)
    ev = (f"{large} {best['label']} ({best['weight_bytes'] / 2**30:.2f} GiB) against {small} at full precision "
          f"({fp.loc[small, 'weight_bytes'] / 2**30:.2f} GiB): significantly higher on {len(wins)}"
          + (f" ({', '.join(wins)})" if wins else "") + f", lower on {len(losses)}"
          + (f" ({', '.join(losses)})" if losses else "") + f" of {len(names)} benchmarks")
    verdict = HOLDS if len(wins) > len(names) / 2 else FAILS if len(losses) > len(names) / 2 else OPEN
    return _out(verdict, ev, threshold, f"{len(names)} benchmarks, same items",
                f"memory ratio {best['weight_bytes'] / fp.loc[small, 'weight_bytes']:.2f}")


def c4(df, cfg, model):
    named = ", ".join(cfg["C4"].get("named", []))
    threshold = ("a quantized kernel decodes slower than the slowest run on dense kernels (their spread is noise)"
                 + (f"; not holding needs {named} timed" if named else ""))
    m = df[df["model"] == model]
    dense = report.dense_decode(df, model)
    kernels = m[~report.is_dense_speed(m) & m["decode_tok_s"].notna()]
    if kernels.empty or dense.empty:
        return _out(OPEN, "no run with quantized kernels, or no dense run", threshold)
    slower = kernels[kernels["decode_tok_s"] < dense.min()]
    ev = (f"dense runs decode at {dense.min():.1f}-{dense.max():.1f} tokens/s; "
          + ", ".join(f"{r['label']} {r['decode_tok_s']:.1f}" for _, r in kernels.iterrows()))
    missing = [v for v in cfg["C4"].get("named", []) if v not in set(kernels["label"])]
    verdict = HOLDS if len(slower) else OPEN if missing else FAILS
    ev += f"; awaits {', '.join(missing)}, the paper's slow case" if verdict == OPEN else ""
    return _out(verdict, ev, threshold, f"{len(dense)} dense, {len(kernels)} kernel runs",
                f"dense band {dense.min():.1f}-{dense.max():.1f} tokens/s")


def c5(df, cfg, model):
    c = cfg["C5"]
    k = c["collapse_factor"]
    threshold = (f"collapse = WikiText-2 perplexity above {k}x the baseline's; compared at nominal bits "
                 f"(GPTQ-2 vs SpQR-2) and at matched storage ({c['matched']} vs SpQR-2)")
    m = df[df["model"] == model].set_index("label")
    if not {"gptq-2b", "spqr-2b"} <= set(m.index):
        return _out(OPEN, "needs gptq-2b and spqr-2b runs", threshold)
    base = report.baseline(df, model)["ppl_wikitext2"]
    g, s = m.loc["gptq-2b"], m.loc["spqr-2b"]
    collapsed = lambda r: r["ppl_wikitext2"] > k * base
    nominal = collapsed(g) and not collapsed(s)
    ev = (f"x baseline perplexity: GPTQ-2 {g['ppl_wikitext2'] / base:.3g} ({g['stored_bits']:.2f} stored bits), "
          f"SpQR-2 {s['ppl_wikitext2'] / base:.3g} ({s['stored_bits']:.2f} bits)")
    matched = None
    if c["matched"] in m.index:
        r = m.loc[c["matched"]]
        matched = r["stored_bits"] <= s["stored_bits"] and r["ppl_wikitext2"] < s["ppl_wikitext2"]
        ev += (f"; {c['matched']} {r['ppl_wikitext2'] / base:.3g} at {r['stored_bits']:.2f} bits "
               + ("beats" if matched else "does not beat") + " SpQR-2 at matched storage")
    if nominal and matched:
        verdict = "holds at nominal bits; not at matched storage"
    else:
        verdict = HOLDS if nominal else FAILS
    return _out(verdict, ev, threshold, f"{_count(int(_get(g, 'ppl_wikitext2_windows', 0)), 'window')} per run")


CLAIMS = {"C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5}
READS = {"C4": report.timed}  # the runs each claim is judged on; the others read finished runs (report.done)


def judge(key: str, df: pd.DataFrame, cfg: dict, model: str) -> dict:
    """One claim on one model, on the runs it reads from the summary `df`."""
    return CLAIMS[key](READS.get(key, report.done)(df), cfg, model)


def caveats(df: pd.DataFrame, cfg: dict) -> str:
    gguf = ", ".join(sorted({f"{r['gguf_name']} ({r['gguf_file_type']})" for _, r in df.iterrows()
                             if isinstance(r.get("gguf_name"), str)})) or "none"
    calib = ", ".join(sorted({str(int(x)) for x in df.get("calib_samples", pd.Series()).dropna()})) or "no"
    models = ", ".join(sorted(df["model"].unique()))
    return "; ".join(c.format(models=models, gguf=gguf, calib=calib) for c in cfg["caveats"])


def table(df: pd.DataFrame, model: str | None = None) -> pd.DataFrame:
    """One row per claim: the verdict, the paper's numbers and this build's, the threshold, and what the
    verdict rests on (n and interval). The paper's wording of each claim is in data/claims.yaml."""
    cfg = config()
    model = model or report.done(df).query("method == 'fp'")["model"].iloc[0]
    rows = []
    for key in CLAIMS:
        r = judge(key, df, cfg, model)
        rests = "; ".join(str(x) for x in (r["n"], r["interval"]) if x)
        rows.append({"claim": f"{key}: {cfg[key]['claim']}", "verdict": r["verdict"],
                     "the paper's numbers": paper.claim_numbers(key, cfg), "this build": r["evidence"],
                     "judged by": r["threshold"], "rests on": rests})
    return pd.DataFrame(rows)


def baseline_models(df: pd.DataFrame) -> list[str]:
    """The models with a finished baseline, smallest (by weight bytes) first."""
    done = report.done(df)
    return [m for m in report.models_by_size(done) if (done.loc[done["model"] == m, "method"] == "fp").any()]


def overview(df: pd.DataFrame, label=str) -> pd.DataFrame:
    """Each claim's verdict on each model with a baseline, side by side (`label` names a model's column):
    the front page's glance; `table` gives each verdict's evidence, threshold and interval."""
    cfg = config()
    done = report.done(df)
    out = pd.DataFrame({"claim": [f"{key}: {cfg[key]['claim']}" for key in CLAIMS]})
    for model in baseline_models(done):
        out[f"verdict on {label(model)}"] = [judge(key, df, cfg, model)["verdict"] for key in CLAIMS]
    return out


VERDICT_STYLE = {HOLDS: "#d4edda; color: #14532d", FAILS: "#f8d7da; color: #7f1d1d", OPEN: "#e9ecef; color: #343a40"}


def _verdict_css(verdict: str) -> str:
    """A verdict's cell at a glance: green holds, red does not hold, grey inconclusive, amber a split one."""
    colours = VERDICT_STYLE.get(verdict, "#fff3cd; color: #713f12")
    return f"background-color: {colours}; font-weight: bold"


def styled(table_: pd.DataFrame, caption: str):
    """`table` as the book shows it: captioned, no index, each verdict coloured by what it says."""
    verdicts = [c for c in table_.columns if c.startswith("verdict")]
    return table_.style.map(_verdict_css, subset=verdicts).hide(axis="index").set_caption(caption)

