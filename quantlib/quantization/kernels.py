"""GPTQ on real packed kernels, for memory and decode speed: 4-bit layers on torch's CPU int4 kernel,
8-bit layers on its int8 weight-only kernel.

torch's weight-only int4 kernel (`_weight_int4pack_mm_for_cpu`, tinygemm's layout) computes
x @ W^T with W[n, k] = (q[n, k] - 8) * s[g, n] + z[g, n] for groups g of `group_size` consecutive
columns, q in 0..15 packed two per byte, s and z in bf16. GPTQ's grid is W = scale * (q - zero), so
s = scale and z = (8 - zero) * scale. The int8 kernel (`_weight_int8pack_mm`) has one scale per row
and no zero, so an 8-bit layer is one call per group of columns: y = sum_g (x_g @ c_g^T) * s_g -
sum(x_g) * (zero_g - 128) * s_g with codes c = q - 128 in int8 (the correction is 0 on the
symmetric grid). Under act-order GPTQ's groups are consecutive in the permuted column order, so the
packed weight is W[:, perm] and the activations are permuted to match.
Layers whose shapes the kernel cannot take stay dense (listed by `pack`). On CUDA the same role
falls to GPTQ's CUDA kernels through transformers' GPTQ integration (GPTQModel).
"""
from __future__ import annotations

import copy

import torch

from quantlib.quantization import gptq_export
from quantlib.quantization.grid_codes import codes


class _Packed(torch.nn.Module):
    """What both packed layers share: shapes, the column permutation, the bias, the dequantized view."""

    def __init__(self, linear: torch.nn.Linear, perm, group_size: int):
        super().__init__()
        self.out_features, self.in_features = linear.weight.shape
        self.group_size = group_size
        self.register_buffer("perm", perm)
        self.bias = linear.bias

    def forward(self, x):
        shape, dtype = x.shape, x.dtype
        x = x.reshape(-1, self.in_features)
        if self.perm is not None:
            x = x[:, self.perm]
        y = self.matmul(x).to(dtype).reshape(*shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y

    def dequantized(self) -> torch.Tensor:
        """The weight this layer computes with (for tests): the packed codes times their grid."""
        eye = torch.eye(self.in_features, dtype=torch.bfloat16)
        y = self.forward(eye).float()
        return (y - self.bias.float() if self.bias is not None else y).t()  # x = I gives W^T


class Int4Linear(_Packed):
    def __init__(self, linear: torch.nn.Linear, grid: dict, group_size: int):
        q, scale, zero, perm = codes(linear, grid, group_size, 15)
        super().__init__(linear, perm, group_size)
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.int(), 1))
        self.register_buffer("scales_and_zeros", torch.stack([scale.t(), ((8 - zero) * scale).t()], -1)
                             .to(torch.bfloat16).contiguous())             # [G, N, 2]

    def matmul(self, x):
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16).contiguous(), self.packed,
                                                          self.group_size, self.scales_and_zeros)


class Int8Linear(_Packed):
    def __init__(self, linear: torch.nn.Linear, grid: dict, group_size: int):
        q, scale, zero, perm = codes(linear, grid, group_size, 255)
        super().__init__(linear, perm, group_size)
        G = scale.shape[1]
        c = (q - 128).to(torch.int8).reshape(self.out_features, G, group_size)
        self.register_buffer("codes", c.permute(1, 0, 2).contiguous())      # [G, N, group]
        self.register_buffer("scales", scale.t().to(torch.bfloat16).contiguous())  # [G, N]
        shift = ((zero - 128) * scale).t()                                        # [G, N]
        self.register_buffer("shift", shift.contiguous() if shift.any() else None)  # fp32: tiny

    def matmul(self, x):
        x = x.to(torch.bfloat16)
        y = torch.zeros(x.shape[0], self.out_features, dtype=torch.float32)
        for g in range(self.codes.shape[0]):
            xg = x[:, g * self.group_size:(g + 1) * self.group_size].contiguous()
            y += torch._weight_int8pack_mm(xg, self.codes[g], self.scales[g])
            if self.shift is not None:
                y -= xg.float().sum(-1, keepdim=True) * self.shift[g]
        return y


DENSE = {"kernel": "dense (dequantized weights)", "packed_layers": 0, "dense_layers": []}
KERNELS = {4: (Int4Linear, "int4 packed (torch _weight_int4pack_mm_for_cpu)"),
           8: (Int8Linear, "int8 packed (torch _weight_int8pack_mm, one call per group)")}


def supported(bits: int, group_size: int, device: str) -> bool:
    return bits in KERNELS and device == "cpu" and group_size % 32 == 0


def pack(model, bits: int, group_size: int) -> tuple[torch.nn.Module, dict]:
    """A copy of a GPTQ model (with `quant_grids`) whose 4- and 8-bit layers run on packed kernels;
    the layers left dense are named. Weight bytes are counted from the packed buffers."""
    grids = getattr(model, "quant_grids", None)
    if grids and model.device.type == "cuda":
        return _on_gptqmodel(model, bits, group_size)
    if not grids or not supported(bits, group_size, model.device.type):
        return model, dict(DENSE)
    layer_class, kernel = KERNELS[bits]
    packed_model = copy.deepcopy(model)
    done, dense = 0, []
    for name, grid in grids.items():
        parent_name, _, child = name.rpartition(".")
        parent = packed_model.get_submodule(parent_name)
        linear = getattr(parent, child)
        if linear.in_features % group_size or linear.out_features % 8:
            dense.append(name)
            continue
        setattr(parent, child, layer_class(linear, grid, group_size))
        done += 1
    weight_bytes = sum(b.numel() * b.element_size() for b in packed_model.buffers()) + sum(
        p.numel() * p.element_size() for p in packed_model.parameters())
    return packed_model, {"kernel": kernel, "packed_layers": done, "dense_layers": dense,
                          "packed_weight_bytes": weight_bytes}


def _on_gptqmodel(model, bits: int, group_size: int) -> tuple[torch.nn.Module, dict]:
    """On CUDA: the model written as a GPTQ checkpoint and loaded onto GPTQModel's kernels."""
    import tempfile

    if not gptq_export.available() or bits not in gptq_export.WIDTHS:
        return model, dict(DENSE)
    with tempfile.TemporaryDirectory() as folder:
        packed, kernel = gptq_export.load(gptq_export.export(model, bits, group_size, folder), str(model.device))
    weight_bytes = sum(t.numel() * t.element_size() for t in list(packed.parameters()) + list(packed.buffers()))
    return packed, {"kernel": kernel, "packed_layers": len(model.quant_grids), "dense_layers": [],
                    "packed_weight_bytes": weight_bytes}
