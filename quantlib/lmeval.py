"""Benchmarks through lm-evaluation-harness on the in-memory (quantized) model.

Tasks are the YAML files under quantlib/tasks. With QUANTLIB_DATA_DIR set, each task's
`metadata.local_files` replaces its hub dataset by the local copy; otherwise the hub is used.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import paths

TASK_DIRS = {"mmlu": "mmlu", "gsm8k": "gsm8k"}


def task_files(benchmark: str) -> list[Path]:
    return sorted((paths.TASKS / TASK_DIRS[benchmark]).glob("*.yaml"))


def task_sha256(benchmark: str) -> str:
    """One hash over the benchmark's task definitions (YAML, templates, helper code)."""
    h = hashlib.sha256()
    for f in sorted((paths.TASKS / TASK_DIRS[benchmark]).iterdir()):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def task_configs(benchmark: str) -> list[dict]:
    from lm_eval.tasks._yaml_loader import load_yaml

    configs = []
    for f in task_files(benchmark):
        cfg = load_yaml(f, resolve_func=True, recursive=True)
        local = (cfg.get("metadata") or {}).pop("local_files", None)
        if local and paths.data_dir() is not None:
            name = cfg.get("dataset_name") or ""
            cfg["dataset_path"] = local["format"]
            cfg["dataset_name"] = None
            cfg["dataset_kwargs"] = {"data_files": {
                split: str(paths.data_file(rel.format(name=name)))
                for split, rel in local.items() if split != "format"}}
        configs.append(cfg)
    return configs


def _primary(metrics: dict) -> tuple[str, float, float | None]:
    for key, value in metrics.items():
        if "," in key and not key.startswith("alias") and "_stderr" not in key:
            err = metrics.get(key.replace(",", "_stderr,"))
            return key, float(value), (float(err) if isinstance(err, (int, float)) else None)
    raise KeyError(f"no metric in {metrics}")


def evaluate(model, tokenizer, benchmark: str, limit: int | None, samples_dir: Path,
             batch_size: int = 8) -> dict:
    """Score one benchmark; per-example records go to samples_dir/<benchmark>.jsonl."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=2048)
    res = simple_evaluate(model=lm, tasks=task_configs(benchmark), limit=limit, apply_chat_template=True,
                          log_samples=True, bootstrap_iters=0, random_seed=0, numpy_random_seed=0,
                          torch_random_seed=0, fewshot_random_seed=0)
    per_task, correct, total = {}, 0.0, 0
    samples_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for task, metrics in res["results"].items():
        key, value, err = _primary(metrics)
        n = len(res["samples"][task])
        per_task[task] = {"metric": key, "value": value, "n": n}
        correct, total = correct + value * n, total + n
        for s in res["samples"][task]:
            lines.append(json.dumps({"task": task, "doc_id": s["doc_id"], "target": s["target"],
                                     "response": s["filtered_resps"], "raw": s["resps"], key.split(",")[0]: s.get(key.split(",")[0])},
                                    default=str))
    (samples_dir / f"{benchmark}.jsonl").write_text("\n".join(lines) + "\n")
    metric = next(iter(per_task.values()))["metric"]
    return {"metric": metric, "value": correct / total, "n": total, "limit_per_task": limit,
            "tasks": per_task, "task_versions": {k: v for k, v in res.get("versions", {}).items()},
            "task_definitions_sha256": task_sha256(benchmark),
            "lm_eval_config": {k: v for k, v in res.get("config", {}).items() if k in ("batch_size", "limit")}}
