"""Quantization methods behind one registry and one signature: `load(spec) -> (model, info)`.

`info` records what the report must say about each variant: weight bytes (and how they were
counted), compute dtype, and for GPTQ the calibration and per-layer losses.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from . import models, paths, records


@dataclass(frozen=True)
class Method:
    bits: frozenset
    loader: Callable
    calibrated: bool = False
    default_bits_ok: bool = True
    doc: str = ""

    def label(self, bits) -> str:
        return self._name if bits is None or len(self.bits) == 1 else f"{self._name}-{bits}b"


def _footprint(model) -> int:
    return int(model.get_memory_footprint())


def load_fp(spec):
    dtype = {32: torch.float32, 16: torch.bfloat16, None: models.fp_dtype()}[spec.bits]
    model = models.load_fp(spec.model, dtype)
    return model, {"dtype": str(dtype).replace("torch.", ""), "weight_bytes": _footprint(model),
                   "weight_bytes_kind": "stored tensors", "effective_bits": torch.finfo(dtype).bits}


def _load_bnb(spec, config):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        models.resolve(spec.model), quantization_config=config, dtype=models.fp_dtype(),
        device_map=models.device()).eval()
    storage = bnb_storage(model, models.fp_dtype().itemsize)
    return model, {"dtype": str(models.fp_dtype()).replace("torch.", ""), "weight_bytes": _footprint(model),
                   "weight_bytes_kind": "stored tensors (bitsandbytes packed)",
                   "effective_bits": 8 * storage["quantized_linear_packed_bytes"] / storage["quantized_linear_params"],
                   spec.method: storage}


def bnb_storage(model, dense_itemsize: int) -> dict:
    """Bytes bitsandbytes really stores for its linear layers: codes plus scales, i.e. int8 weights and
    one fp32 scale per row (LLM.int8(); its outlier columns are recomputed, not stored), or packed 4-bit
    codes, one fp32 absmax per block of 64, the 16-entry code book and nested statistics (NF4/FP4)."""
    import bitsandbytes as bnb

    def nbytes(*tensors):
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    packed = params = 0
    for mod in model.modules():
        if isinstance(mod, bnb.nn.Linear8bitLt):
            packed += nbytes(mod.weight.data, mod.weight.SCB)
        elif isinstance(mod, bnb.nn.Linear4bit):
            qs = mod.weight.quant_state
            packed += nbytes(mod.weight.data, qs.absmax, qs.code)
            if qs.nested:
                packed += nbytes(qs.state2.absmax, qs.state2.code, qs.offset)
        else:
            continue
        params += mod.in_features * mod.out_features
    return {"quantized_linear_packed_bytes": packed, "quantized_linear_params": params,
            "quantized_linear_dense_bytes": params * dense_itemsize}


def _drop_int8_cast_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("MatMul8bitLt: inputs will be cast")


def load_bnb_int8(spec):
    from transformers import BitsAndBytesConfig

    # LLM.int8() casts fp32/bf16 activations to fp16 for its matmul and logs it on every call (a
    # logging warning, not warnings.warn), which bloated the run notebook to 40 MB; the cast is
    # stated in the method's doc instead
    logging.getLogger("bitsandbytes.autograd._functions").addFilter(_drop_int8_cast_notice)
    return _load_bnb(spec, BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0))


def _bnb4(quant_type):
    def load(spec):
        from transformers import BitsAndBytesConfig

        return _load_bnb(spec, BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                                                  bnb_4bit_compute_dtype=models.fp_dtype()))
    return load


def gptq_cache_dir(spec, dtype: torch.dtype) -> str:
    """Keyed by hash(model, method, bits, group, calibration); the dtype the weights were stored in is
    part of the name (dequantized weights computed in bf16 on a GPU differ slightly from fp32 ones)."""
    key = hashlib.sha256(json.dumps(spec.quant_key(), sort_keys=True).encode()).hexdigest()[:16]
    dt = str(dtype).replace("torch.", "")
    return str(paths.cache_dir() / "quantized" / f"{spec.name.split('__')[0]}-{spec.bits_label}-{dt}-{key}")


def load_calibrated(spec):
    """GPTQ or SpQR weights, dequantized: numerically the quantized model, scored by dense kernels."""
    from safetensors.torch import load_file, save_file

    from . import calibration, gptq_model

    model = models.load_fp(spec.model)
    cache = gptq_cache_dir(spec, model.dtype)
    qinfo = _verified_cache(cache)
    if qinfo is not None:
        saved = load_file(os.path.join(cache, "model.safetensors"), device=str(model.device))
        unexpected = model.load_state_dict(saved, strict=False).unexpected_keys  # decoder layers only
        if unexpected or not saved:
            raise RuntimeError(f"GPTQ cache {cache} does not match the model (unexpected keys {unexpected[:3]})")
        qinfo["from_cache"] = True
    else:
        tok = models.load_tokenizer(spec.model)
        samples = calibration.samples(tok, spec.calibration)
        qinfo = gptq_model.quantize(model, samples, spec.bits, spec.group_size, percdamp=0.01,
                                    actorder=True, sym=True, algorithm=spec.method,
                                    outlier_threshold=spec.outlier_threshold or 0.0)
        qinfo.update(calibration_tokens=int(sum(s.shape[1] for s in samples)), quant_key=spec.quant_key())
        tmp = cache + f".tmp{os.getpid()}"
        os.makedirs(tmp, exist_ok=True)
        layers = gptq_model.decoder_layers(model)
        state = {k: v.contiguous() for k, v in model.state_dict().items()
                 if any(v.data_ptr() == p.data_ptr() for p in layers.parameters())}
        save_file(state, os.path.join(tmp, "model.safetensors"))
        qinfo["weights_sha256"] = _sha256(os.path.join(tmp, "model.safetensors"))
        json.dump(qinfo, open(os.path.join(tmp, "quant_info.json"), "w"), indent=1)
        records.publish_dir(tmp, cache)
        qinfo["from_cache"] = False
    dense = _footprint(model)
    weight_bytes = dense - qinfo["quantized_linear_dense_bytes"] + qinfo["quantized_linear_packed_bytes"]
    n_params = sum(p.numel() for p in model.parameters())
    return model, {"dtype": str(model.dtype).replace("torch.", ""), "weight_bytes": weight_bytes,
                   "weight_bytes_kind": f"{STORAGE[spec.method]}, computed (scored on dequantized dense weights)",
                   "dense_weight_bytes": dense,
                   "effective_bits": 8 * qinfo["quantized_linear_packed_bytes"] / (
                       qinfo["quantized_linear_dense_bytes"] / model.dtype.itemsize),
                   spec.method: {k: v for k, v in qinfo.items() if k != "layer_losses"},
                   f"{spec.method}_layer_" + ("outlier_fractions" if spec.method == "spqr" else "losses"):
                       qinfo["layer_losses"], "n_params": n_params}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified_cache(cache: str) -> dict | None:
    """The cached quantization's info if the entry is whole (its weights match their recorded
    checksum); a damaged entry is removed, so that the caller quantizes again."""
    info_path, weights = os.path.join(cache, "quant_info.json"), os.path.join(cache, "model.safetensors")
    if not os.path.exists(cache):
        return None
    try:
        qinfo = json.load(open(info_path))
        if "weights_sha256" in qinfo and _sha256(weights) != qinfo["weights_sha256"]:
            raise ValueError("checksum mismatch")
        return qinfo
    except (OSError, ValueError) as e:
        warnings.warn(f"quantized-checkpoint cache {cache} is damaged ({e}); quantizing again")
        shutil.rmtree(cache, ignore_errors=True)
        return None


STORAGE = {"gptq": "GPTQ packed format", "spqr": "SpQR storage (codes, 3-bit statistics, outliers)"}

METHODS = {
    "fp": Method(frozenset({16, 32}), load_fp, doc="full precision: bf16 on GPU, fp32 on CPU"),
    "bnb-int8": Method(frozenset({8}), load_bnb_int8, doc="LLM.int8() (bitsandbytes), outlier threshold 6, fp16 activations in the int8 matmul"),
    "bnb-nf4": Method(frozenset({4}), _bnb4("nf4"), doc="bitsandbytes NF4, block 64"),
    "bnb-fp4": Method(frozenset({4}), _bnb4("fp4"), doc="bitsandbytes FP4, block 64"),
    "gptq": Method(frozenset({2, 3, 4, 8}), load_calibrated, calibrated=True, default_bits_ok=False,
                   doc="GPTQ, group 128, act-order, damp 0.01, symmetric"),
    "spqr": Method(frozenset({2, 3, 4, 8}), load_calibrated, calibrated=True, default_bits_ok=False,
                   doc="SpQR (simulated), group 16, 3-bit statistics, outlier threshold 0.2, act-order"),
}
for _name, _m in METHODS.items():
    object.__setattr__(_m, "_name", _name)


def load(spec):
    """The one entry point: the quantized model for a validated spec, plus what to record about it."""
    return METHODS[spec.method].loader(spec)
