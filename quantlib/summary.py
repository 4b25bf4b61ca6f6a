"""Collect every run record into one flat table, the only input of the book."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from . import benchmarks, paths, records, stats


def row(folder: Path) -> dict:
    spec = records.read_json(folder / "spec.json")
    st = records.read_json(folder / "status.json") if (folder / "status.json").exists() else {}
    r = {"run": folder.name, "status": st.get("status", "unknown"), "seconds": st.get("seconds"),
         "error": st.get("error"), "model": spec["model"], "method": spec["method"], "bits": spec["bits"],
         "group_size": spec["group_size"], "ppl_seqlen": spec["ppl_seqlen"], "ppl_limit": spec["ppl_limit"],
         "calib_samples": spec["calibration"]["n_samples"], "calib_seed": spec["calibration"]["seed"],
         "outlier_threshold": spec.get("outlier_threshold")}
    env_file = folder / "environment.json"
    if env_file.exists():
        env = records.read_json(env_file)
        r.update(device=env["device"], device_name=env["device_name"], git_sha=env["git_sha"],
                 torch=env["packages"].get("torch"), transformers=env["packages"].get("transformers"),
                 lm_eval=env["packages"].get("lm_eval"), bitsandbytes=env["packages"].get("bitsandbytes"))
    mfile = folder / "metrics.json"
    if r["status"] == "done" and mfile.exists():
        m = records.read_json(mfile)
        q = m["quantization"]
        r.update(dtype=q["dtype"], weight_bytes=q["weight_bytes"], weight_bytes_kind=q["weight_bytes_kind"],
                 linear_bits=(q["effective_bits"] if r["method"] == "fp"
                              else linear_bits(q.get(r["method"]), q["dtype"])),
                 outlier_fraction=(q.get("spqr") or {}).get("outlier_fraction"))
        if r["bits"] is None:  # fp at its natural width
            r["bits"] = q["effective_bits"]
        for name, p in m["perplexity"].items():
            r[f"ppl_{name}"] = p["ppl"]
            r[f"ppl_{name}_windows"] = p["windows"]
        r.update(efficiency_columns(folder / "efficiency.json"))
        r["mmlu_top_choice_share"] = top_choice_share(folder / "samples" / "mmlu.jsonl")
        r.update(divergence_columns(folder / "divergence.json"))
        for name, b in m["benchmarks"].items():
            r.update(bench_columns(name, b))
    return r


def efficiency_columns(file: Path) -> dict:
    """Speed and peak memory (quantlib.efficiency; absent until measured: none)."""
    if not file.exists():
        return {}
    e = records.read_json(file)
    return dict(prefill_tok_s=e["prefill_tokens_per_s"], decode_tok_s=e["decode_tokens_per_s"],
                peak_memory_bytes=e["peak_memory_bytes"], peak_memory_kind=e["peak_memory_kind"],
                speed_new_tokens=e["new_tokens"], speed_prompt_tokens=e["prompt_tokens"])


def divergence_columns(file: Path) -> dict:
    """`kl_<corpus>`, `top1_flip_<corpus>` and their means over corpora (quantlib.divergence; absent: none)."""
    if not file.exists():
        return {}
    d = records.read_json(file)["corpora"]
    cols = {f"{m}_{c}": v[m] for c, v in d.items() for m in ("kl", "top1_flip")}
    cols.update({f"{m}_mean": sum(v[m] for v in d.values()) / len(d) for m in ("kl", "top1_flip")})
    return cols


def bench_columns(name: str, b: dict) -> dict:
    """`<name>` is the headline metric; other metrics, discipline groups, n and chance level beside it."""
    cols = {name: b["value"], f"{name}_n": b["n"], f"{name}_limit": b["limit_per_task"],
            f"{name}_metric": b["metric"], f"{name}_chance": b.get("chance")}
    if "judge" in b:  # which LLM judged the constraints no rule checks (None: those were skipped)
        cols[f"{name}_judge"] = b["judge"]
    cols.update({f"{name}_{k}": v for k, v in (b.get("metrics") or {}).items() if k != b["metric"]})
    cols.update({f"{name}_group_{g}": v for g, v in (b.get("groups") or {}).items()})
    return cols


def linear_bits(cal: dict | None, dtype: str) -> float | None:
    """Stored bits per weight of the quantized linear layers (codes + statistics + outliers), from the
    sizes the GPTQ, SpQR and bitsandbytes records carry; None for records made before bnb carried them."""
    if not cal or "quantized_linear_packed_bytes" not in cal:
        return None
    itemsize = {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]
    return 8 * cal["quantized_linear_packed_bytes"] / (cal["quantized_linear_dense_bytes"] / itemsize)


def top_choice_share(samples: Path) -> float | None:
    """Share of multiple-choice answers that go to the model's most frequent choice (a letter-bias check)."""
    if not samples.exists():
        return None
    picks = [max(range(len(r["response"])), key=lambda i: r["response"][i][0])
             for r in map(json.loads, samples.read_text().splitlines()) if r.get("response")]
    return max(map(picks.count, set(picks))) / len(picks) if picks else None


def label(r: dict) -> str:
    """Short variant name for tables and legends: fp32 / bf16, bnb-nf4, gptq-4b."""
    if r["method"] == "fp":
        return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(r.get("dtype"), "fp")
    if str(r["method"]).startswith("bnb-") or r["bits"] != r["bits"]:
        return r["method"]
    label = f"{r['method']}-{int(r['bits'])}b"
    if r["method"] == "spqr":  # ablation variants: other group sizes, no outliers
        label += (f"-g{int(r['group_size'])}" if r["group_size"] != 16 else "") + (
            "-no-outliers" if r.get("outlier_threshold") == float("inf") else "")
    return label


def collect(runs: Path = paths.RUNS) -> pd.DataFrame:
    folders = sorted(p for p in Path(runs).glob("*") if (p / "spec.json").exists())
    df = pd.DataFrame([row(f) for f in folders])
    if not df.empty:
        df["label"] = [label(r) for r in df.to_dict("records")]
    return df


def add_uncertainty(df: pd.DataFrame, runs: Path) -> pd.DataFrame:
    """Per run and benchmark: a bootstrap CI of the headline score and, against the model's baseline
    on the same items, the share of flipped items and a paired p-value (quantlib.stats)."""
    extra = []
    for _, r in df.iterrows():
        cols = {}
        base = df[(df["model"] == r["model"]) & (df["method"] == "fp") & (df["status"] == "done")]
        for name in benchmarks.names():
            run_file = Path(runs) / r["run"] / "samples" / f"{name}.jsonl"
            if r["status"] != "done" or name not in df or pd.isna(r.get(name)) or not run_file.exists():
                continue
            same = base[base[f"{name}_n"] == r[f"{name}_n"]] if not base.empty else base
            base_file = Path(runs) / same["run"].iloc[0] / "samples" / f"{name}.jsonl" if not same.empty else None
            st = stats.benchmark_stats(name, benchmarks.headline(name), run_file, base_file)
            cols.update({f"{name}_{k}": v for k, v in st.items()})
        extra.append(cols)
    return pd.concat([df, pd.DataFrame(extra, index=df.index)], axis=1)


def write(runs: Path = paths.RUNS, out: Path = paths.SUMMARY) -> pd.DataFrame:
    df = collect(runs)
    if not df.empty:
        df = add_uncertainty(df, runs)
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    records.atomic_write_text(out, buf.getvalue())
    return df


if __name__ == "__main__":
    print(write().to_string())
