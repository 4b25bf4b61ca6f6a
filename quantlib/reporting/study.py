"""The study's pages: which cells are done, each baseline with its items and minimum detectable
difference, and each effect beside the paper's (quantlib.reporting.paper)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from quantlib.io import files, paths
from quantlib.models import embedded
from quantlib.reporting import claims, paper, power, report, stats
from quantlib.running import records
from quantlib.running.spec import load_grid
from quantlib.scoring import suite


def planned() -> list:
    return [s for g in report.SCOPES["study"] if (paths.GRIDS / g).exists() for s in load_grid(paths.GRIDS / g)]


def progress() -> pd.DataFrame:
    """Every cell of the study grids: done, to run, or what it has finished so far (quantization,
    perplexity corpora, speed, benchmarks), with its wall time and CPU time (every core; blank where a
    sitting predates its recording) over every sitting."""
    rows = []
    for s in planned():
        folder = records.run_dir(s.name)
        state, seconds = records.status(folder), records.earlier_seconds(folder)
        cpu = records.earlier_cpu_seconds(folder)
        if records.complete(folder):
            st = files.read_json(folder / "status.json")
            state, seconds, cpu = "done", st.get("seconds") or seconds, st.get("cpu_seconds")
        elif state is None:
            state = "to run"
        else:
            f = folder / "perplexity.json"
            ppl = files.read_json(f)["corpora"] if f.exists() else {}
            state = "; ".join(x for x in (
                "quantized" if (folder / "metrics.json").exists() else "",
                f"perplexity {len(ppl)} of {len(s.perplexity.datasets)}" if ppl else "",
                "speed" if (folder / "efficiency.json").exists() else "",
                f"{len(list((folder / 'benchmarks').glob('*.json')))} of {len(s.benchmarks)} benchmarks") if x)
        rows.append({"model": embedded.size(s.model), "variant": s.label, "title": s.title, "state": state,
                     "wall hours": seconds / 3600 if seconds else np.nan,
                     "CPU hours": cpu / 3600 if cpu else np.nan})
    return pd.DataFrame(rows)


def hours_to_go(prog: pd.DataFrame) -> float:
    """Wall hours the unfinished cells still need, estimated per model from its finished cells' median
    (a cell in progress counts what it has already spent); NaN where a model has no finished cell, or
    where a cell in progress has already run past that median (its own pace is then unknown)."""
    left = 0.0
    for _, g in prog.groupby("model"):
        done = g["state"] == "done"
        per_cell = g.loc[done, "wall hours"].median()
        spent = g.loc[~done, "wall hours"].fillna(0.0)
        if np.isnan(per_cell) or (spent >= per_cell).any():
            return float("nan")
        left += float((per_cell - spent).sum())
    return left


def to_go(prog: pd.DataFrame) -> str:
    """The progress line's tail: how many cells are left and about how long they need, or that none is."""
    left = int((prog["state"] != "done").sum())
    if not left:
        return "every cell is done"
    hours = hours_to_go(prog)
    if np.isnan(hours):
        return (f"{left} still to run (a cell in progress has already run longer than its model's median cell, "
                "so no time is estimated)")
    return f"{left} still to run, about {hours:.0f} hours more at each model's median cell time"


def baselines(df: pd.DataFrame) -> pd.DataFrame:
    """Per model and benchmark: the baseline's score beside chance, its n, the minimum detectable
    difference (80% power, 5% level) planned from the baseline's items (rho 0.5) and as measured on
    the quantized runs (their median), and the items needed to detect the paper's GPTQ-4 and GPTQ-3
    effects (from the measured spread once there are runs, else the planned one)."""
    rows = []
    for model in sorted(df.loc[df["method"] == "fp", "model"].unique()):
        fp = report.baseline(df, model)
        q = df[(df["model"] == model) & (df["method"] != "fp")]
        for name in suite.names():
            if pd.isna(fp.get(name)):
                continue
            items = list(stats.items(report.samples_file(fp["run"], name), suite.headline(name)).values())
            numeric = [x for x in items if isinstance(x, (int, float))]
            sd = power.planned_sd(numeric) if numeric else float("nan")
            n = int(fp[f"{name}_n"])
            planned = power.mdd(sd, n)
            eff = paper.effects(name)
            eff = eff[eff["model"] == "Qwen-7B-Chat"].set_index("label")["delta"] if not eff.empty else {}
            measured = q.loc[q[f"{name}_n"] == n, f"{name}_mdd"] if f"{name}_mdd" in q else q.iloc[:0, 0]
            if measured.notna().any():  # the spread the runs show, once there are runs
                sd = power.sd_from_mdd(measured.median(), n)
            need = {b: power.n_for(sd, abs(eff[b])) if b in eff and eff[b] and np.isfinite(sd) else np.nan
                    for b in ("gptq-4b", "gptq-3b")}
            rows.append({"model": embedded.size(model), "benchmark": report.title(name), "n": n,
                         "baseline": fp[name], "chance": fp.get(f"{name}_chance"), "MDD planned": planned,
                         "MDD measured": measured.median(), "runs": measured.notna().sum(),
                         "n for GPTQ-4 effect": need["gptq-4b"], "n for GPTQ-3 effect": need["gptq-3b"]})
    return pd.DataFrame(rows)


def beside_paper(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """One benchmark's effects: the paper's delta for each of its models (* = significant there) and
    ours for each study model, with the paired 95% interval (* = the paired test's p below the claims'
    alpha), per configuration."""
    metric = (suite.registry()[name].get("paper") or {}).get("metric", suite.headline(name))
    col = report.column(name, metric)
    eff = paper.effects(name)
    alpha = claims.config()["alpha"]
    table = {}
    for _, r in eff[eff["label"] != "bf16"].iterrows():
        mark = "*" if str(r["significant"]) == "True" else ""
        table.setdefault(r["label"], {})[f"paper {r['model'].removesuffix('-Chat')}"] = f"{r['delta']:+.3g}{mark}"
    for model in sorted(df["model"].unique()):
        fp = report.baseline(df, model)
        size = embedded.size(model)
        for _, r in df[(df["model"] == model) & (df["method"] != "fp")].iterrows():
            if pd.isna(r.get(col)):
                continue
            paired = metric == suite.headline(name) and pd.notna(r.get(f"{name}_delta"))
            d = r[f"{name}_delta"] if paired else r[col] - fp[col]  # paired: on the items both scored
            ci = f" [{r[f'{name}_delta_lo']:+.3g}, {r[f'{name}_delta_hi']:+.3g}]" if paired else ""
            mark = "*" if paired and r.get(f"{name}_p", 1.0) < alpha else ""
            table.setdefault(r["label"], {})[f"ours {size}"] = f"{d:+.3g}{mark}{ci}"
    order = list(dict.fromkeys(list(eff["label"]) + sorted(table)))
    return pd.DataFrame([{"variant": k, **table[k]} for k in order if k in table]).fillna("")


def beside_paper_tables(df: pd.DataFrame, names) -> list:
    """The captioned `beside_paper` tables of the benchmarks that have a quantized run and a baseline."""
    if df.empty or not (df["method"] == "fp").any():
        return []
    out = []
    for name in names:
        t = beside_paper(df, name)
        if not t.empty and any(c.startswith("ours") for c in t.columns):
            metric = (suite.registry()[name].get("paper") or {}).get("metric", suite.headline(name))
            caption = f"{report.title(name, metric)}: change from the baseline"
            step = paper.effects(name)["step"].min()  # trailing zeros are not in the CSV
            if pd.notna(step):  # the paper's rounding, where a reader could take "+0*" for a slip
                caption += f" (the paper prints these values to {step:g} in these units)"
            out.append(t.style.hide(axis="index").set_caption(caption))
    return out


def ppl_beside_paper(df: pd.DataFrame, corpus: str = "wikitext2") -> pd.DataFrame:
    """Perplexity as a ratio to each model's own baseline: the paper's models and ours (95% interval
    over windows, paired with the baseline's windows)."""
    table = {}
    if paper.available():
        r = paper.perplexity_ratios()
        for _, x in r[(r["corpus"] == corpus) & (r["label"] != "bf16")].iterrows():
            table.setdefault(x["label"], {})[f"paper {x['model'].removesuffix('-Chat')}"] = f"{x['ratio']:.3g}"
    for model in sorted(df["model"].unique()):
        size = embedded.size(model)
        base = report.baseline(df, model).get(f"ppl_{corpus}")
        for _, r in df[(df["model"] == model) & (df["method"] != "fp")].iterrows():
            ratio = r.get(f"ppl_{corpus}_ratio")
            if pd.notna(ratio):
                table.setdefault(r["label"], {})[f"ours {size}"] = (
                    f"{ratio:.3g} [{r[f'ppl_{corpus}_ratio_lo']:.3g}, {r[f'ppl_{corpus}_ratio_hi']:.3g}]")
            elif pd.notna(r.get(f"ppl_{corpus}")) and pd.notna(base):  # one window: no interval
                table.setdefault(r["label"], {})[f"ours {size}"] = f"{r[f'ppl_{corpus}'] / base:.3g}"
    return pd.DataFrame([{"variant": k, **v} for k, v in table.items()]).fillna("")


def efficiency_beside_paper(df: pd.DataFrame) -> pd.DataFrame:
    """Weight memory and decode speed as ratios to each model's own baseline: the paper's Table 8 (GPU,
    its kernels of 2023) and ours (as each run recorded its dtype and kernel)."""
    table = {}
    if paper.available():
        r = paper.efficiency_ratios()
        for _, x in r[r["label"] != "bf16"].iterrows():
            what = "memory" if x["metric"] == "memory_gb" else "speed"
            table.setdefault(x["label"], {})[f"paper {x['model'].removesuffix('-Chat')} {what}"] = f"{x['ratio']:.2f}"
    for model in sorted(df["model"].unique()):
        fp = report.baseline(df, model)
        size = embedded.size(model)
        for _, r in df[(df["model"] == model) & (df["method"] != "fp")].iterrows():
            for col, what in (("weight_bytes", "memory"), ("decode_tok_s", "speed")):
                if pd.notna(r.get(col)) and pd.notna(fp.get(col)):
                    table.setdefault(r["label"], {})[f"ours {size} {what}"] = f"{r[col] / fp[col]:.2f}"
    return pd.DataFrame([{"variant": k, **v} for k, v in table.items()]).fillna("")


def gptq_over_rtn(df: pd.DataFrame) -> pd.DataFrame:
    """What GPTQ's error compensation buys over round-to-nearest on the same grid (bits, group size,
    symmetry): WikiText-2 perplexity of both, and the benchmarks where GPTQ - RTN, paired on the same
    items, is significantly above / below zero at 95% (named, so a pattern such as the calibration
    set's language shows)."""
    rows = []
    for model in sorted(df["model"].unique()):
        m = df[df["model"] == model].set_index("label")
        for label in [x for x in m.index if m.loc[x, "method"] == "gptq"]:
            twin = label.replace("gptq", "rtn", 1)
            if twin not in m.index:
                continue
            g, r = m.loc[label], m.loc[twin]
            better, worse, compared = [], [], 0
            for name in suite.names():
                a, b = report.samples_file(g["run"], name), report.samples_file(r["run"], name)
                if pd.isna(g.get(name)) or not a.exists() or not b.exists():
                    continue
                st = stats.benchmark_stats(name, suite.headline(name), a, b)
                if "delta_lo" not in st:
                    continue
                compared += 1
                title = suite.registry()[name]["title"]
                better += [title] if st["delta_lo"] > 0 else []
                worse += [title] if st["delta_hi"] < 0 else []
            rows.append({"model": embedded.size(model), "GPTQ": label, "RTN": twin,
                         "WikiText-2 ppl, GPTQ": g.get("ppl_wikitext2"), "WikiText-2 ppl, RTN": r.get("ppl_wikitext2"),
                         "GPTQ / RTN perplexity": g.get("ppl_wikitext2") / r.get("ppl_wikitext2"),
                         "benchmarks compared": compared,
                         "GPTQ significantly higher on": ", ".join(better) or "none",
                         "GPTQ significantly lower on": ", ".join(worse) or "none"})
    return pd.DataFrame(rows)


def seed_spread() -> pd.DataFrame:
    """WikiText-2 perplexity of each variant of the seed-spread grid (data/grids/gptq3-seeds.yaml)
    across calibration draws: per variant the draws, the range and max / min."""
    d = report.summary(scope="seeds")
    d = d[d["status"] == "done"]  # every draw: not one run per variant
    rows = []
    for label, g in d[d["method"] != "fp"].groupby("label", sort=False):
        ppl = g.sort_values("calib_seed" if "calib_seed" in g else "run")["ppl_wikitext2"].dropna()
        if ppl.empty:
            continue
        rows.append({"variant": label, "calibration draws": len(ppl) if g["calib_samples"].notna().any() else "none",
                     "WikiText-2 perplexity per draw": ", ".join(f"{v:.1f}" for v in ppl),
                     "min": ppl.min(), "max": ppl.max(), "max / min": ppl.max() / ppl.min()})
    return pd.DataFrame(rows)


def generalization() -> pd.DataFrame:
    """The GPTQ generalization diagnostic (quantlib.quantization.generalization), one row per model and
    layer: GPTQ's layer objective over RTN's on its calibration inputs and on held-out text."""
    from quantlib.quantization import generalization as gen

    rows = []
    for f in sorted(gen.OUT.glob("generalization__*.json")):
        d = files.read_json(f)
        grid = f"{d['bits']}-bit, {'symmetric' if d['params']['sym'] else 'asymmetric'}"
        for r in d["layers"]:
            rows.append({"model": embedded.size(d["model"]), "grid": grid, "layer": r["layer"],
                         "calibration samples": d["calibration"]["n_samples"],
                         "input columns": r["columns"], "calibration tokens": r["calibration"]["tokens"],
                         "tokens per column": r["calibration"]["tokens"] / r["columns"],
                         **{f"GPTQ / RTN, {k}": r[k]["ratio"] for k in ("calibration", *gen.HELDOUT)}})
    return pd.DataFrame(rows)



def spqr_statistics(df: pd.DataFrame) -> pd.DataFrame:
    """The SpQR statistics diagnostic (quantlib.quantization.spqr_statistics), one row per model and bit
    width, averaged over its layers: the grid's error with full-precision and with SpQR's 3-bit
    statistics, the weights they clamp, and beside it the SpQR run's WikiText-2 perplexity ratio and KL."""
    from quantlib.quantization import spqr_statistics as sq

    rows = []
    for f in sorted(sq.OUT.glob("spqr-statistics__*.json")):
        d = files.read_json(f)
        runs = df[df["model"] == d["model"]].set_index("label") if not df.empty else pd.DataFrame()
        for b, g in pd.DataFrame(d["layers"]).groupby("bits", sort=False):
            fp = pd.DataFrame(list(g["full_precision_statistics"])).mean()
            q = pd.DataFrame(list(g["spqr_statistics"])).mean()
            run = runs.loc[f"spqr-{b}b"] if f"spqr-{b}b" in runs.index else {}
            rows.append({"model": embedded.size(d["model"]), "bits": b, "layers": len(g),
                         "grid error, fp statistics": fp["relative_error"],
                         f"grid error, {d['qq_bits']}-bit statistics": q["relative_error"],
                         "error ratio": q["relative_error"] / fp["relative_error"],
                         "weights clamped (%)": 100 * q["clamped"],
                         "sum |w| change (%)": 100 * q["magnitude_change"],
                         "run: WikiText-2 / baseline": run.get("ppl_wikitext2_ratio", np.nan),
                         "run: KL to baseline": run.get("kl_wikitext2", np.nan)})
    return pd.DataFrame(rows)


def token_breakdown() -> pd.DataFrame:
    """The per-position diagnostic (quantlib.scoring.token_breakdown), one row per model and variant: the
    perplexity change on its windows split into exact KL and the calibration term, the KL as the records
    keep it, the entropy change, where the calibration term comes from by the baseline's p(next token), and
    the NLL change the run recorded on the same windows (it differs where the weights were recomputed
    with other ones)."""
    from quantlib.scoring import token_breakdown as tb

    def recorded_nll(run, corpus, n):
        nll = files.read_json(paths.RUNS / run / "perplexity.json")["corpora"][corpus]["window_nll"]
        return float(np.mean(nll[:n]))

    rows = []
    for f in sorted(tb.OUT.glob("token-breakdown__*.json")):
        d = files.read_json(f)
        base = recorded_nll(d["runs"]["baseline"], d["corpus"], d["windows"])
        for label in d["labels"]:  # in the order asked for (the JSON's keys are sorted)
            r = d["variants"][label]
            bins = {f"calibration from p(y) in [{b['p_y_from']:g}, {b['p_y_to']:g}{']' if b['p_y_to'] == 1 else ')'}":
                    b["share"] * (b["dnll"] - b["kl"]) if b["share"] else 0.0 for b in r["by_p_y"]}
            rows.append({"model": embedded.size(d["model"]), "variant": label, "windows": d["windows"],
                         "threads": d["torch_threads"],
                         "perplexity ratio": np.exp(r["dnll"]), "dNLL": r["dnll"], "exact KL": r["kl"],
                         "recorded KL (lower bound)": r["coarse_kl"], "calibration term": r["calibration_term"],
                         "entropy change": r["entropy_q"] - r["entropy_p"], **bins,
                         "dNLL as recorded": recorded_nll(d["runs"][label], d["corpus"], d["windows"]) - base,
                         "same weights as the run": d["records"][label]["same_weights"]})
    return pd.DataFrame(rows)


def nll_beyond_kl(df: pd.DataFrame, corpus: str = "wikitext2") -> pd.DataFrame:
    """Per quantized run: the log perplexity ratio (the mean NLL change) minus the recorded KL to the
    baseline. The recorded KL is a lower bound of the exact one, so this bounds the calibration term of
    the token breakdown from above, for every run, from its records alone."""
    ratio, kl = f"ppl_{corpus}_ratio", f"kl_{corpus}"
    if df.empty or ratio not in df or kl not in df:
        return pd.DataFrame(columns=["model", "label", "dNLL", "recorded KL", "dNLL - recorded KL"])
    runs = df.dropna(subset=[ratio, kl])
    out = pd.DataFrame({"model": runs["model"].map(embedded.size), "label": runs["label"], "dNLL": np.log(runs[ratio]),
                        "recorded KL": runs[kl]})
    return out.assign(**{"dNLL - recorded KL": out["dNLL"] - out["recorded KL"]}).reset_index(drop=True)
