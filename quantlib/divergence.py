"""How far a quantized model's next-token distributions move from its baseline's, on the perplexity text.

For every position t of the run's perplexity windows, with p the baseline's and q the quantized
model's next-token distribution:
  KL(p || q)   on the coarsened distributions: the baseline's top-k tokens plus one "rest" bucket.
               By the data-processing inequality this is a lower bound of the full-vocabulary KL;
               storing k of V log-probs per position keeps the reference small (V is 49k-152k).
  top-1 flip   whether argmax q differs from argmax p.
Both are averaged over positions. The baseline (method fp, same model) is computed once and cached.

    python -m quantlib.divergence [data/runs/<run> ...]   # default: every finished quantized run

A slow stage of its own, between `runs` and `summary`: it writes `divergence.json` into each run
folder and skips runs that already have one with the same key.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from . import methods, models, paths, perplexity, records
from .spec import RunSpec

TOP_K = 256


def _key(spec: RunSpec, dtype) -> dict:
    return {"model": spec.model, "dtype": str(dtype), "corpora": list(spec.ppl_datasets),
            "seqlen": spec.ppl_seqlen, "limit": spec.ppl_limit, "top_k": TOP_K}


@torch.no_grad()
def _logp(model, win: torch.Tensor) -> torch.Tensor:
    ids = win.unsqueeze(0).to(model.device)
    return torch.log_softmax(model(ids, use_cache=False).logits[0, :-1].float(), dim=-1)


def _windows(spec: RunSpec, tokenizer) -> dict[str, torch.Tensor]:
    return {c: perplexity.windows(tokenizer, perplexity.corpus(c), spec.ppl_seqlen, spec.ppl_limit)
            for c in spec.ppl_datasets}


def reference(spec: RunSpec, tokenizer, wins: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """Per corpus, the baseline's top-k token ids and log-probs at every position (cached, safetensors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    base = RunSpec(model=spec.model, method="fp")
    dtype = models.fp_dtype()
    digest = hashlib.sha256(json.dumps(_key(spec, dtype), sort_keys=True).encode()).hexdigest()[:20]
    file = paths.cache_dir() / "kl-reference" / f"{digest}.safetensors"
    try:
        t = load_file(file)
        return {c: (t[f"{c}.idx"], t[f"{c}.logp"]) for c in wins}
    except (OSError, KeyError, SafetensorError):  # absent or damaged: computed again
        pass
    model, _ = methods.load(base)
    out = {}
    for c, ws in wins.items():
        tops = [_logp(model, w).topk(TOP_K, dim=-1) for w in ws]
        out[c] = (torch.stack([t.indices for t in tops]), torch.stack([t.values for t in tops]))
    del model
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    save_file({f"{c}.{n}": x.contiguous() for c, (i, v) in out.items() for n, x in (("idx", i), ("logp", v))},
              str(tmp))
    tmp.replace(file)
    return out


def coarse_kl(p_idx: torch.Tensor, p_logp: torch.Tensor, q_logp: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per position over {top-k of p} + {rest}; p_idx/p_logp: [T, k], q_logp: [T, V]."""
    q_top = q_logp.gather(-1, p_idx)

    def with_rest(logp_top):  # append log of the mass outside the top-k
        rest = torch.log1p(-logp_top.exp().sum(-1).clamp(max=1 - 1e-7))
        return torch.cat([logp_top, rest.unsqueeze(-1)], dim=-1)

    p, q = with_rest(p_logp), with_rest(q_top)
    return (p.exp() * (p - q)).sum(-1)


def measure(spec: RunSpec, model, tokenizer) -> dict:
    wins = _windows(spec, tokenizer)
    ref = reference(spec, tokenizer, wins)
    out = {}
    for c, ws in wins.items():
        idx, logp = ref[c]
        kl, flips = [], []
        for w, i, lp in zip(ws, idx, logp):
            q = _logp(model, w)
            kl.append(coarse_kl(i, lp, q))
            flips.append(q.argmax(-1) != i[:, 0])
        kl, flips = torch.cat(kl), torch.cat(flips)
        out[c] = {"kl": kl.mean().item(), "kl_p95": kl.quantile(0.95).item(),
                  "top1_flip": flips.float().mean().item(), "positions": kl.numel()}
    return {"corpora": out, "key": _key(spec, models.fp_dtype()),
            "definition": f"KL(baseline || quantized) over the baseline's top-{TOP_K} tokens plus the rest "
                          "(a lower bound of the full KL), mean over positions of the perplexity windows"}


def run(folder: Path) -> str:
    spec = records.read_spec(folder)
    if spec.method == "fp":
        return "baseline"
    out = folder / "divergence.json"
    key = _key(spec, models.fp_dtype())
    if out.exists() and records.read_json(out).get("key") == key:
        return "done before"
    tokenizer = models.load_tokenizer(spec.model)
    model, _ = methods.load(spec)
    result = measure(spec, model, tokenizer)
    records.write_json(out, result | {"environment": {"git_sha": records.git_sha()}})
    return "measured"


def main(argv=None) -> int:
    return records.stage_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
