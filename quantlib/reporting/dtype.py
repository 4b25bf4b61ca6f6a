"""bf16 against fp32 on one model: the default grid's baseline and its fp32 twin (data/grids/dtype.yaml),
the same items in both dtypes, compared benchmark by benchmark and item by item."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from quantlib.io import paths
from quantlib.running.spec import RunSpec, load_grid


def twins(grid: str = "dtype.yaml") -> tuple[Path, Path]:
    """The run folders of a grid's fp32 baseline and of the same spec in bf16 (the default grid's on
    machines that compute in bf16)."""
    fp32 = load_grid(paths.GRIDS / grid)[0]
    bf16 = RunSpec.from_dict(fp32.to_dict() | {"dtype": "bfloat16", "bits": None})
    return paths.RUNS / fp32.name, paths.RUNS / bf16.name


def _answers(samples: Path) -> dict:
    """(task, doc_id) -> what the model answered: the top choice of a log-likelihood item, the text of a
    generated one."""
    out = {}
    for line in samples.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        resp = r["response"]
        top = resp and isinstance(resp[0], list) and isinstance(resp[0][0], (int, float))
        out[(r["task"], r["doc_id"])] = int(np.argmax([c[0] for c in resp])) if top else json.dumps(resp)
    return out


def agreement(fp32: Path, bf16: Path) -> pd.DataFrame:
    """Per benchmark: its headline metric in both dtypes and the share of items answered identically
    (same top choice, or the same generated text); perplexity per corpus where both have the same windows."""
    rows = []
    for f in sorted((fp32 / "benchmarks").glob("*.json")):
        other = bf16 / "benchmarks" / f.name
        if not other.exists():
            continue
        a, b = json.loads(f.read_text()), json.loads(other.read_text())
        x, y = _answers(fp32 / "samples" / f"{f.stem}.jsonl"), _answers(bf16 / "samples" / f"{f.stem}.jsonl")
        common = x.keys() & y.keys()
        rows.append({"benchmark": f.stem, "metric": a["metric"], "n": len(common),
                     "fp32": a["metrics"][a["metric"]], "bf16": b["metrics"][b["metric"]],
                     "same answer": float(np.mean([x[k] == y[k] for k in common])) if common else np.nan})
    ppl = [json.loads((run / "perplexity.json").read_text())["corpora"] for run in (fp32, bf16)]
    for corpus in sorted(ppl[0].keys() & ppl[1].keys()):
        p32, p16 = ppl[0][corpus], ppl[1][corpus]
        if p32["windows"] == p16["windows"]:
            rows.append({"benchmark": f"perplexity {corpus}", "metric": "ppl", "n": p32["windows"],
                         "fp32": p32["ppl"], "bf16": p16["ppl"], "same answer": np.nan})
    df = pd.DataFrame(rows)
    df["bf16 - fp32"] = df["bf16"] - df["fp32"]
    return df
