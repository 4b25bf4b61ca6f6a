"""Every method quantizes through the one registry; real-behaviour checks use the real default model."""
import math
from pathlib import Path

import pytest
import torch

from quantlib import methods, models, perplexity
from quantlib.spec import RunSpec

from conftest import PROSE


def _ppl(model, tok, text=PROSE * 2):
    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids[:, :256]
    return math.exp(perplexity.window_nlls(model, ids)[0])


@pytest.mark.parametrize("method, bits", [("fp", None), ("bnb-int8", None), ("bnb-nf4", None),
                                          ("bnb-fp4", None), ("gptq", 8), ("gptq", 4), ("gptq", 3), ("gptq", 2),
                                          ("spqr", 4), ("spqr", 2)])
def test_each_method_quantizes_the_tiny_model(tiny_model, method, bits, caplog):
    spec = RunSpec(model=tiny_model, method=method, bits=bits, calibration={"n_samples": 4})
    model, info = methods.load(spec)
    tok = models.load_tokenizer(tiny_model)
    with caplog.at_level("WARNING"):
        assert math.isfinite(_ppl(model, tok))
    # LLM.int8()'s per-matmul cast notice is dropped (it made a 40 MB run notebook)
    assert "MatMul8bitLt" not in caplog.text
    assert info["weight_bytes"] > 0
    fp_bytes = methods.load(RunSpec(model=tiny_model, method="fp"))[1]["weight_bytes"]
    if method != "fp":
        assert info["weight_bytes"] < fp_bytes
    if method == "spqr":
        assert 0 < info["spqr"]["outlier_fraction"] < 0.2 and info["effective_bits"] > bits
    if method.startswith("bnb"):
        assert any("bnb" in type(m).__module__ or "bitsandbytes" in type(m).__module__ for m in model.modules())
        # stored bits per weight, by hand: int8 codes + one fp32 scale per row of 128 or 256 inputs;
        # 4-bit codes + one fp32 absmax per block of 64 (+ a 16-entry fp32 code book per layer)
        st = info[method]
        if method == "bnb-int8":
            rows = sum(m.out_features for m in model.modules() if type(m).__name__ == "Linear8bitLt")
            assert st["quantized_linear_packed_bytes"] == st["quantized_linear_params"] + 4 * rows
        else:
            layers = sum(type(m).__name__ == "Linear4bit" for m in model.modules())
            assert st["quantized_linear_packed_bytes"] == (st["quantized_linear_params"] // 2
                                                           + 4 * st["quantized_linear_params"] // 64 + 64 * layers)
        assert info["effective_bits"] == pytest.approx(8 * st["quantized_linear_packed_bytes"] / st["quantized_linear_params"])
        assert info["effective_bits"] == pytest.approx(8.2 if method == "bnb-int8" else 4.5, abs=0.1)


def test_gptq_checkpoint_is_cached(tiny_model):
    spec = RunSpec(model=tiny_model, method="gptq", bits=3, calibration={"n_samples": 4})
    m1, i1 = methods.load(spec)
    m2, i2 = methods.load(spec)
    assert i2["gptq"]["from_cache"] is True
    for (n, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), n


def test_damaged_checkpoint_cache_is_rebuilt_not_trusted(tiny_model):
    spec = RunSpec(model=tiny_model, method="gptq", bits=4, calibration={"n_samples": 4})
    m1, _ = methods.load(spec)
    cache = Path(methods.gptq_cache_dir(spec, m1.dtype))
    weights = cache / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64] + bytes(64))  # same size, last bytes zeroed
    with pytest.warns(UserWarning, match="damaged"):
        m2, i2 = methods.load(spec)
    assert i2["gptq"]["from_cache"] is False
    for (n, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), n
    assert methods.load(spec)[1]["gptq"]["from_cache"] is True  # the rebuilt entry is whole again


@pytest.fixture(scope="module")
def real_baseline():
    spec = RunSpec(model="smollm2-135m-instruct", method="fp")
    model, _ = methods.load(spec)
    tok = models.load_tokenizer(spec.model)
    return tok, _ppl(model, tok)


@pytest.mark.slow
@pytest.mark.parametrize("method, bits, tol", [("bnb-int8", None, 0.03), ("gptq", 8, 0.03),
                                               ("bnb-nf4", None, 0.5), ("spqr", 4, 0.15)])
def test_real_model_quantized_perplexity_stays_near_baseline(real_baseline, method, bits, tol):
    tok, base = real_baseline
    assert 2 < base < 100  # a real model on natural prose
    model, _ = methods.load(RunSpec(model="smollm2-135m-instruct", method=method, bits=bits,
                                    calibration={"n_samples": 8}))
    ppl = _ppl(model, tok)
    assert abs(ppl / base - 1) < tol, (method, bits, ppl, base)
