import math

import torch

from quantlib.models import load as models
from quantlib.scoring import perplexity


def test_windows_are_non_overlapping_and_limited(tiny_model):
    tok = models.load_tokenizer(tiny_model)
    text = perplexity.corpus("wikitext2")
    ids = tok(text, add_special_tokens=False).input_ids
    w = perplexity.windows(tok, text, 64, None)
    assert w.shape == (len(ids) // 64, 64)
    assert w.flatten().tolist() == ids[: w.numel()]
    assert perplexity.windows(tok, text, 64, 2).shape == (2, 64)


def test_perplexity_matches_direct_computation(tiny_model):
    from transformers import AutoModelForCausalLM

    tok = models.load_tokenizer(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    got = perplexity.perplexity(model, tok, "ptb", seqlen=64, limit=3)
    ids = tok(perplexity.corpus("ptb"), add_special_tokens=False, return_tensors="pt").input_ids[0]
    with torch.no_grad():  # HF's own shifted loss, window by window
        losses = [model(ids[i * 64:(i + 1) * 64][None], labels=ids[i * 64:(i + 1) * 64][None]).loss.item()
                  for i in range(3)]
    assert got["windows"] == 3
    assert math.isclose(got["ppl"], math.exp(sum(losses) / 3), rel_tol=1e-5)


def test_corpora_follow_the_gptq_joining(data_dir):
    raw = (data_dir / "perplexity" / "wikitext2.test.raw").read_text()
    assert perplexity.corpus("wikitext2") == "\n\n".join(raw.split("\n"))
