"""bitsandbytes NF4/FP4 scored on dense weights on a CPU.

On a CPU with AVX512-BF16, bitsandbytes computes 4-bit layers with one fused kernel whatever the
number of rows: fast when decoding one token, about 6x slower than dequantizing and multiplying in
bf16 when a whole window goes through at once (perplexity, log-likelihood scoring; `benchmarks/perf.py
bnb4` measures it).
Scores depend on the weights, not on which kernel multiplies them, so a CPU run scores on the dense
weights that kernel computes with, read out through the layer's own forward (identity in, W^T out,
bias removed). The run is timed on the kernel before this (`methods.speed_model`).
"""
from __future__ import annotations

import torch


@torch.no_grad()
def dense_copy(layer, chunk: int = 1024) -> torch.nn.Linear:
    """An nn.Linear holding exactly the weights `layer` (a bitsandbytes Linear4bit) multiplies by."""
    dtype = layer.compute_dtype or torch.bfloat16
    bias, layer.bias = layer.bias, None
    try:
        eye = torch.eye(layer.in_features, dtype=dtype)
        w_t = torch.cat([layer(eye[i:i + chunk]) for i in range(0, layer.in_features, chunk)])
    finally:
        layer.bias = bias
    dense = torch.nn.Linear(layer.in_features, layer.out_features, bias=bias is not None, dtype=dtype)
    dense.weight.copy_(w_t.t())
    if bias is not None:
        dense.bias.copy_(bias)
    return dense.requires_grad_(False)


def densify(model, _variant=None) -> dict:
    """Replace every bitsandbytes 4-bit layer on the CPU by its dense copy; nothing changes on CUDA."""
    import bitsandbytes as bnb

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, bnb.nn.Linear4bit) and child.weight.device.type == "cpu":
                setattr(parent, name, dense_copy(child))
                replaced += 1
    return {"scoring_kernel": "dense (weights read from the bitsandbytes kernel)" if replaced else "bitsandbytes",
            "densified_layers": replaced}
