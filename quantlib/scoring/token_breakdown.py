"""Why a quantized model's perplexity and its divergence from the baseline can disagree, position by
position. With y the next token, p the baseline's and q the quantized model's distribution:

    dNLL  = log p(y) - log q(y)                      mean: log of the perplexity ratio
    KL    = sum_v p(v) log(p(v)/q(v))                exact, over the whole vocabulary
    dNLL - KL = sum_v (1[v=y] - p(v)) log(p(v)/q(v)) the calibration term

The calibration term has mean zero when the baseline is calibrated (y drawn from p). It is positive when
quantization takes probability from tokens that occur more often than the baseline predicts, negative
when it gives them probability: a variant with the larger KL can then have the lower perplexity. Beside
it: the entropies of p and q (did quantization sharpen or flatten?), the coarse KL the records keep
(divergence.coarse_kl, a lower bound), and dNLL by the baseline's probability of y.

    python -m quantlib.scoring.token_breakdown qwen2.5-coder-0.5b-instruct --labels spqr-8b,spqr-4b,spqr-3b

reads the recorded runs of those labels and their model's baseline run (data/runs/), recomputes each
variant's weights (cached), scores the first `--windows` windows of the run's perplexity corpus, checks
the NLLs and weights against the records', and writes data/diagnostics/token-breakdown__<model>.json (atomically).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from quantlib.io import files, paths
from quantlib.scoring import divergence, perplexity

OUT = paths.DATA / "diagnostics"
BINS = (0.0, 0.01, 0.1, 0.5, 1.0)  # the baseline's probability of the token that came next
CHUNK = 256                         # positions per step: keeps [T, V] temporaries small


def out_file(model: str) -> Path:
    return OUT / f"token-breakdown__{model.replace('/', '--')}.json"


def position_stats(lp: torch.Tensor, lq: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per position: dNLL, exact KL, coarse KL, entropies and p(y), from log-probs [T, V] and targets [T]."""
    out = {k: [] for k in ("dnll", "kl", "coarse_kl", "entropy_p", "entropy_q", "p_y")}
    for s in range(0, lp.shape[0], CHUNK):
        a, b, t = lp[s:s + CHUNK], lq[s:s + CHUNK], y[s:s + CHUNK, None]
        p, d = a.exp(), a - b
        top = a.topk(min(divergence.TOP_K, a.shape[-1]), dim=-1)
        out["dnll"].append(d.gather(-1, t)[:, 0])
        out["kl"].append((p * d).sum(-1))
        out["coarse_kl"].append(divergence.coarse_kl(top.indices, top.values, b))
        out["entropy_p"].append(-(p * a).sum(-1))
        out["entropy_q"].append(-(b.exp() * b).sum(-1))
        out["p_y"].append(p.gather(-1, t)[:, 0])
    return {k: torch.cat(v) for k, v in out.items()}


def summarize(stats: dict[str, torch.Tensor]) -> dict:
    """Means over positions, and dNLL and KL by the baseline's probability of the next token."""
    mean = {k: stats[k].mean().item() for k in ("dnll", "kl", "coarse_kl", "entropy_p", "entropy_q")}
    bins = []
    for lo, hi in zip(BINS, BINS[1:]):
        m = (stats["p_y"] >= lo) & ((stats["p_y"] < hi) if hi < 1 else True)
        n = int(m.sum())
        bins.append({"p_y_from": lo, "p_y_to": hi, "share": n / m.numel(),
                     "dnll": stats["dnll"][m].mean().item() if n else None,
                     "kl": stats["kl"][m].mean().item() if n else None,
                     # this bin's contribution to the mean dNLL
                     "dnll_contribution": stats["dnll"][m].sum().item() / m.numel()})
    return mean | {"calibration_term": mean["dnll"] - mean["kl"], "positions": stats["dnll"].numel(),
                   "by_p_y": bins}


def model_runs(model: str, labels: list[str], runs: Path | None = None) -> tuple:
    """The recorded baseline run and the recorded runs of `labels` of one model: (folder, spec) pairs."""
    from quantlib.running import records

    found = {}
    for spec_file in sorted(Path(runs or paths.RUNS).glob("*/spec.json")):
        spec = records.read_spec(spec_file.parent)
        if spec.model == model:
            found.setdefault(spec.label, []).append((spec_file.parent, spec))
    missing = [x for x in labels if x not in found]
    if missing:
        raise ValueError(f"no recorded run of {model} labelled {missing}; recorded: {sorted(found)}")
    chosen = {x: found[x] for x in labels}
    twice = {x: [f.name for f, _ in v] for x, v in chosen.items() if len(v) > 1}
    if twice:
        raise ValueError(f"more than one recorded run per label: {twice}")
    quantized = [v[0] for v in chosen.values()]
    dtypes = {s.dtype for _, s in quantized}
    base = [r for v in found.values() for r in v if r[1].method == "fp" and r[1].dtype in dtypes]
    if len(dtypes) != 1 or len(base) != 1:
        raise ValueError(f"need one baseline run of {model} in the runs' dtype {sorted(dtypes)}; "
                         f"found {[f.name for f, _ in base]}")
    return base[0], quantized


def measure(base_model, tokenizer, quantized: dict, corpus: str, seqlen: int, n_windows: int) -> dict:
    """Per variant (label -> loader of its model and what methods.load records about it), the summary over
    the first n_windows windows, the checksum of its weights where the method stores one, and
    each window's mean NLL for both models (to check against the records)."""
    from quantlib.models import load

    wins = perplexity.windows(tokenizer, perplexity.corpus(corpus), seqlen, n_windows)
    out = {}
    for label, loader in quantized.items():
        model, info = loader()
        model = load.exact_logits(model)
        stats, nll = [], {"baseline": [], "quantized": []}
        for w in wins:
            lp, lq = perplexity.window_logits(base_model, w), perplexity.window_logits(model, w)
            nll["baseline"].append(perplexity.nll(lp, w))
            nll["quantized"].append(perplexity.nll(lq, w))
            stats.append(position_stats(lp, lq, w[1:].to(lp.device)))
            del lp, lq
        del model
        out[label] = summarize({k: torch.cat([s[k] for s in stats]) for k in stats[0]}) | {
            "window_nll": nll, "weights_sha256": info.get("weights_sha256")}
    return out


def compare_with_records(result: dict, base_run, runs: dict, corpus: str) -> dict:
    """Per variant: the largest difference between a window NLL recomputed here (both models) and the
    recorded one, and whether the recomputed weights are the recorded ones (None where the method keeps
    no checksum). Calibrated quantization is not bit-reproducible across thread counts, so a variant can
    be recomputed with other weights; its NLL difference says how far that moves the numbers."""
    def recorded(folder):
        return files.read_json(folder / "perplexity.json")

    out = {}
    for label, r in result.items():
        diffs = []
        for who, folder in (("baseline", base_run), ("quantized", runs[label])):
            nll = recorded(folder)["corpora"][corpus]["window_nll"]
            diffs += [abs(a - b) for a, b in zip(r["window_nll"][who], nll)]
        kept = recorded(runs[label]).get("key", {}).get("weights", {}).get("weights_sha256")
        out[label] = {"max_window_nll_difference": max(diffs),
                      "same_weights": None if kept is None or r["weights_sha256"] is None
                      else kept == r["weights_sha256"]}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="registered model name, Hugging Face id or local path, as in its runs")
    p.add_argument("--labels", required=True, help="comma-separated run labels, e.g. spqr-8b,spqr-4b")
    p.add_argument("--corpus", default="wikitext2", choices=sorted(perplexity.FILES))
    p.add_argument("--windows", type=int, default=8, help="windows of the run's perplexity protocol")
    a = p.parse_args(argv)
    if a.windows < 1:
        print(f"error: --windows must be at least 1, got {a.windows}", file=sys.stderr)
        return 2
    from quantlib.models import load
    from quantlib.quantization import methods
    from quantlib.running import records

    try:
        (base_dir, base_spec), quantized = model_runs(a.model, a.labels.split(","))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    start, git = time.time(), records.git_sha()  # the commit that runs, not HEAD when it ends
    base = load.exact_logits(methods.load(base_spec.variant)[0])
    loaders = {s.label: (lambda s=s: methods.load(s.variant)) for _, s in quantized}
    result = measure(base, load.load_tokenizer(a.model), loaders, a.corpus, base_spec.perplexity.seqlen,
                     a.windows)
    runs = {s.label: f for f, s in quantized}
    out = {"model": a.model, "labels": list(result), "corpus": a.corpus, "windows": a.windows,
           "seqlen": base_spec.perplexity.seqlen,
           "runs": {label: f.name for label, f in runs.items()} | {"baseline": base_dir.name},
           "records": compare_with_records(result, base_dir, runs, a.corpus),
           "variants": result, "dtype": base_spec.dtype, "machine": records.machine(), "git": git,
           "torch_threads": torch.get_num_threads(),
           "seconds": time.time() - start}
    files.write_json(out_file(a.model), out)
    for label, r in result.items():
        print(f"{label:10s} dNLL {r['dnll']:+.4f}  KL {r['kl']:.4f} (coarse {r['coarse_kl']:.4f})  "
              f"calibration {r['calibration_term']:+.4f}  entropy {r['entropy_p']:.3f} -> {r['entropy_q']:.3f}")
    for label, c in out["records"].items():
        print(f"{label:10s} window NLLs within {c['max_window_nll_difference']:.1e} of the records"
              + ("; recomputed weights differ from the recorded ones" if c["same_weights"] is False else ""))
    print(f"wrote {out_file(a.model)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
