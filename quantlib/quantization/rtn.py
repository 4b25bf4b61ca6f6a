"""Round-to-nearest (RTN): GPTQ's grid without its error feedback, the floor GPTQ must beat.

Each group of `group_size` consecutive columns gets its own per-row min-max grid (the Quantizer of
gptq.py, symmetric or not), and every weight is rounded to its nearest grid point. No calibration.
"""
from __future__ import annotations

import torch

from quantlib.quantization.gptq import Quantizer


def rtn(W: torch.Tensor, bits: int, group_size: int | None = 128, sym: bool = True) -> torch.Tensor:
    """W rounded to the nearest point of its group's grid (groups of consecutive columns), in float."""
    W = W.float()
    step = group_size if group_size and 0 < group_size < W.shape[1] else W.shape[1]  # None: one group per row
    quantizer, Q = Quantizer(bits, sym), torch.empty_like(W)
    for i in range(0, W.shape[1], step):
        quantizer.find_params(W[:, i:i + step])
        Q[:, i:i + step] = quantizer.quantize(W[:, i:i + step])
    return Q


@torch.no_grad()
def quantize_layer(layer: torch.nn.Linear, bits: int, group_size: int = 128, sym: bool = True) -> dict:
    """Round a linear layer in place; the statistics shape of GPTQ and SpQR (no loss without inputs)."""
    layer.weight.data = rtn(layer.weight.data, bits, group_size, sym).to(layer.weight.dtype)
    return {"loss": None, "outliers": 0, "weights": layer.weight.numel()}
