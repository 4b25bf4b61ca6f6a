"""A GPTQ layer's integer codes on its grid (W = scale * (q - zero)), for the packed formats."""
from __future__ import annotations

import torch


def codes(linear: torch.nn.Linear, grid: dict, group_size: int, maxq: int):
    """A GPTQ layer's integer codes in permuted column order, with its per-group scale and zero."""
    W = linear.weight.data.float()
    perm = grid["perm"].long()
    scale, zero = grid["scale"].float(), grid["zero"].float()         # [N, G]: per row and group
    q = torch.clamp(torch.round(W[:, perm] / scale.repeat_interleave(group_size, 1)
                                + zero.repeat_interleave(group_size, 1)), 0, maxq)
    identity = bool((perm == torch.arange(len(perm))).all())
    return q, scale, zero, None if identity else perm
