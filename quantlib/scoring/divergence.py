"""Perplexity and, from the same forward pass, how far a quantized model's next-token distributions
move from its baseline's.

For every position t of the run's perplexity windows, with p the baseline's and q the quantized
model's next-token distribution:
  KL(p || q)   on the coarsened distributions: the baseline's top-k tokens plus one "rest" bucket.
               By the data-processing inequality this is a lower bound of the full-vocabulary KL;
               storing k of V log-probs per position keeps the reference small (V is 49k-152k).
  top-1 flip   whether argmax q differs from argmax p.
Both are averaged over positions. The baseline's top-k (the reference) is computed once per model,
dtype and windows, and cached; a quantized run that finds none loads the baseline to make it.
"""
from __future__ import annotations

import torch

from quantlib.io import files, paths
from quantlib.scoring import perplexity

TOP_K = 256


def coarse_kl(p_idx: torch.Tensor, p_logp: torch.Tensor, q_logp: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per position over {top-k of p} + {rest}; p_idx/p_logp: [T, k], q_logp: [T, V]."""
    q_top = q_logp.gather(-1, p_idx)

    def with_rest(logp_top):  # append log of the mass outside the top-k
        rest = torch.log1p(-logp_top.exp().sum(-1).clamp(max=1 - 1e-7))
        return torch.cat([logp_top, rest.unsqueeze(-1)], dim=-1)

    p, q = with_rest(p_logp), with_rest(q_top)
    return (p.exp() * (p - q)).sum(-1)


def _reference_file(baseline_key: dict, corpus: str, seqlen: int, limit):
    key = {"baseline": baseline_key, "corpus": corpus, "seqlen": seqlen, "limit": limit, "top_k": TOP_K,
           "logits": "float32"}
    return paths.cache_dir() / "kl-reference" / f"{files.digest(key)[:20]}.safetensors"


def _load_reference(file):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        t = load_file(file)
        return t["idx"], t["logp"]
    except (OSError, KeyError, SafetensorError):  # absent or damaged: computed again
        return None


def _save_reference(file, idx, logp):
    from safetensors.torch import save_file

    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.name + ".tmp")
    save_file({"idx": idx.contiguous(), "logp": logp.contiguous()}, str(tmp))
    tmp.replace(file)


def score(model, tokenizer, corpus: str, seqlen: int, limit, baseline_key: dict, is_baseline: bool,
          load_baseline=None) -> dict:
    """Perplexity of one corpus and, for a quantized model, KL and top-1 flips against the baseline,
    all from one forward pass per window. The baseline run stores the reference as it goes;
    `load_baseline()` gives the baseline model when a quantized run finds no reference."""
    wins = perplexity.windows(tokenizer, perplexity.corpus(corpus), seqlen, limit)
    file = _reference_file(baseline_key, corpus, seqlen, limit)
    ref = None if is_baseline else _load_reference(file)
    if ref is None and not is_baseline:
        base = load_baseline()
        ref = _top(base, wins)
        del base
        _save_reference(file, *ref)
    nlls, kl, flips, tops = [], [], [], []
    for j, w in enumerate(wins):
        logp = perplexity.window_logits(model, w)
        nlls.append(perplexity.nll(logp, w))
        if is_baseline:
            t = logp.topk(TOP_K, dim=-1)
            tops.append((t.indices, t.values))
        else:
            kl.append(coarse_kl(ref[0][j], ref[1][j], logp))
            flips.append(logp.argmax(-1) != ref[0][j][:, 0])
    out = perplexity.summarize(nlls, seqlen)
    if is_baseline:
        _save_reference(file, torch.stack([i for i, _ in tops]), torch.stack([v for _, v in tops]))
        return out
    kl, flips = torch.cat(kl), torch.cat(flips)
    return out | {"kl": kl.mean().item(), "kl_p95": kl.quantile(0.95).item(),
                  "top1_flip": flips.float().mean().item(), "positions": kl.numel(),
                  "kl_definition": f"KL(baseline || quantized) over the baseline's top-{TOP_K} tokens plus the "
                                   "rest (a lower bound of the full KL), mean over positions"}


def _top(model, wins):
    tops = [perplexity.window_logits(model, w).topk(TOP_K, dim=-1) for w in wins]
    return torch.stack([t.indices for t in tops]), torch.stack([t.values for t in tops])
