"""Memory and speed with the paper's protocol: batch 1, a fixed prompt, exactly N greedy new tokens,
median over repeats after one warm-up. Decode time = generate time - prefill time.

Written to the run's `efficiency.json`, by the run itself when it has the machine to itself, or
afterwards by the efficiency stage (quantlib.running.stages) when the grid ran several runs at once
on shared CPUs (decoding is memory-bound; a neighbour would slow it).
"""
from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import psutil
import torch

from quantlib.io import files, paths
from quantlib.running import records

SPEED_FILE = "speed/pg19_10146_excerpt.txt"


def prompt_text() -> str:
    if paths.data_dir() is not None:
        return paths.data_file(SPEED_FILE).read_text(encoding="utf-8")
    import datasets  # the first PG-19 test book, as in the paper
    return next(iter(datasets.load_dataset("deepmind/pg19", split="test", streaming=True)))["text"]


class PeakRSS:
    """Peak resident memory of this process while the block runs (CPU runs), sampled every 5 ms."""

    def __enter__(self):
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


QUIET_CPUS = 0.25  # other processes busier than this would slow the timing (2 CPUs: decoding uses both)


def _busy_seconds() -> tuple[float, float]:
    """CPU seconds the machine and this process (with its threads and children) have been busy."""
    t, own = psutil.cpu_times(), psutil.Process().cpu_times()
    return (t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0),
            own.user + own.system + own.children_user + own.children_system)


class OtherProcesses:
    """How many CPUs other processes kept busy while the block ran (the machine's busy time minus
    this process's, over the wall time)."""

    def __enter__(self):
        self.t0, (self.machine0, self.own0) = time.perf_counter(), _busy_seconds()
        return self

    def __exit__(self, *exc):
        machine, own = _busy_seconds()
        wall = max(time.perf_counter() - self.t0, 1e-9)
        self.cpus = max(0.0, (machine - self.machine0 - (own - self.own0)) / wall)


def wait_for_quiet(max_wait: float | None = None, poll: float = 15.0) -> float:
    """Wait until other processes use under QUIET_CPUS, at most max_wait seconds (QUANTLIB_SPEED_WAIT,
    default 600); returns the seconds waited."""
    max_wait = float(os.environ.get("QUANTLIB_SPEED_WAIT", 600)) if max_wait is None else max_wait
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait:
        with OtherProcesses() as other:
            time.sleep(2.0)
        if other.cpus < QUIET_CPUS:
            break
        time.sleep(poll)
    return time.perf_counter() - t0


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn):
    _sync()
    t = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t


def _timers(model, tokenizer, prompt_tokens: int, new_tokens: int):
    """prefill() and generate() for one model: the fixed prompt, then exactly new_tokens greedy tokens."""
    ids = tokenizer(prompt_text(), return_tensors="pt", add_special_tokens=False).input_ids[:, :prompt_tokens]
    if ids.shape[1] < prompt_tokens:
        raise ValueError(f"speed prompt has only {ids.shape[1]} tokens, {prompt_tokens} asked")
    ids = ids.to(model.device)
    gen_kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)

    def prefill():
        model(ids, use_cache=True)

    def generate():
        out = model.generate(ids, **gen_kw)
        assert out.shape[1] - ids.shape[1] == new_tokens

    return prefill, generate


def _speeds(prompt_tokens: int, new_tokens: int, t_pre: list, t_gen: list) -> dict:
    """Medians; decoding is what generation takes beyond the prefill (None where a busy machine made
    the prefill alone take longer: no speed to report)."""
    t_pre, t_gen = statistics.median(t_pre), statistics.median(t_gen)
    return {"prefill_seconds": t_pre, "generate_seconds": t_gen, "prefill_tokens_per_s": prompt_tokens / t_pre,
            "decode_tokens_per_s": new_tokens / (t_gen - t_pre) if t_gen > t_pre else None}


@torch.no_grad()
def measure(model, tokenizer, prompt_tokens: int = 256, new_tokens: int = 512, repeats: int = 3) -> dict:
    prefill, generate = _timers(model, tokenizer, prompt_tokens, new_tokens)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as rss:
        prefill(), generate()  # warm-up
        t_pre = [_timed(prefill) for _ in range(repeats)]
        t_gen = [_timed(generate) for _ in range(repeats)]
    return {
        "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "repeats": repeats,
        **_speeds(prompt_tokens, new_tokens, t_pre, t_gen),
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if cuda else rss.peak,
        "peak_memory_kind": "cuda max allocated" if cuda else "process peak RSS during timing",
    }


@torch.no_grad()
def interleaved(models: dict, tokenizer, prompt_tokens: int, new_tokens: int, repeats: int) -> dict:
    """Speeds of several models timed in turn, repeat by repeat (A B A B ...), so that a drift in the
    machine's speed falls on each alike; the median per model. Keyed like `models`."""
    timers = {k: _timers(m, tokenizer, prompt_tokens, new_tokens) for k, m in models.items()}
    for prefill, generate in timers.values():  # warm-up
        prefill(), generate()
    times = {k: ([], []) for k in models}
    for _ in range(repeats):
        for k, (prefill, generate) in timers.items():
            times[k][0].append(_timed(prefill))
            times[k][1].append(_timed(generate))
    return {k: _speeds(prompt_tokens, new_tokens, *times[k]) for k in models}


SPEEDS = ("prefill_tokens_per_s", "decode_tokens_per_s")


def measure_into(folder, model, tokenizer, settings, kernel: dict, baseline=None) -> dict:
    """measure() with a spec's efficiency settings and the kernel the model computes with, written to
    the run's efficiency.json; returns it. `baseline` (a function loading the full-precision model) is
    then timed in the same process, interleaved repeat by repeat with the run's model (`baseline`, and
    the run's own speeds in that timing under `baseline.run`): runs timed in different sittings, even on
    the same kind of machine, differ by more than quantization does, so their speeds are compared
    through this ratio."""
    waited = wait_for_quiet()  # other work on the machine slows the timing: waited out, else recorded
    load_before = os.getloadavg()[0]
    args = (settings.prompt_tokens, settings.new_tokens, settings.repeats)
    with OtherProcesses() as other:
        result = measure(model, tokenizer, *args)
    result |= {"machine": records.machine(), "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
               "other_processes_cpus": round(other.cpus, 3), "waited_for_quiet_seconds": round(waited, 1),
               "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
               "dtype": str(model.dtype).replace("torch.", ""), **kernel}
    if baseline is not None:
        ref = baseline()
        wait_for_quiet()  # the baseline's timing is compared with the run's: it needs a quiet machine too
        with OtherProcesses() as other:
            pair = interleaved({"run": model, "baseline": ref}, tokenizer, *args)
        del ref
        result["baseline"] = {k: pair["baseline"][k] for k in SPEEDS} | {
            "run": {k: pair["run"][k] for k in SPEEDS}, "order": "interleaved",
            "other_processes_cpus": round(other.cpus, 3)}
    files.write_json(folder / "efficiency.json", result)
    return result


def settled(folder) -> bool:
    """Whether a run's efficiency.json is a timing to keep: a decode speed, timed while other processes
    stayed under QUIET_CPUS, for the run and for its baseline (records older than that count kept).
    A resumed run keeps it; a missing or contended timing is taken again."""
    f = Path(folder) / "efficiency.json"
    if not f.exists():
        return False
    r = files.read_json(f)
    busy = [x.get("other_processes_cpus") for x in (r, r.get("baseline") or {})]
    return r.get("decode_tokens_per_s") is not None and all(b is None or b < QUIET_CPUS for b in busy)


def baseline_loader(spec):
    """What measure_into times beside a quantized run: its model in full precision (None for the
    baseline itself)."""
    from quantlib.models import load as loading

    return None if spec.method == "fp" else (lambda: loading.load_fp(spec.model, spec.dtype))
