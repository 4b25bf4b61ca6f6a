"""Next-token KL against the baseline: the coarsened KL on known distributions, and the stage on the tiny model."""
import torch

from quantlib.running.spec import RunSpec
from quantlib.scoring import divergence


def _full_kl(p_logp, q_logp):
    return (p_logp.exp() * (p_logp - q_logp)).sum(-1)


def test_coarse_kl_is_zero_for_equal_exact_when_k_covers_all_but_one_and_a_lower_bound_otherwise():
    g = torch.Generator().manual_seed(0)
    p = torch.log_softmax(3 * torch.randn(50, 40, generator=g), -1)
    q = torch.log_softmax(p + torch.randn(50, 40, generator=g), -1)
    top = p.topk(39, dim=-1)
    assert torch.allclose(divergence.coarse_kl(top.indices, top.values, p), torch.zeros(50), atol=1e-5)
    # top-39 of 40 plus the rest bucket is the full distribution: the full KL exactly
    assert torch.allclose(divergence.coarse_kl(top.indices, top.values, q), _full_kl(p, q), atol=1e-5)
    # fewer tokens: never above the full KL (data-processing inequality), and positive
    top = p.topk(5, dim=-1)
    coarse = divergence.coarse_kl(top.indices, top.values, q)
    assert (coarse <= _full_kl(p, q) + 1e-6).all() and (coarse > 0).all()


def test_divergence_comes_from_the_perplexity_pass(tiny_model, tmp_path, monkeypatch):
    """One forward pass per window gives the perplexity and, against the cached baseline reference,
    the KL and top-1 flips; the KL equals the one computed from separately kept log-probs."""
    from quantlib.models import load as loading
    from quantlib.quantization import methods
    from quantlib.scoring import perplexity

    monkeypatch.setenv("QUANTLIB_CACHE", str(tmp_path / "cache"))
    spec = RunSpec(model=tiny_model, method="bnb-nf4",
                   perplexity={"datasets": ["wikitext2"], "seqlen": 256, "limit": 2})
    base = RunSpec.from_dict({"model": tiny_model, "method": "fp", "dtype": spec.dtype}).variant
    tok = loading.load_tokenizer(tiny_model)
    model, _ = methods.load(spec.variant)
    loads = []

    def load_baseline():
        loads.append(1)
        return methods.load(base)[0]

    args = (tok, "wikitext2", 256, 2, base.key())
    d = divergence.score(model, *args, False, load_baseline)
    assert d["positions"] == 2 * 255 and d["kl"] > 0 and 0 <= d["top1_flip"] <= 1 and loads == [1]
    assert d["ppl"] == perplexity.perplexity(model, tok, "wikitext2", 256, 2)["ppl"]
    # the same as a KL from log-probs kept apart (what the separate divergence stage computed)
    base_model = methods.load(base)[0]
    wins = perplexity.windows(tok, perplexity.corpus("wikitext2"), 256, 2)
    kl = []
    for w in wins:
        p = perplexity.window_logits(base_model, w).topk(divergence.TOP_K, dim=-1)
        kl.append(divergence.coarse_kl(p.indices, p.values, perplexity.window_logits(model, w)))
    assert abs(torch.cat(kl).mean().item() - d["kl"]) < 1e-6
    # the reference is cached: no second baseline load; a damaged one is computed again, same result
    assert divergence.score(model, *args, False, load_baseline)["kl"] == d["kl"] and loads == [1]
    for f in (tmp_path / "cache" / "kl-reference").glob("*.safetensors"):
        f.write_bytes(b"damaged")
    assert divergence.score(model, *args, False, load_baseline)["kl"] == d["kl"] and loads == [1, 1]
    # the baseline run writes the reference itself, and against itself: no divergence, no flips
    assert "kl" not in divergence.score(base_model, *args, True, load_baseline)
    assert divergence.score(base_model, *args, False, load_baseline)["kl"] < 1e-5 and loads == [1, 1]


def test_drop_predictors_rank_drops_and_leave_a_benchmarks_own_flips_out():
    import pandas as pd

    from quantlib.reporting import report

    # six quantized runs whose drops on both benchmarks grow with the KL; perplexity is shuffled
    kl = [0.01, 0.02, 0.05, 0.1, 0.3, 1.0]
    ppl = [12.0, 10.5, 30.0, 11.0, 15.0, 13.0]
    rows = [dict(method="fp", label="fp32", ppl_wikitext2=10.0, mmlu=0.60, gsm8k=0.40, kl_mean=None)]
    rows += [dict(method="gptq", label=f"q{i}", ppl_wikitext2=p, mmlu=0.60 - k / 10, gsm8k=0.40 - k / 5,
                  kl_mean=k, mmlu_flips=k, gsm8k_flips=1 - k) for i, (k, p) in enumerate(zip(kl, ppl))]
    t = report.drop_predictors(pd.DataFrame(rows).assign(model="m")).set_index("benchmark")
    assert (t["runs"] == 6).all()
    assert t["next-token KL"].tolist() == [1.0, 1.0]
    assert abs(t["log perplexity ratio"]).max() < 0.9
    # MMLU's drop is predicted from GSM8K's flips (which fall as KL rises) and vice versa
    assert t["answer flips (other benchmarks)"].tolist() == [-1.0, 1.0]
