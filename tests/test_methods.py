"""Every method quantizes through the one registry; its cache keys hold everything that shapes the
weights; real-behaviour checks use the real default model."""
import math

import pytest
import torch
from conftest import PROSE

from quantlib.models import load as loading
from quantlib.quantization import calibrated, methods
from quantlib.running.spec import RunSpec
from quantlib.scoring import perplexity


def _ppl(model, tok, text=PROSE * 2):
    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids[:, :256]
    return math.exp(perplexity.window_nlls(model, ids)[0])


@pytest.mark.parametrize("method, bits", [("fp", None), ("bnb-int8", None), ("bnb-nf4", None),
                                          ("bnb-fp4", None), ("gptq", 8), ("gptq", 4), ("gptq", 3), ("gptq", 2),
                                          ("rtn", 4), ("spqr", 4), ("spqr", 2)])
def test_each_method_quantizes_the_tiny_model(tiny_model, method, bits, caplog):
    spec = RunSpec(model=tiny_model, method=method, bits=bits, calibration={"n_samples": 4})
    model, info = methods.load(spec.variant)
    tok = loading.load_tokenizer(tiny_model)
    with caplog.at_level("WARNING"):
        assert math.isfinite(_ppl(model, tok))
    # LLM.int8()'s per-matmul cast notice is dropped (it made a 40 MB run notebook)
    assert "MatMul8bitLt" not in caplog.text
    assert info["weight_bytes"] > 0 and info["dtype"] == spec.dtype == str(model.dtype).replace("torch.", "")
    fp_bytes = methods.load(RunSpec(model=tiny_model, method="fp", dtype=spec.dtype).variant)[1]["weight_bytes"]
    if method == "fp":
        assert info["stored_bits"] == {"bfloat16": 16, "float32": 32}[spec.dtype]
    else:
        assert info["weight_bytes"] < fp_bytes
    if method == "spqr":
        assert 0 < info["outlier_fraction"] < 0.2 and info["stored_bits"] > bits
    if method in ("gptq", "rtn"):
        assert info["outlier_fraction"] == 0 and bits < info["stored_bits"] < bits + 1
    if method.startswith("bnb"):
        assert any("bnb" in type(m).__module__ or "bitsandbytes" in type(m).__module__ for m in model.modules())
        # stored bits per weight, by hand: int8 codes + one fp32 scale per row of 128 or 256 inputs;
        # 4-bit codes + one fp32 absmax per block of 64 (+ a 16-entry fp32 code book per layer)
        if method == "bnb-int8":
            rows = sum(m.out_features for m in model.modules() if type(m).__name__ == "Linear8bitLt")
            assert info["quantized_linear_packed_bytes"] == info["quantized_linear_params"] + 4 * rows
        else:
            layers = sum(type(m).__name__ == "Linear4bit" for m in model.modules())
            assert info["quantized_linear_packed_bytes"] == (info["quantized_linear_params"] // 2
                                                             + 4 * info["quantized_linear_params"] // 64 + 64 * layers)
        assert info["stored_bits"] == pytest.approx(8 * info["quantized_linear_packed_bytes"]
                                                    / info["quantized_linear_params"])
        assert info["stored_bits"] == pytest.approx(8.2 if method == "bnb-int8" else 4.5, abs=0.1)


@pytest.mark.parametrize("method", ["bnb-nf4", "bnb-fp4"])
def test_4bit_scoring_copy_multiplies_by_the_kernels_weights(tiny_model, method):
    """On a CPU, NF4/FP4 runs score on dense copies read out of bitsandbytes' kernel: every 4-bit layer
    is replaced, and the logits are those of the kernel up to bf16 rounding of the products."""
    spec = RunSpec(model=tiny_model, method=method, dtype="bfloat16")
    model, _ = methods.load(spec.variant)
    ids = loading.load_tokenizer(tiny_model)(PROSE, return_tensors="pt").input_ids[:, :64]
    with torch.no_grad():
        kernel_logits = model(ids).logits.float()
        n_4bit = sum(type(m).__name__ == "Linear4bit" for m in model.modules())
        info = methods.score_model(spec.variant, model)
        dense_logits = model(ids).logits.float()
    assert info == {"scoring_kernel": "dense (weights read from the bitsandbytes kernel)", "densified_layers": n_4bit}
    assert n_4bit > 0 and not any(type(m).__name__ == "Linear4bit" for m in model.modules())
    assert (dense_logits - kernel_logits).abs().max() < 0.05 * kernel_logits.abs().max()
    assert (dense_logits.argmax(-1) == kernel_logits.argmax(-1)).float().mean() > 0.9
    assert methods.score_model(RunSpec(model=tiny_model, method="fp").variant, model) == {}  # others: untouched


def test_scored_models_hand_freed_memory_back_after_each_forward(tiny_model, monkeypatch):
    """LLM.int8() on a CPU fragments glibc's heap (1.5B: +3 GB per perplexity window, killed at 24 GB);
    a scored model trims it after every forward pass, which changes no logit."""
    from quantlib.models import heap

    if heap._libc() is None:
        pytest.skip("no glibc malloc_trim on this platform")
    spec = RunSpec(model=tiny_model, method="bnb-int8", dtype="bfloat16")
    model, _ = methods.load(spec.variant)
    ids = loading.load_tokenizer(tiny_model)(PROSE, return_tensors="pt").input_ids[:, :64]
    calls = []
    monkeypatch.setattr(heap, "trim", lambda: calls.append(1) or True)
    with torch.no_grad():
        before = model(ids).logits
        heap.release_after_forward(model)
        after = [model(ids).logits for _ in range(2)]
    assert len(calls) == 2
    assert all(torch.equal(before, a) for a in after)


def test_gptq_checkpoint_is_cached(tiny_model):
    spec = RunSpec(model=tiny_model, method="gptq", bits=3, calibration={"n_samples": 4})
    m1, i1 = methods.load(spec.variant)
    m2, i2 = methods.load(spec.variant)
    assert i2["from_cache"] is True
    for (n, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("change", [{"params": {"percdamp": 0.02}}, {"params": {"sym": False}},
                                    {"params": {"actorder": False}}, {"group_size": 64},
                                    {"calibration": {"n_samples": 4, "seed": 1}}, {"dtype": "float32"}])
def test_a_protocol_change_misses_the_cache(tiny_model, change):
    """The bug of issue #13: percdamp, act-order, symmetry lived outside the key, so a change reused
    old weights. Every parameter that shapes the weights is in the key now (and in the run name)."""
    base = RunSpec(model=tiny_model, method="gptq", bits=4, calibration={"n_samples": 4}, dtype="bfloat16")
    other = RunSpec.from_dict({**base.to_dict(), **change})
    assert other.variant.key() != base.variant.key() and other.name != base.name
    assert calibrated.cache_dir(other.variant) != calibrated.cache_dir(base.variant)
    methods.load(base.variant)
    assert methods.load(other.variant)[1]["from_cache"] is False


def test_a_change_to_the_algorithm_code_misses_the_cache(tiny_model, monkeypatch):
    spec = RunSpec(model=tiny_model, method="gptq", bits=4, calibration={"n_samples": 4})
    before = spec.variant.key()
    monkeypatch.setattr("quantlib.quantization.variant.code_sha256", lambda modules: "edited gptq.py")
    assert spec.variant.key() != before and spec.variant.key()["code_sha256"] == "edited gptq.py"


def test_damaged_checkpoint_cache_is_rebuilt_not_trusted(tiny_model, tmp_path):
    from pathlib import Path

    spec = RunSpec(model=tiny_model, method="gptq", bits=4, calibration={"n_samples": 4})
    m1, _ = methods.load(spec.variant)
    weights = Path(calibrated.cache_dir(spec.variant)) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64] + bytes(64))  # same size, last bytes zeroed
    with pytest.warns(UserWarning, match="damaged"):
        m2, i2 = methods.load(spec.variant)
    assert i2["from_cache"] is False
    for (n, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), n
    assert methods.load(spec.variant)[1]["from_cache"] is True  # the rebuilt entry is whole again


def test_registry_owns_labels_titles_and_protocols():
    spqr = methods.get("spqr")
    assert spqr.label(2, 16, spqr.params, "bfloat16") == "spqr-2b"
    assert spqr.label(2, 128, {**spqr.params, "outlier_threshold": math.inf}, "") == "spqr-2b-g128-no-outliers"
    assert spqr.describe(2, 16, {**spqr.params, "outlier_threshold": math.inf}, "") == "SpQR 2-bit, no outliers"
    assert methods.get("gptq").label(3, 128, {**methods.get("gptq").params, "sym": False}, "") == "gptq-3b-asym"
    assert methods.get("fp").label(16, None, {}, "bfloat16") == "bf16"
    with pytest.raises(ValueError, match="no parameter.*qq_bits"):
        methods.get("gptq").resolve_params({"qq_bits": 3})


@pytest.fixture(scope="module")
def real_baseline():
    spec = RunSpec(model="smollm2-135m-instruct", method="fp")
    model, _ = methods.load(spec.variant)
    tok = loading.load_tokenizer(spec.model)
    return tok, _ppl(model, tok)


@pytest.mark.slow
@pytest.mark.parametrize("method, bits, tol", [("bnb-int8", None, 0.03), ("gptq", 8, 0.03),
                                               ("bnb-nf4", None, 0.5), ("spqr", 4, 0.15)])
def test_real_model_quantized_perplexity_stays_near_baseline(real_baseline, method, bits, tol):
    tok, base = real_baseline
    assert 2 < base < 100  # a real model on natural prose
    model, _ = methods.load(RunSpec(model="smollm2-135m-instruct", method=method, bits=bits,
                                    calibration={"n_samples": 8}).variant)
    ppl = _ppl(model, tok)
    assert abs(ppl / base - 1) < tol, (method, bits, ppl, base)
