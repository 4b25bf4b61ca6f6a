"""Collect every run record into one long (tidy) table, the only input of the book.

data/summary.csv has one row per run x entity x metric: the entity is `run` (the run's attributes:
label, stored bits, sizes, speed, versions), a perplexity corpus, or a benchmark. `wide()` is the
one pivot, for chapters that want a row per run; its column names follow `column()`.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from quantlib.io import files, paths
from quantlib.reporting import stats
from quantlib.running import records
from quantlib.scoring import suite

ID = ["run", "model", "label", "method", "bits"]
PPL_CORPORA = ("wikitext2", "ptb", "c4")


def column(entity: str, metric: str) -> str:
    """The wide column of an entity's metric: run attributes by name, ppl_<corpus>, kl_<corpus>, the
    benchmark's headline metric as the bare benchmark name, other metrics as <benchmark>_<metric>."""
    if entity == "run":
        return metric
    if entity in PPL_CORPORA:
        return {"ppl": f"ppl_{entity}", "windows": f"ppl_{entity}_windows"}.get(
            metric, f"ppl_{entity}_{metric.removeprefix('ppl_')}" if metric.startswith(("ppl_", "ratio")) else
            f"{metric}_{entity}")
    return entity if metric == suite.headline(entity) else f"{entity}_{metric}"


def _run_attributes(folder: Path, spec: dict) -> dict:
    st = files.read_json(folder / "status.json") if (folder / "status.json").exists() else {}
    a = {"status": st.get("status", "unknown"), "seconds": st.get("seconds"), "error": st.get("error"),
         "title": spec.get("title"), "group_size": spec.get("group_size"), "dtype": spec.get("dtype"),
         "ppl_seqlen": spec["perplexity"]["seqlen"], "ppl_limit": spec["perplexity"]["limit"],
         "calib_samples": (spec.get("calibration") or {}).get("n_samples"),
         "calib_seed": (spec.get("calibration") or {}).get("seed"),
         **{f"param_{k}": v for k, v in spec.get("params", {}).items()}}
    if (folder / "environment.json").exists():
        env = files.read_json(folder / "environment.json")
        model = env.get("model") or {}
        a.update(device=env["device"], device_name=env["device_name"], machine=machine(env, spec),
                 git_sha=env["git_sha"],
                 torch_threads=env.get("torch_threads"), gguf_name=model.get("gguf_name"),
                 gguf_file_type=model.get("file_type"),
                 **{p: env["packages"].get(p) for p in ("torch", "transformers", "lm_eval", "bitsandbytes")})
    if (folder / "metrics.json").exists():
        m = files.read_json(folder / "metrics.json")
        q = m["quantization"]
        a.update(stored_bits=m["stored_bits"], weight_bytes=q["weight_bytes"], weight_bytes_kind=q["weight_bytes_kind"],
                 outlier_fraction=q.get("outlier_fraction"), load_seconds=m.get("load_seconds"),
                 quantize_seconds=None if q.get("from_cache") else q.get("seconds"))
    if (folder / "efficiency.json").exists():
        e = files.read_json(folder / "efficiency.json")
        beside = e.get("baseline") or {}  # the fp model timed after this run, or interleaved with it ("run")
        a.update(prefill_tok_s=e["prefill_tokens_per_s"], decode_tok_s=e["decode_tokens_per_s"],
                 peak_memory_bytes=e["peak_memory_bytes"], peak_memory_kind=e["peak_memory_kind"],
                 speed_new_tokens=e["new_tokens"], speed_prompt_tokens=e["prompt_tokens"],
                 speed_machine=e.get("machine") or a.get("machine"), speed_dtype=e.get("dtype"),
                 speed_threads=e.get("threads"), speed_kernel=e.get("kernel"),
                 speed_other_cpus=e.get("other_processes_cpus"),
                 speed_baseline_decode=beside.get("decode_tokens_per_s"),
                 speed_baseline_prefill=beside.get("prefill_tokens_per_s"),
                 speed_baseline_other_cpus=beside.get("other_processes_cpus"),
                 speed_interleaved_decode=beside.get("run", {}).get("decode_tokens_per_s"),
                 speed_interleaved_prefill=beside.get("run", {}).get("prefill_tokens_per_s"),
                 packed_weight_bytes=e.get("packed_weight_bytes"))
    for name in ("mmlu", "ceval"):  # letter-answer benchmarks: how much the answers lean on one letter
        a[f"{name}_top_choice_share"] = top_choice_share(folder / "samples" / f"{name}.jsonl")
    return a


def machine(env: dict, spec: dict) -> str | None:
    """The record's machine (records.machine); for records made before it was recorded, what their
    environment implies: bf16 on a CPU then meant native bf16 (the grids' dtype was 'auto')."""
    if env.get("machine") or env["device"] != "cpu":
        return env.get("machine")
    bf16 = "native" if spec.get("dtype") == "bfloat16" else "unrecorded"
    return records.cpu_machine("unrecorded CPU", env.get("cpu_count"), bf16)


def rows(folder: Path) -> list[dict]:
    """The long rows of one run record."""
    spec = files.read_json(folder / "spec.json")
    ident = {"run": folder.name, "model": spec["model"], "label": spec["label"], "method": spec["method"],
             "bits": spec["bits"]}
    out = [ident | {"entity": "run", "metric": k, "value": v} for k, v in _run_attributes(folder, spec).items()]
    # unfinished runs carry what they have finished too (each benchmark and the perplexity are written
    # whole as they finish); analyses read finished runs only (report.done)
    ppl = files.read_json(folder / "perplexity.json")["corpora"] if (folder / "perplexity.json").exists() else {}
    for corpus, p in ppl.items():
        out += [ident | {"entity": corpus, "metric": k, "value": p[k]}
                for k in ("ppl", "windows", "kl", "top1_flip") if p.get(k) is not None]
    for k in ("kl", "top1_flip"):
        vals = [p[k] for p in ppl.values() if p.get(k) is not None]
        if vals:
            out.append(ident | {"entity": "run", "metric": f"{k}_mean", "value": sum(vals) / len(vals)})
    for f in sorted((folder / "benchmarks").glob("*.json")):
        b = files.read_json(f)
        name = f.stem
        vals = {b["metric"]: b["value"], "n": b["n"], "limit": b["limit_per_task"], "chance": b.get("chance"),
                **{k: v for k, v in (b.get("metrics") or {}).items() if k != b["metric"]},
                **{f"group_{g}": v for g, v in (b.get("groups") or {}).items()}}
        out += [ident | {"entity": name, "metric": k, "value": v} for k, v in vals.items() if v is not None]
        if "judge" in b:  # which LLM judged the constraints no rule checks (empty: those were skipped)
            out.append(ident | {"entity": name, "metric": "judge", "value": b["judge"]})
    return out


def top_choice_share(samples: Path) -> float | None:
    """Share of multiple-choice answers that go to the model's most frequent choice (a letter-bias check)."""
    if not samples.exists():
        return None
    picks = [max(range(len(r["response"])), key=lambda i: r["response"][i][0])
             for r in map(json.loads, samples.read_text().splitlines()) if r.get("response")]
    return max(map(picks.count, set(picks))) / len(picks) if picks else None


def collect(runs: Path = paths.RUNS) -> pd.DataFrame:
    folders = sorted(p for p in Path(runs).glob("*") if (p / "spec.json").exists())
    return pd.DataFrame([r for f in folders for r in rows(f)], columns=ID + ["entity", "metric", "value"])


def uncertainty(long: pd.DataFrame, runs: Path) -> pd.DataFrame:
    """Per run and benchmark: a bootstrap CI of the headline score and, against the model's baseline
    on the same items, the share of flipped items and a paired p-value (quantlib.reporting.stats)."""
    n = long[long["metric"] == "n"].set_index(["run", "entity"])["value"]
    runs_ = long[ID].drop_duplicates("run")
    # a run's baseline: the full-precision run of the same model in the same compute dtype
    dtype = long[(long["entity"] == "run") & (long["metric"] == "dtype")].set_index("run")["value"]
    runs_ = runs_.assign(dtype=runs_["run"].map(dtype))
    base = {k: g["run"].tolist() for k, g in runs_[runs_["method"] == "fp"].groupby(["model", "dtype"])}
    runs_ = runs_.assign(baselines=[base.get((m, d), []) for m, d in zip(runs_["model"], runs_["dtype"])])
    out = []
    for (run, name), items in n.items():
        ident = runs_[runs_["run"] == run].iloc[0].to_dict()
        same = [b for b in ident.pop("baselines") if n.get((b, name)) == items]
        ident.pop("dtype")
        run_file = Path(runs) / run / "samples" / f"{name}.jsonl"
        base_file = Path(runs) / same[0] / "samples" / f"{name}.jsonl" if same else None
        st = stats.benchmark_stats(name, suite.headline(name), run_file, base_file)
        out += [ident | {"entity": name, "metric": k, "value": v} for k, v in st.items() if pd.notna(v)]
    for _, ident in runs_.iterrows():  # perplexity: intervals over windows, paired with the baseline's
        same = ident["baselines"]
        ppl, ref = _window_nll(Path(runs) / ident["run"]), _window_nll(Path(runs) / same[0]) if same else {}
        for corpus, nll in ppl.items():
            paired = same and same[0] != ident["run"] and len(ref.get(corpus) or []) == len(nll)
            st = stats.perplexity_stats(nll, ref.get(corpus) if paired else None)
            out += [ident[ID].to_dict() | {"entity": corpus, "metric": k, "value": v} for k, v in st.items()]
    return pd.DataFrame(out, columns=long.columns)


def _window_nll(folder: Path) -> dict:
    f = folder / "perplexity.json"
    return {c: p["window_nll"] for c, p in files.read_json(f)["corpora"].items()} if f.exists() else {}


def write(runs: Path = paths.RUNS, out: Path = paths.SUMMARY) -> pd.DataFrame:
    long = collect(runs)
    if not long.empty:
        long = pd.concat([long, uncertainty(long, runs)], ignore_index=True)
    buf = io.StringIO()
    long.to_csv(buf, index=False)
    files.atomic_write_text(out, buf.getvalue())
    return long


def wide(long: pd.DataFrame) -> pd.DataFrame:
    """The one pivot: a row per run, a column per entity x metric (see column()), numbers as numbers."""
    if long.empty:
        return pd.DataFrame(columns=ID)
    cols = [column(e, m) for e, m in zip(long["entity"], long["metric"])]
    w = (long.assign(column=cols).drop_duplicates(ID + ["column"]).set_index(ID + ["column"])["value"]
         .unstack("column").reset_index())
    w.columns.name = None
    for c in w.columns:
        converted = pd.to_numeric(w[c], errors="coerce")
        if converted.notna().sum() == w[c].notna().sum():
            w[c] = converted
    return w


if __name__ == "__main__":
    print(wide(write()).to_string())
