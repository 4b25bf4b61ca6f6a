"""Benchmarks through lm-evaluation-harness on the in-memory (quantized) model.

Each benchmark is a folder of task YAML under quantlib/tasks (registry: tasks/benchmarks.yaml).
With QUANTLIB_DATA_DIR set, a task's `metadata.local_files` replaces its hub dataset by the local
copy, after checking that the files exist and carry the columns the task needs; otherwise the hub is used.
"""
from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import inspect
import json
import math
import sqlite3
import time
from pathlib import Path

import torch

from quantlib.io import files, paths
from quantlib.scoring import judge, suite
from quantlib.tasks import common
from quantlib.tasks.common import DataError


def task_files(benchmark: str) -> list[Path]:
    return sorted(f for f in suite.task_dir(benchmark).glob("*.yaml") if not f.name.startswith("_"))


def task_sha256(benchmark: str) -> str:
    """One hash over the benchmark's task definitions (YAML, templates, helper code, shared helpers)."""
    h = hashlib.sha256()
    for f in sorted(suite.task_dir(benchmark).iterdir()) + [paths.TASKS / "common.py"]:
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _local(benchmark: str, cfg: dict, local: dict) -> dict:
    """Point a task config at the local copy: data_files per split, checked before anything runs."""
    name = cfg.get("dataset_name") or ""
    data_files = {}
    for split, rel in local["splits"].items():
        rel = rel.format(name=name)
        found = sorted(glob.glob(str(paths.data_dir() / rel))) if "*" in rel else [str(paths.data_file(rel))]
        if not found:
            raise DataError(f"{benchmark}: no file matches {paths.data_dir() / rel}")
        for f in found:
            common.require_columns(benchmark, f, local.get("columns", []))
        data_files[split] = found
    cfg.update(dataset_path=local["format"], dataset_name=None,
               dataset_kwargs={"data_files": data_files, **local.get("options", {})})
    return cfg


def task_configs(benchmark: str) -> list[dict]:
    from lm_eval.tasks._yaml_loader import load_yaml

    if benchmark not in suite.registry():
        raise KeyError(f"unknown benchmark {benchmark!r}; known: {list(suite.names())}")
    configs = []
    for f in task_files(benchmark):
        cfg = load_yaml(f, resolve_func=True, recursive=True)
        local = (cfg.get("metadata") or {}).pop("local_files", None)
        if local and paths.data_dir() is not None:
            cfg = _local(benchmark, cfg, local)
        configs.append(cfg)
    return configs


def _clean(x):
    """JSON-safe numbers: NaN (a metric with no items, e.g. an absent BBQ category) becomes None."""
    x = x.item() if hasattr(x, "item") else x
    return None if isinstance(x, float) and math.isnan(x) else x


def _task_metrics(metrics: dict) -> dict:
    return {k.split(",")[0]: _clean(v) for k, v in metrics.items()
            if "," in k and "_stderr" not in k and isinstance(_clean(v), (int, float, type(None)))}


def _pooled(per_task: dict, tasks: list[str], metric: str) -> float | None:
    """Item-weighted mean of a per-item-mean metric over tasks (micro average, lm-eval's group rule)."""
    pairs = [(per_task[t]["metrics"].get(metric), per_task[t]["n"]) for t in tasks if t in per_task]
    pairs = [(v, k) for v, k in pairs if v is not None]
    n = sum(k for _, k in pairs)
    return sum(v * k for v, k in pairs) / n if n else None


def _logits_to_keep(inps, longest_continuation: int | None) -> int | None:
    """How many trailing positions of a right-padded batch hold every continuation's logits.

    lm-eval pads with token 0, so a row's length is read as its last non-zero token + 1; a real
    trailing token 0 only makes the estimate shorter, which keeps more positions, never fewer.
    lm-eval offsets its slice by the number of positions dropped from the front."""
    if not longest_continuation:
        return None
    width = inps.shape[1]
    nonzero = (inps != 0).int()
    lengths = width - nonzero.flip(1).argmax(1)
    lengths[nonzero.sum(1) == 0] = 0
    return int(min(width, width - int(lengths.min()) + longest_continuation))


def _accepts_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def shared_contexts(requests, max_length: int) -> dict[tuple, list[int]]:
    """Requests that share one context and score continuations of several tokens (BBQ's 12 answers,
    TruthfulQA's 4-13): context -> their indices. One-token continuations are left to
    lm-eval, which already runs their shared context once; rolling windows (no request string) and
    inputs longer than the model's window too."""
    groups: dict[tuple, list[int]] = {}
    for i, (request, ctx, cont) in enumerate(requests):
        if request is not None and len(ctx) + len(cont) <= max_length + 1:
            groups.setdefault(tuple(ctx), []).append(i)
    return {c: idx for c, idx in groups.items() if len(idx) > 1 and max(len(requests[i][2]) for i in idx) > 1}


def score_shared(model, ctx: list[int], conts: list[list[int]], device) -> list[tuple[float, bool]]:
    """(log-likelihood, is greedy) of each continuation after one shared context: the context runs once,
    its key-value cache is copied once per continuation, and the continuations run together (right
    padding: causal attention never lets a real token see the padding after it)."""
    import torch.nn.functional as F

    with torch.no_grad():
        out = model(torch.tensor([ctx], device=device), use_cache=True, logits_to_keep=1)
        first = F.log_softmax(out.logits[0, -1].float(), -1)           # predicts each continuation's 1st token
        width = max(len(c) for c in conts) - 1
        cache = out.past_key_values
        cache.batch_repeat_interleave(len(conts))
        tails = torch.tensor([c[:-1] + [0] * (width + 1 - len(c)) for c in conts], device=device)
        rest = F.log_softmax(model(tails, past_key_values=cache, use_cache=False).logits.float(), -1)
    answers = []
    for j, c in enumerate(conts):
        logp = torch.cat([first[None], rest[j, :len(c) - 1]])         # [len(c), vocab]
        toks = torch.tensor(c, device=device)
        answers.append((float(logp.gather(1, toks[:, None]).sum()), bool((logp.argmax(-1) == toks).all())))
    return answers


def _chat_lm(model, tokenizer, batch_size: int, share_contexts: bool = False):
    """lm-eval's HFLM, except that a context keeps its trailing whitespace. lm-eval moves it into the
    continuation, which under a chat template is the newline of "<|im_start|>assistant\n": its
    log-probability (-16 for Qwen2.5-Coder-0.5B, which starts its answer without it) is then added to
    every choice, and per-token means (TruthfulQA MC1's rule) favour longer answers. Log-likelihood
    batches run the output projection only on the trailing positions that hold continuations (for
    Qwen 0.5B the projection is 151,936 x 896, a quarter of the matmul work per token): MMLU 1.65x
    faster, log-likelihoods equal to 5e-6. With `share_contexts` (the benchmark registry's
    shared_context), choices of several tokens after one context run that context once
    (`score_shared`): BBQ 2.95x faster on Qwen 0.5B in bf16, the same top choice on every item, but
    log-likelihoods that differ by up to 0.34 (bf16 rounding along another path), hence its own key."""
    from lm_eval.models.huggingface import HFLM

    class ChatHFLM(HFLM):
        _longest_continuation = None

        def _encode_pair(self, context, continuation):
            whole, ctx = self.tok_encode(context + continuation), self.tok_encode(context)
            if context == context.rstrip() or whole[:len(ctx)] != ctx:
                return super()._encode_pair(context, continuation)
            return ctx, whole[len(ctx):]

        def _loglikelihood_tokens(self, requests, *args, **kwargs):
            shared = shared_contexts(requests, self.max_length) if share_contexts and _accepts_logits_to_keep(
                self.model) else {}
            answers = [None] * len(requests)
            for ctx, idx in shared.items():
                for i, answer in zip(idx, score_shared(self.model, list(ctx), [requests[i][2] for i in idx],
                                                       self.device)):
                    answers[i] = answer
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
            rest = [i for i, a in enumerate(answers) if a is None]
            self._longest_continuation = max((len(requests[i][2]) for i in rest), default=None)
            try:
                for i, answer in zip(rest, super()._loglikelihood_tokens([requests[i] for i in rest], *args, **kwargs)
                                     if rest else []):
                    answers[i] = answer
            finally:
                self._longest_continuation = None
            return answers

        def _model_call(self, inps, attn_mask=None, labels=None):
            keep = _logits_to_keep(inps, self._longest_continuation)
            if keep is None or attn_mask is not None or not _accepts_logits_to_keep(self.model):
                return super()._model_call(inps, attn_mask, labels)
            with torch.no_grad():
                return self.model(inps, logits_to_keep=keep).logits

    return ChatHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=2048)


@functools.lru_cache(maxsize=1)
def _task_manager():
    """Our tasks are passed as config dicts, so lm-eval's index of its ~10k bundled task YAMLs is not
    needed; building it costs ~20 s per simple_evaluate call on 2 cores (12 calls per run)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False)


def _journaled(journal: Path | None) -> tuple[str | None, int]:
    """lm-eval's request cache as a journal of one benchmark in progress: every scored request is
    written as it finishes (SQLite, <journal>_rank0.db), so a benchmark cut short resumes at its first
    unscored request. Returns lm-eval's `use_cache` prefix and how many requests the journal holds."""
    if journal is None:
        return None, 0
    journal.parent.mkdir(parents=True, exist_ok=True)
    db = Path(f"{journal}_rank0.db")
    if not db.exists():
        return str(journal), 0
    try:  # lm-eval's SqliteDict keeps its entries in the table "unnamed"
        with contextlib.closing(sqlite3.connect(db)) as con:
            return str(journal), con.execute("SELECT COUNT(*) FROM unnamed").fetchone()[0]
    except sqlite3.DatabaseError as e:  # cut mid-write: the benchmark starts over rather than trust it
        print(f"{db}: unreadable journal ({e}); scoring {journal.name.rsplit('-', 1)[0]} from its first request")
        db.unlink()
        return str(journal), 0


def evaluate(model, tokenizer, benchmark: str, limit: int | None, samples_dir: Path,
             batch_size: int = 8, journal: Path | None = None) -> dict:
    """Score one benchmark; per-item records go to samples_dir/<benchmark>.jsonl. With a journal,
    requests it already holds are read from it, and new ones are added as they are scored."""
    from lm_eval import simple_evaluate

    reg = suite.registry()[benchmark]
    configs = task_configs(benchmark)
    common.set_tokenizer(tokenizer)
    lm = _chat_lm(model, tokenizer, batch_size, reg.get("shared_context", False))
    use_cache, journaled = _journaled(journal)
    t0 = time.perf_counter()
    res = simple_evaluate(model=lm, tasks=configs, task_manager=_task_manager(), limit=limit, use_cache=use_cache,
                          apply_chat_template=True, log_samples=True, bootstrap_iters=0, random_seed=0,
                          numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    per_task, lines, chance = {}, [], []
    for task, metrics in res["results"].items():
        samples = res["samples"][task]
        cfg = res["configs"][task]
        per_task[task] = {"metrics": _task_metrics(metrics), "n": len(samples),
                          "prompt": str(cfg.get("doc_to_text")), "description": cfg.get("description") or None,
                          "generation_kwargs": cfg.get("generation_kwargs")
                          if cfg.get("output_type") == "generate_until" else None}
        for s in samples:
            if cfg.get("output_type") == "multiple_choice" and reg.get("chance", True):
                chance.append(1 / len(s["resps"]))
            lines.append(json.dumps({"task": task, "doc_id": s["doc_id"], "target": s["target"],
                                     "response": s["filtered_resps"],
                                     **({"raw": s["resps"]} if cfg.get("output_type") == "generate_until" else {}),
                                     **{m: s.get(m) for m in reg["metrics"] if m in s}},
                                    default=lambda o: _clean(o) if hasattr(o, "item") else str(o),
                                    ensure_ascii=False))
    text = "\n".join(lines) + "\n"
    files.atomic_write_text(samples_dir / f"{benchmark}.jsonl", text)
    tasks = list(per_task)
    if len(tasks) == 1:  # corpus-level metrics (BLEU, bias scores) come from the harness as they are
        values = dict(per_task[tasks[0]]["metrics"])
    else:
        values = {m: _pooled(per_task, tasks, m) for m in reg["metrics"]}
    groups = {g: _pooled(per_task, members, reg["metrics"][0]) for g, members in suite.groups(benchmark).items()}
    head = reg["metrics"][0]
    return {"metric": head, "value": values[head], "metrics": values, "n": sum(t["n"] for t in per_task.values()),
            "chance": sum(chance) / len(chance) if chance else None, "groups": groups,
            "limit_per_task": limit, "tasks": per_task,
            **({"judge": (judge.configured() or {}).get("model")} if reg.get("judge") else {}),
            "task_versions": dict(res.get("versions", {})), "task_definitions_sha256": task_sha256(benchmark),
            # same spec, seed and thread count: same hash on CPU
            "outputs_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "seconds": time.perf_counter() - t0,  # wall time of scoring (a cache hit keeps the original's)
            **({"requests_from_journal": journaled} if journaled else {}),  # resumed: seconds cover the rest
            "lm_eval_config": {k: v for k, v in res.get("config", {}).items() if k in ("batch_size", "limit")}}


# bump when a change to this module changes what a benchmark records (the task files are hashed)
# 3: log-likelihoods from fp32 logits (models.load.exact_logits), chat contexts keep their newline
SCORER_VERSION = "3"


def result_key(weights_key: dict, model, benchmark: str, limit: int | None, batch_size: int = 8) -> dict:
    """What determines a benchmark result: the quantized weights (methods.weights_key: model, method,
    protocol, dtype, and the weights' checksum or the algorithm's code), the device, the task
    definitions, the limit, the scorer (lm-eval's version and SCORER_VERSION) and the batch size."""
    from importlib.metadata import version

    return {"weights": weights_key, "device": str(model.device.type), "benchmark": benchmark,
            "task_sha256": task_sha256(benchmark), "limit": limit, "lm_eval": version("lm_eval"),
            "scorer_version": SCORER_VERSION, "batch_size": batch_size,
            **({"shared_context": True} if suite.registry()[benchmark].get("shared_context") else {}),
            "judge": (judge.configured() or {}).get("model") if suite.registry()[benchmark].get("judge") else None}


def score_into(run_dir: Path, model, tokenizer, weights_key: dict, benchmark: str, limit: int | None,
               batch_size: int = 8) -> dict:
    """One benchmark's result, written into the run folder as it finishes (benchmarks/<name>.json and
    samples/<name>.jsonl), so that a run cut short resumes at the first unfinished benchmark. A result
    for the same key is reused: the run folder's own, else the shared cache (QUANTLIB_CACHE/results),
    which lets another grid cell with the same weights skip it. The record says where it came from.
    A benchmark in progress keeps a journal of its scored requests in the run folder
    (partial/<benchmark>-<key digest>), removed when it finishes: an interrupted one resumes there.
    Resumed requests are batched differently, so in bf16 their log-likelihoods can differ in the last
    bits from an uninterrupted run's; the record counts them (requests_from_journal)."""
    key = result_key(weights_key, model, benchmark, limit, batch_size)
    digest = files.digest(key)[:20]
    own = (run_dir / "benchmarks" / f"{benchmark}.json", run_dir / "samples" / f"{benchmark}.jsonl")
    partial = run_dir / "partial"
    shared = paths.cache_dir() / "results" / f"{benchmark}-{digest}"
    places = (("run", own), ("cache", (shared / "result.json", shared / "samples.jsonl")))
    for where, (res_file, samples_file) in places:
        try:
            result = files.read_json(res_file)
            text = samples_file.read_text(encoding="utf-8")
            if result["cache"]["key"] != key or hashlib.sha256(text.encode()).hexdigest() != result["outputs_sha256"]:
                raise ValueError("another key, or samples that do not match their hash")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if where == "cache":
            result |= {"cache": {"key": key, "hit": True, "entry": shared.name}}
            files.atomic_write_text(own[1], text)
            files.write_json(own[0], result)
        _drop_journals(partial, benchmark)
        return result
    result = evaluate(model, tokenizer, benchmark, limit, run_dir / "samples", batch_size,
                      journal=partial / f"{benchmark}-{digest}")
    result |= {"cache": {"key": key, "hit": False}}
    text = own[1].read_text(encoding="utf-8")
    files.atomic_write_text(shared / "samples.jsonl", text)
    files.write_json(shared / "result.json", result)
    files.write_json(own[0], result)  # written last: a benchmark without it is redone
    _drop_journals(partial, benchmark)
    return result


def _drop_journals(partial: Path, benchmark: str) -> None:
    """A finished benchmark's journal, and any an older key left."""
    for f in partial.glob(f"{benchmark}-*"):
        f.unlink()
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
