"""Perplexity with the GPTQ/paper protocol: concatenate the corpus, cut it into non-overlapping
windows of `seqlen` tokens, perplexity = exp(mean over windows of the mean token NLL)."""
from __future__ import annotations

import math

import torch

from quantlib.io import paths

FILES = {"wikitext2": "perplexity/wikitext2.test.raw", "ptb": "perplexity/ptb.test.txt",
         "c4": "perplexity/c4_validation_2k.parquet"}


def corpus(name: str) -> str:
    """The text of a corpus, joined as in the GPTQ reference code."""
    if name not in FILES:
        raise ValueError(f"unknown perplexity corpus {name!r}; known: {sorted(FILES)}")
    if paths.data_dir() is not None:
        path = paths.data_file(FILES[name])
        if name == "c4":
            import pandas as pd
            return " ".join(pd.read_parquet(path)["text"])
        text = path.read_text(encoding="utf-8")
        return "\n\n".join(text.split("\n")) if name == "wikitext2" else " ".join(text.split("\n"))
    import datasets  # hub copies of the same corpora
    if name == "wikitext2":
        return "\n\n".join(datasets.load_dataset("wikitext", "wikitext-2-raw-v1", split="test")["text"])
    if name == "ptb":
        return " ".join(datasets.load_dataset("ptb_text_only", "penn_treebank", split="test")["sentence"])
    c4 = datasets.load_dataset("allenai/c4", data_files={"validation": "en/c4-validation.00000-of-00008.json.gz"},
                               split="validation")
    return " ".join(c4.select(range(2000))["text"])


def windows(tokenizer, text: str, seqlen: int, limit: int | None) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids[0]
    n = ids.numel() // seqlen
    if n == 0:
        raise ValueError(f"corpus has {ids.numel()} tokens, fewer than one window of {seqlen}")
    n = min(n, limit) if limit else n
    return ids[: n * seqlen].view(n, seqlen)


@torch.no_grad()
def window_logits(model, win: torch.Tensor) -> torch.Tensor:
    """Next-token log-probabilities of one window, computed by the model on that window alone."""
    ids = win.unsqueeze(0).to(model.device)
    return torch.log_softmax(model(ids, use_cache=False).logits[0, :-1].float(), dim=-1)


def window_nlls(model, wins: torch.Tensor) -> list[float]:
    """Mean next-token NLL of each window."""
    return [nll(window_logits(model, w), w) for w in wins]


def nll(logp: torch.Tensor, win: torch.Tensor) -> float:
    return -logp.gather(-1, win[1:].to(logp.device).unsqueeze(-1)).mean().item()


def perplexity(model, tokenizer, name: str, seqlen: int = 2048, limit: int | None = None) -> dict:
    wins = windows(tokenizer, corpus(name), seqlen, limit)
    nlls = window_nlls(model, wins)
    return summarize(nlls, seqlen)


def summarize(nlls: list[float], seqlen: int) -> dict:
    return {"ppl": math.exp(sum(nlls) / len(nlls)), "windows": len(nlls), "seqlen": seqlen, "window_nll": nlls}
