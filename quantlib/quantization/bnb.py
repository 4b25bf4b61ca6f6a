"""bitsandbytes methods: LLM.int8(), NF4 and FP4, loaded through transformers' integration."""
from __future__ import annotations

import logging

from quantlib.models import load as loading


def _load(variant, config):
    from transformers import AutoModelForCausalLM

    dtype = loading.DTYPES[variant.dtype]
    model = AutoModelForCausalLM.from_pretrained(loading.resolve(variant.model), quantization_config=config,
                                                 dtype=dtype, device_map=loading.device()).eval()
    return model, {"dtype": variant.dtype, "weight_bytes": int(model.get_memory_footprint()),
                   "weight_bytes_kind": "stored tensors (bitsandbytes packed)", **storage(model, dtype.itemsize)}


def storage(model, dense_itemsize: int) -> dict:
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


def load_int8(variant, method):
    from transformers import BitsAndBytesConfig

    # LLM.int8() casts fp32/bf16 activations to fp16 for its matmul and logs it on every call (a
    # logging warning, not warnings.warn), which bloated the run notebook to 40 MB; the cast is
    # stated in the method's doc instead
    logging.getLogger("bitsandbytes.autograd._functions").addFilter(_drop_int8_cast_notice)
    return _load(variant, BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0))


def load_4bit(quant_type):
    def load(variant, method):
        from transformers import BitsAndBytesConfig

        return _load(variant, BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                                                 bnb_4bit_compute_dtype=loading.DTYPES[variant.dtype]))
    return load
