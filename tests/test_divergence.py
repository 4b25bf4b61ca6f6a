"""Next-token KL against the baseline: the coarsened KL on known distributions, and the stage on the tiny model."""
import torch

from quantlib import divergence, records
from quantlib.spec import RunSpec


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


def test_divergence_of_a_quantized_tiny_model(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTLIB_CACHE", str(tmp_path / "cache"))
    spec = RunSpec(model=tiny_model, method="bnb-nf4", ppl_datasets=("wikitext2",), ppl_seqlen=256, ppl_limit=2)
    folder = tmp_path / "run"
    records.write_json(folder / "spec.json", {"name": spec.name, **spec.to_dict()})  # as the notebook writes it
    assert divergence.run(folder) == "measured"
    d = records.read_json(folder / "divergence.json")["corpora"]["wikitext2"]
    assert d["positions"] == 2 * 255 and d["kl"] > 0 and 0 <= d["top1_flip"] <= 1
    assert divergence.run(folder) == "done before"
    # a damaged reference cache is computed again, with the same result
    for f in (tmp_path / "cache" / "kl-reference").glob("*.safetensors"):
        f.write_bytes(b"damaged")
    (folder / "divergence.json").unlink()
    assert divergence.run(folder) == "measured"
    assert records.read_json(folder / "divergence.json")["corpora"]["wikitext2"]["kl"] == d["kl"]
    # the baseline against itself: no divergence, no flips (the reference is reused from the cache)
    base = RunSpec(model=tiny_model, method="fp", ppl_datasets=("wikitext2",), ppl_seqlen=256, ppl_limit=2)
    from quantlib import methods, models
    m, _ = methods.load(base)
    same = divergence.measure(base, m, models.load_tokenizer(tiny_model))["corpora"]["wikitext2"]
    assert same["kl"] < 1e-5 and same["top1_flip"] == 0


def test_drop_predictors_rank_drops_and_leave_a_benchmarks_own_flips_out():
    import pandas as pd
    from quantlib import report

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
