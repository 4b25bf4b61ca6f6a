"""Speed figures of the pipeline itself (not of the quantized models): prints measurements and ratios.

    python benchmarks/perf.py peak        # fp32 and bf16 matmul peaks of this machine (FLOP/s)
    python benchmarks/perf.py kernels [--model M]   # decode speed and weight memory: fp32 dense, bf16
                                          # dense, GPTQ-4/8 on the packed int4/int8 kernels (ratios)
    python benchmarks/perf.py dtype [--model M]     # bf16 against fp32: perplexity, top-1 agreement
                                          # and scoring speed on the same windows
    python benchmarks/perf.py bnb4 [--model M]      # NF4 on bitsandbytes' CPU kernel vs its dense
                                          # scoring copy: window scoring speed, perplexity
    python benchmarks/perf.py harness     # the project's scoring path vs a plain lm-eval run, and
                                          # achieved FLOP/s while scoring vs the matmul peak
    python benchmarks/perf.py shared [--model M]    # choices after one shared context: run once vs
                                          # once per choice (time, log-likelihood difference)
    python benchmarks/perf.py end-to-end  # the default baseline cell whole in fp32 and in bf16
    python benchmarks/perf.py ray         # grid wall time with 2 Ray workers vs 1 (tiny model)
    python benchmarks/perf.py threads     # 2 processes x 1 thread vs 1 process x 2 threads (matmuls)
    python benchmarks/perf.py report      # `make report` wall time, warm (every run recorded)
    python benchmarks/perf.py costs [--into DIR]   # where the runs' time went (from the records)
    python benchmarks/perf.py report --cold [--into DIR]   # ... cold: a fresh clone, no records,
                                          # no caches, no venv (~2 h here)

Targets (issue #14): cold default `make report` <= 45 min on 2 CPU cores, warm <= 2 min, harness ratio >= 1.0.
Run it with QUANTLIB_DATA_DIR set (the Makefile's default is ../shared/benchmarks).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def matmul_peak(n: int = 2048, repeats: int = 5, dtype=torch.float32) -> float:
    """Best-of-N dense matmul rate with torch's default threads."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b)[1] for _ in range(repeats))
    return 2 * n ** 3 / best


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def harness(task: str = "snli", limit: int = 64, model_name: str = "smollm2-135m-instruct") -> None:
    from lm_eval import simple_evaluate

    from quantlib.models import load as models
    from quantlib.quantization import methods
    from quantlib.running.spec import RunSpec
    from quantlib.scoring import harness

    spec = RunSpec(model=model_name, method="fp")  # the machine's compute dtype (bf16 where native)
    model, _ = methods.load(spec.variant)
    models.exact_logits(model)  # as a run scores
    tok = models.load_tokenizer(spec.model)
    tokens = [0]
    def count(module, args, kwargs):  # input ids come positionally from lm-eval, by keyword from generate
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            tokens[0] += ids.numel()

    model.register_forward_pre_hook(count, with_kwargs=True)
    head_rows = [0]  # log-likelihood batches project only the positions that hold continuations
    model.get_output_embeddings().register_forward_pre_hook(
        lambda _m, args: head_rows.__setitem__(0, head_rows[0] + args[0].shape[:-1].numel()))
    with tempfile.TemporaryDirectory() as d:
        ours, t_ours = _timed(lambda: harness.evaluate(model, tok, task, limit, Path(d)))
    # the same task config through lm-eval's own `hf` model loader, same batch size and chat template
    plain, t_plain = _timed(lambda: simple_evaluate(
        model="hf", model_args=f"pretrained={models.resolve(spec.model)},dtype={spec.dtype}",
        tasks=harness.task_configs(task), limit=limit, batch_size=8, apply_chat_template=True,
        bootstrap_iters=0, device=models.device()))
    # matmul work done: every decoder linear layer per token, the output projection per row it
    # projected (the input embedding's lookup is no matmul)
    head = model.get_output_embeddings()
    body = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)
    flops = 2 * (body * tokens[0] + head.weight.numel() * head_rows[0]) / t_ours
    peak = matmul_peak(dtype=models.DTYPES[spec.dtype])
    key = next(k for k in plain["results"][next(iter(plain["results"]))] if k.startswith("acc,"))
    print(f"harness: {task} x {limit} items: project path {t_ours:.1f} s, plain lm-eval {t_plain:.1f} s, "
          f"ratio (plain / project) {t_plain / t_ours:.2f} (target >= 1.0); "
          f"scores {ours['value']:.4f} vs {plain['results'][next(iter(plain['results']))][key]:.4f}")
    print(f"scoring: {tokens[0]} tokens through the model, {flops / 1e9:.1f} GFLOP/s achieved "
          f"({body / 1e6:.0f}M decoder matmul parameters per token, the {head.weight.numel() / 1e6:.0f}M output "
          f"projection on {head_rows[0]} of {tokens[0]} positions) = {flops / peak:.0%} of the "
          f"{peak / 1e9:.1f} GFLOP/s {spec.dtype} matmul peak")


def shared(model_name: str, limits: dict) -> None:
    """Choices of several tokens after one context (BBQ, SNLI, TruthfulQA): the context run once for
    all choices (the project's path) against lm-eval's one sequence per choice, same model and items:
    time, largest log-likelihood difference, and items whose top choice differs."""
    import json

    import numpy as np

    from quantlib.models import load as models
    from quantlib.quantization import methods
    from quantlib.running.spec import RunSpec
    from quantlib.scoring import harness

    spec = RunSpec(model=model_name, method="fp")
    model, _ = methods.load(spec.variant)
    models.exact_logits(model)
    tok = models.load_tokenizer(spec.model)
    original = harness.shared_contexts

    def responses(folder, task):
        rows = [json.loads(x) for x in (folder / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()]
        return [[ll for ll, _ in r["response"]] for r in rows]

    for task, limit in limits.items():
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            harness.shared_contexts = original
            _, t_shared = _timed(lambda t=task, n=limit, f=d / "shared": harness.evaluate(model, tok, t, n, f))
            harness.shared_contexts = lambda requests, max_length: {}
            _, t_plain = _timed(lambda t=task, n=limit, f=d / "plain": harness.evaluate(model, tok, t, n, f))
            harness.shared_contexts = original
            a, b = responses(d / "shared", task), responses(d / "plain", task)
        diff = max(float(np.max(np.abs(np.subtract(x, y)))) for x, y in zip(a, b))
        flips = sum(int(np.argmax(x) != np.argmax(y)) for x, y in zip(a, b))
        print(f"shared: {model_name} {spec.dtype} {task} x {limit}: shared context {t_shared:.1f} s, "
              f"one sequence per choice {t_plain:.1f} s, speed-up {t_plain / t_shared:.2f}; "
              f"largest log-likelihood difference {diff:.2e}, top choice differs on {flips} of {len(a)} items")


def end_to_end() -> None:
    """The default model's baseline cell, whole (perplexity, every benchmark, speed), in fp32
    (data/grids/dtype.yaml) and in bf16 (the default grid's), each alone with every CPU, no caches."""
    times = {}
    with tempfile.TemporaryDirectory() as d:
        for dtype, grid, label in (("float32", "dtype.yaml", "fp32"), ("bfloat16", "default.yaml", "bf16")):
            env = {**os.environ, "QUANTLIB_CACHE": f"{d}/cache-{dtype}"}
            cmd = [sys.executable, "-m", "quantlib.running.grid", str(ROOT / "data" / "grids" / grid),
                   "--engine", "local", "--only", label, "--runs", f"{d}/runs-{dtype}"]
            _, times[dtype] = _timed(lambda c=cmd, e=env: subprocess.run(c, cwd=ROOT, env=e, check=True,
                                                                         capture_output=True))
    print(f"end-to-end: the default baseline cell, no caches, {torch.get_num_threads()} threads: fp32 "
          f"{times['float32']:.0f} s, bf16 {times['bfloat16']:.0f} s, ratio {times['float32'] / times['bfloat16']:.2f} "
          "(target >= 1.5)")


def ray_speedup(cells: int = 4) -> None:
    """A grid of tiny-model runs (a random 2-layer Llama), with 1 worker and with 2."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from quantlib.models import load as models
    from quantlib.running import grid, stages

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        tok = models.load_tokenizer("smollm2-135m-instruct")
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
        LlamaForCausalLM(cfg).save_pretrained(d / "tiny")
        tok.save_pretrained(d / "tiny")
        (d / "grid.yaml").write_text(
            f"models: [{d / 'tiny'}]\nmethods: [fp, {{method: gptq, bits: [8, 4, 3]}}]\ncalibration: {{n_samples: 4}}\n"
            "perplexity: {datasets: [wikitext2], seqlen: 512, limit: 4}\n"
            "efficiency: {prompt_tokens: 64, new_tokens: 64, repeats: 1}\n")
        times = {}
        def both(args, runs):
            grid.main(args)
            stages.main(["efficiency"] + [str(f) for f in runs.iterdir()])

        for workers, cpus in ((1, 2), (2, 1)):
            runs = d / f"runs{workers}"
            args = [str(d / "grid.yaml"), "--runs", str(runs), "--cpus-per-run", str(cpus)]
            # 2 workers share the CPUs, so their speed is measured afterwards: that stage is timed too
            _, times[workers] = _timed(lambda a=args, r=runs: both(a, r))
        print(f"ray: {cells} tiny runs, 1 worker x 2 CPUs {times[1]:.0f} s, 2 workers x 1 CPU {times[2]:.0f} s "
              f"(with the serial speed stage), speed-up {times[1] / times[2]:.2f}")


def _decode_tok_s(model, tok, new_tokens: int = 32, repeats: int = 3) -> float:
    from quantlib.scoring import efficiency

    return efficiency.measure(model, tok, 128, new_tokens, repeats)["decode_tokens_per_s"]


def _weights(model) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def kernels(model_name: str) -> None:
    """Decode speed (batch 1) and weight bytes of one model: fp32 dense, bf16 dense, and GPTQ-4 and
    GPTQ-8 (group 128, act-order, 8 calibration samples: a kernel's speed does not depend on them) on
    torch's packed int4 and int8 CPU kernels, all measured in this process one after another."""
    import copy

    from quantlib.models import load as loading
    from quantlib.quantization import calibration, gptq, layerwise
    from quantlib.quantization import kernels as k
    from quantlib.quantization.variant import Calibration

    tok = loading.load_tokenizer(model_name)
    fp32 = loading.load_fp(model_name, "float32")
    dec32 = _decode_tok_s(fp32, tok)
    del fp32
    bf16 = loading.load_fp(model_name, "bfloat16")
    dec16, w16 = _decode_tok_s(bf16, tok), _weights(bf16)
    samples = calibration.samples(tok, Calibration(n_samples=8))
    line = (f"kernels: {model_name} decode tokens/s (batch 1, {torch.get_num_threads()} threads): "
            f"fp32 {dec32:.1f}, bf16 {dec16:.1f}")
    for bits in (4, 8):
        model = copy.deepcopy(bf16)
        layerwise.quantize(model, samples, gptq.GPTQ, lambda r, c, st: 0, bits=bits, group_size=128,
                           percdamp=0.01, actorder=True, sym=True)
        packed, info = k.pack(model, bits, 128)
        dec = _decode_tok_s(packed, tok)
        line += (f"; GPTQ-{bits} {info['kernel']} {dec:.1f} ({info['packed_layers']} layers packed, "
                 f"{len(info['dense_layers'])} dense; /bf16 {dec / dec16:.2f}; weight bytes "
                 f"{_weights(packed) / 2**20:.0f} MiB, /bf16 {_weights(packed) / w16:.2f})")
        del model, packed
    print(line + f"; bf16/fp32 {dec16 / dec32:.2f}; bf16 weights {w16 / 2**20:.0f} MiB")


def _ppl(logps, wins) -> float:
    from quantlib.scoring import perplexity

    return float(torch.exp(torch.tensor([perplexity.nll(lp, w) for lp, w in zip(logps, wins)]).mean()))


def _top1_agreement(a_logps, b_logps) -> float:
    return float(torch.cat([(a.argmax(-1) == b.argmax(-1)).float() for a, b in zip(a_logps, b_logps)]).mean())


def dtype_agreement(model_name: str, windows: int = 4) -> None:
    """bf16 against fp32 on the same WikiText-2 windows: perplexity, top-1 agreement, scoring speed."""
    from quantlib.models import load as loading
    from quantlib.scoring import perplexity

    tok = loading.load_tokenizer(model_name)
    wins = perplexity.windows(tok, perplexity.corpus("wikitext2"), 2048, windows)
    out = {}
    for dtype in ("float32", "bfloat16"):
        model = loading.load_fp(model_name, dtype)
        perplexity.window_logits(model, wins[0][:64])  # warm-up
        t = time.perf_counter()
        logps = [perplexity.window_logits(model, w) for w in wins]
        out[dtype] = (time.perf_counter() - t, logps)
        del model
    (t32, l32), (t16, l16) = out["float32"], out["bfloat16"]
    ppl = {d: _ppl(out[d][1], wins) for d in out}
    agree = _top1_agreement(l32, l16)
    tokens = wins.numel()
    print(f"dtype: {model_name}, {windows} WikiText-2 windows: perplexity fp32 {ppl['float32']:.3f}, bf16 "
          f"{ppl['bfloat16']:.3f} ({ppl['bfloat16'] / ppl['float32'] - 1:+.2%}); top-1 agreement {agree:.2%}; "
          f"scoring {tokens / t32:.0f} vs {tokens / t16:.0f} tokens/s (bf16/fp32 {t32 / t16:.2f}x)")


def bnb4_scoring(model_name: str, windows: int = 4) -> None:
    """NF4 (bf16 compute) scored on WikiText-2 windows twice in this process: on bitsandbytes' own CPU
    kernel, then on the dense copy runs score with (quantlib/quantization/bnb_dense.py)."""
    from quantlib.models import load as loading
    from quantlib.quantization import methods
    from quantlib.running.spec import RunSpec
    from quantlib.scoring import perplexity

    spec = RunSpec(model=model_name, method="bnb-nf4", dtype="bfloat16")
    tok = loading.load_tokenizer(model_name)
    wins = perplexity.windows(tok, perplexity.corpus("wikitext2"), 2048, windows)
    model, _ = methods.load(spec.variant)
    out = {}
    for path in ("kernel", "dense copy"):
        if path == "dense copy":
            t = time.perf_counter()
            methods.score_model(spec.variant, model)
            copy_s = time.perf_counter() - t
        perplexity.window_logits(model, wins[0][:64])  # warm-up (the kernel packs its weights here)
        t = time.perf_counter()
        logps = [perplexity.window_logits(model, w) for w in wins]
        out[path] = (time.perf_counter() - t, logps)
    ppl = {p: _ppl(out[p][1], wins) for p in out}
    agree = _top1_agreement(out["kernel"][1], out["dense copy"][1])
    (tk, _), (td, _) = out["kernel"], out["dense copy"]
    print(f"bnb4: {model_name} NF4, {windows} WikiText-2 windows: perplexity kernel {ppl['kernel']:.3f}, dense copy "
          f"{ppl['dense copy']:.3f} ({ppl['dense copy'] / ppl['kernel'] - 1:+.3%}); top-1 agreement {agree:.2%}; "
          f"scoring {wins.numel() / tk:.0f} vs {wins.numel() / td:.0f} tokens/s (dense/kernel {tk / td:.2f}x); "
          f"making the copy {copy_s:.0f} s")


def threads_vs_processes() -> None:
    """Why the Makefile runs 2 runs x 1 thread on 2 cores: the model's own matmul shapes (SmolLM2-135M,
    fp32), a decode step (4 sequences) and a batched forward (1280 tokens), in one 2-thread process
    and in two 1-thread processes at once."""
    code = r"""
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
W = [torch.randn(1536, 576) for _ in range(60)] + [torch.randn(49152, 576)]
def run(rows, ws):
    for w in ws:
        torch.nn.functional.linear(torch.randn(rows, w.shape[1]), w)
run(4, W)
t = time.perf_counter(); [run(4, W) for _ in range(20)]; step = (time.perf_counter() - t) / 20
t = time.perf_counter(); [run(1280, W[:60]) for _ in range(3)]; fwd = (time.perf_counter() - t) / 3
print(step, 2 * 1280 * 576 * 1536 * 60 / fwd / 1e9)
"""
    def procs(n, threads):
        ps = [subprocess.Popen([sys.executable, "-c", code, str(threads)], stdout=subprocess.PIPE, text=True)
              for _ in range(n)]
        return [tuple(map(float, p.communicate()[0].split())) for p in ps]
    (one,) = procs(1, 2)
    two = procs(2, 1)
    print(f"threads: 1 process x 2 threads: decode step {one[0] * 1e3:.0f} ms, batched {one[1]:.0f} GFLOP/s; "
          f"2 processes x 1 thread: decode step {max(t[0] for t in two) * 1e3:.0f} ms each, batched "
          f"{sum(t[1] for t in two):.0f} GFLOP/s together; throughput ratio decode "
          f"{2 * one[0] / max(t[0] for t in two):.2f}, batched {sum(t[1] for t in two) / one[1]:.2f}")


def costs(runs: Path = ROOT / "data" / "runs") -> None:
    """Where a run's time goes, from the records: run, quantization and per-benchmark seconds."""
    import json
    import statistics

    per, total, quant = {}, [], []
    for f in sorted(runs.glob("*/metrics.json")):
        m, st = json.loads(f.read_text()), json.loads((f.parent / "status.json").read_text())
        total.append((f.parent.name.split("__")[1], st.get("seconds")))
        q = m["quantization"]
        if q.get("seconds") and not q.get("from_cache"):
            quant.append(q["seconds"])
        for b, r in ((g.stem, json.loads(g.read_text())) for g in (f.parent / "benchmarks").glob("*.json")):
            if r.get("seconds") and not (r.get("cache") or {}).get("hit"):
                per.setdefault(b, []).append(r["seconds"])
    print("costs: run seconds " + ", ".join(f"{k} {v:.0f}" for k, v in total if v))
    if quant:
        print(f"costs: GPTQ/SpQR/RTN quantization {len(quant)} x median {statistics.median(quant):.0f} s "
              f"= {sum(quant) / 60:.1f} min")
    for b, v in sorted(per.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"costs: {b:15s} median {statistics.median(v):6.1f} s over {len(v)} runs (max {max(v):.0f})")


def report(cold: bool, into: str | None = None) -> None:
    if not cold:
        _, t = _timed(lambda: subprocess.run(["make", "report"], cwd=ROOT, check=True))
        print(f"report: warm `make report` {t:.0f} s (target <= 120 s)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        d = into or tmp  # --into keeps the clone (its records, book and venv) for inspection
        subprocess.run(["git", "clone", "-q", str(ROOT), d], check=True)
        subprocess.run(["git", "rm", "-rq", "data/runs"], cwd=d, check=True)
        # QUANTLIB_DATA_DIR: as set for this script; pip's download cache is the machine's
        env = {**os.environ, "QUANTLIB_CACHE": f"{d}/.cache", "HF_DATASETS_CACHE": f"{d}/.cache/hf-datasets"}
        # `make report`'s stages one by one (the same commands in the same order), each timed
        stages = ["venv", "runs", "efficiency", "book"]
        if subprocess.run(["sh", "-c", "command -v chromedriver"], capture_output=True).returncode == 0:
            stages.append("check-html")
        times = {}
        for stage in stages:
            _, times[stage] = _timed(lambda s=stage: subprocess.run(["make", s], cwd=d, check=True, env=env))
            print(f"report: cold stage {stage} {times[stage] / 60:.1f} min", flush=True)
        t = sum(times.values())
        print(f"report: cold `make report` (fresh clone, no records, no caches) {t / 60:.1f} min (target <= 45 min): "
              + ", ".join(f"{k} {v / 60:.1f}" for k, v in times.items()))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("peak", "harness", "ray", "threads", "report", "costs", "kernels", "dtype",
                                     "shared", "end-to-end", "bnb4"))
    ap.add_argument("--model", default="smollm2-135m-instruct", help="kernels, dtype, bnb4, harness, shared: a model")
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--into", help="report --cold: clone into this new folder and keep it")
    a = ap.parse_args()
    if a.what == "peak":
        f32, b16 = matmul_peak(), matmul_peak(dtype=torch.bfloat16)
        print(f"peak: fp32 matmul {f32 / 1e9:.1f} GFLOP/s, bf16 {b16 / 1e9:.1f} GFLOP/s (ratio {b16 / f32:.2f}, "
              f"{torch.get_num_threads()} threads)")
    elif a.what == "kernels":
        kernels(a.model)
    elif a.what == "dtype":
        dtype_agreement(a.model)
    elif a.what == "bnb4":
        bnb4_scoring(a.model)
    elif a.what == "harness":
        harness(model_name=a.model)
    elif a.what == "costs":
        costs(Path(a.into) / "data" / "runs" if a.into else ROOT / "data" / "runs")
    elif a.what == "shared":
        shared(a.model, {"bbq": 24, "truthfulqa_mc1": 32, "truthfulqa_mc2": 32})
    elif a.what == "end-to-end":
        end_to_end()
    elif a.what == "ray":
        ray_speedup()
    elif a.what == "threads":
        threads_vs_processes()
    else:
        report(a.cold, a.into)
