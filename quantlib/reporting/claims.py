"""The paper's claims, each with this build's evidence and a verdict computed from data/summary.csv
(thresholds in data/claims.yaml): holds / does not hold / inconclusive."""
from __future__ import annotations

import numpy as np
import pandas as pd
import yaml

from quantlib.io import paths
from quantlib.quantization import methods
from quantlib.reporting import report, stats
from quantlib.scoring import suite

HOLDS, FAILS, OPEN = "holds", "does not hold", "inconclusive"


def config() -> dict:
    return yaml.safe_load((paths.DATA / "claims.yaml").read_text())


def _bench(df):
    return [n for n in suite.names() if n in df and df[n].notna().any()]


def c1(df, cfg, model):
    fp = df[(df["model"] == model) & (df["method"] == "fp")].iloc[0]
    v = df[(df["model"] == model) & (df["label"] == cfg["C1"]["variant"])]
    if v.empty:
        return OPEN, f"no {cfg['C1']['variant']} run"
    v = v.iloc[0]
    rise = v["ppl_wikitext2"] / fp["ppl_wikitext2"] - 1
    drops = [n for n in _bench(df) if pd.notna(v.get(f"{n}_p")) and v[f"{n}_p"] < cfg["alpha"] and v[n] < fp[n]]
    tested = [n for n in _bench(df) if pd.notna(v.get(f"{n}_p"))]
    ev = (f"{cfg['C1']['variant']}: WikiText-2 perplexity {rise:+.0%}; significant drops on {len(drops)} of "
          f"{len(tested)} benchmarks" + (f" ({', '.join(drops)})" if drops else ""))
    if rise > cfg["C1"]["max_ppl_rise"] or drops:
        return FAILS, ev
    return HOLDS, ev


def c2(df, cfg, model):
    q = df[(df["model"] == model) & (df["method"] != "fp")]
    log_ppl = np.log10(q[[c for c in q if c.startswith("ppl_") and not c.endswith("_windows")]].mean(axis=1))
    rows = [(n, stats.correlation(log_ppl, q[n])) for n in _bench(q)]
    rows = [(n, r) for n, r in rows if np.isfinite(r["spearman"])]
    if not rows:
        return OPEN, "fewer than 4 scored quantized runs"
    neg = [n for n, r in rows if r["spearman_hi"] < 0]
    ev = (f"Spearman(perplexity, score) below zero with 95% confidence on {len(neg)} of {len(rows)} benchmarks "
          f"across {rows[0][1]['n']} quantized runs")
    return (HOLDS if len(neg) >= cfg["C2"]["min_share"] * len(rows) else OPEN), ev


def c3(df, cfg, model):
    fams = df["model"].nunique()
    if fams < 2:
        return OPEN, "one model size in this build: the claim needs two sizes of one family (paper-qwen.yaml)"
    fp = df[df["method"] == "fp"].set_index("model")
    small, large = fp["weight_bytes"].idxmin(), fp["weight_bytes"].idxmax()
    lq = df[(df["model"] == large) & (df["method"] != "fp") & (df["weight_bytes"] <= fp.loc[small, "weight_bytes"])]
    if lq.empty:
        return OPEN, f"no quantized {large} run fits in the memory of {small} at full precision"
    best = lq.sort_values("ppl_wikitext2").iloc[0]
    wins = [n for n in _bench(df) if best[n] > fp.loc[small, n]]
    ev = (f"{large} {best['label']} ({best['weight_bytes'] / 2**30:.1f} GiB) against {small} at full precision "
          f"({fp.loc[small, 'weight_bytes'] / 2**30:.1f} GiB): higher on {len(wins)} of {len(_bench(df))} benchmarks")
    return (HOLDS if len(wins) > len(_bench(df)) / 2 else FAILS), ev


def c4(df, cfg, model):
    m = df[df["model"] == model]
    dense = report.dense_decode(df, model)
    kernels = m[~m["method"].map(lambda k: methods.get(k).dense).astype(bool)]
    slower = kernels[kernels["decode_tok_s"] < dense.min()]
    ev = (f"dense runs decode at {dense.min():.1f}-{dense.max():.1f} tokens/s; "
          + ", ".join(f"{r['label']} {r['decode_tok_s']:.1f}" for _, r in kernels.iterrows()))
    if kernels.empty:
        return OPEN, "no run with quantized kernels"
    return (HOLDS if len(slower) else FAILS), ev


def c5(df, cfg, model):
    m = df[df["model"] == model].set_index("label")
    if not {"gptq-2b", "spqr-2b"} <= set(m.index):
        return OPEN, "needs gptq-2b and spqr-2b runs"
    base, k = m.loc[m.index[m["method"] == "fp"][0], "ppl_wikitext2"], cfg["C5"]["collapse_factor"]
    g, s = m.loc["gptq-2b"], m.loc["spqr-2b"]
    ev = (f"WikiText-2 perplexity x baseline: GPTQ-2 {g['ppl_wikitext2'] / base:.3g}, SpQR-2 "
          f"{s['ppl_wikitext2'] / base:.3g} (collapse: above {k}x); stored bits/weight {g['stored_bits']:.2f} "
          f"vs {s['stored_bits']:.2f}")
    collapsed = lambda r: r["ppl_wikitext2"] > k * base
    return (HOLDS if collapsed(g) and not collapsed(s) else FAILS), ev


CLAIMS = {"C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5}


def table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: the paper's evidence, this build's, and the verdict."""

    cfg = config()
    df = report.done(df)  # finished runs, one per variant
    model = df[df["method"] == "fp"]["model"].iloc[0]
    rows = []
    for key, fn in CLAIMS.items():
        verdict, evidence = fn(df, cfg, model)
        rows.append({"claim": f"{key}: {cfg[key]['claim']}", "paper": cfg[key]["paper"], "this build": evidence,
                     "verdict": verdict})
    return pd.DataFrame(rows)
