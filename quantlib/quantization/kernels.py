"""GPTQ on real packed kernels: 4-bit layers on torch's CPU int4 kernel, for memory and decode speed.

torch's weight-only int4 kernel (`_weight_int4pack_mm_for_cpu`, tinygemm's layout) computes
x @ W^T with W[n, k] = (q[n, k] - 8) * s[g, n] + z[g, n] for groups g of `group_size` consecutive
columns, q in 0..15 packed two per byte, s and z in bf16. GPTQ's grid is W = scale * (q - zero), so
s = scale and z = (8 - zero) * scale. Under act-order GPTQ's groups are consecutive in the permuted
column order, so the packed weight is W[:, perm] and the activations are permuted to match.
Layers whose input size is not a multiple of the group size stay dense (listed by `pack`). On CUDA
the same role falls to GPTQ's CUDA kernels through transformers' GPTQ integration (GPTQModel).
"""
from __future__ import annotations

import copy

import torch


class Int4Linear(torch.nn.Module):
    def __init__(self, linear: torch.nn.Linear, grid: dict, group_size: int):
        super().__init__()
        W = linear.weight.data.float()
        perm = grid["perm"].long()
        scale, zero = grid["scale"].float(), grid["zero"].float()         # [N, G]: per row and group
        cols = scale.repeat_interleave(group_size, 1)                      # [N, K], in perm order
        q = torch.clamp(torch.round(W[:, perm] / cols + zero.repeat_interleave(group_size, 1)), 0, 15)
        self.out_features, self.in_features = W.shape
        self.group_size = group_size
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.int(), 1))
        self.register_buffer("scales_and_zeros", torch.stack([scale.t(), ((8 - zero) * scale).t()], -1)
                             .to(torch.bfloat16).contiguous())             # [G, N, 2]
        identity = bool((perm == torch.arange(len(perm))).all())
        self.register_buffer("perm", None if identity else perm)
        self.bias = linear.bias

    def forward(self, x):
        shape, dtype = x.shape, x.dtype
        x = x.reshape(-1, self.in_features)
        if self.perm is not None:
            x = x[:, self.perm]
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16).contiguous(), self.packed,
                                                       self.group_size, self.scales_and_zeros)
        y = y.to(dtype).reshape(*shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y

    def dequantized(self) -> torch.Tensor:
        """The weight this layer computes with (for tests): the packed codes times their grid."""
        eye = torch.eye(self.in_features, dtype=torch.bfloat16)
        y = self.forward(eye).float()
        return (y - self.bias.float() if self.bias is not None else y).t()  # x = I gives W^T


def supported(bits: int, group_size: int, device: str) -> bool:
    return bits == 4 and device == "cpu" and group_size % 32 == 0


def pack(model, bits: int, group_size: int) -> tuple[torch.nn.Module, dict]:
    """A copy of a GPTQ model (with `quant_grids`) whose 4-bit layers run on the int4 kernel; the
    layers left dense are named. Weight bytes are counted from the packed buffers."""
    grids = getattr(model, "quant_grids", None)
    if not grids or not supported(bits, group_size, model.device.type):
        return model, {"kernel": "dense (dequantized weights)", "packed_layers": 0, "dense_layers": []}
    packed_model = copy.deepcopy(model)
    done, dense = 0, []
    for name, grid in grids.items():
        parent_name, _, child = name.rpartition(".")
        parent = packed_model.get_submodule(parent_name)
        linear = getattr(parent, child)
        if linear.in_features % group_size or linear.out_features % 8:
            dense.append(name)
            continue
        setattr(parent, child, Int4Linear(linear, grid, group_size))
        done += 1
    weight_bytes = sum(b.numel() * b.element_size() for b in packed_model.buffers()) + sum(
        p.numel() * p.element_size() for p in packed_model.parameters())
    return packed_model, {"kernel": "int4 packed (torch _weight_int4pack_mm_for_cpu)", "packed_layers": done,
                          "dense_layers": dense, "packed_weight_bytes": weight_bytes}
