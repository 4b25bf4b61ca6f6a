"""GPTQ weights as a GPTQ checkpoint, for GPTQ's own kernels on GPUs.

A GPTQ model of this project (dequantized weights plus `quant_grids`) is written in the GPTQ
checkpoint format (AutoGPTQ's v1, `checkpoint_format: gptq`) and loaded back through transformers'
GPTQ integration, which hands each layer to a GPTQModel kernel (Marlin, ExLlama, ...; the torch one on
CPU). Per quantized linear layer:

    qweight [K * bits / 32, N] int32   codes q[n, k] packed along K, 32 / bits per word, low bits first
    qzeros  [G, N * bits / 32] int32   zero points minus one (v1's offset), packed along N
    scales  [G, N] fp16                W[n, k] = scales[g_idx[k], n] * (q[n, k] - zero[g_idx[k], n])
    g_idx   [K] int32                  each input column's group: under act-order GPTQ's groups are
                                       consecutive in the permuted order, so g_idx[k] = rank of k // group

Bit widths that divide 32 (2, 4, 8) are written; 3 bits (codes across word boundaries) are not.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from quantlib.quantization.grid_codes import codes

WIDTHS = (2, 4, 8)


def _pack(values: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Pack non-negative integers < 2**bits along `dim`, 32 / bits per int32 word, low bits first."""
    per = 32 // bits
    v = values.long().movedim(dim, 0)
    v = v.reshape(v.shape[0] // per, per, *v.shape[1:])
    shifts = (torch.arange(per) * bits).reshape(per, *[1] * (v.dim() - 2))
    words = (v << shifts).sum(1)                       # disjoint bit fields: the sum is the bitwise or
    words = torch.where(words >= 2**31, words - 2**32, words)
    return words.to(torch.int32).movedim(0, dim)


def pack_layer(linear: torch.nn.Linear, grid: dict, bits: int, group_size: int) -> dict[str, torch.Tensor]:
    """One quantized linear layer's tensors in the GPTQ checkpoint format."""
    if bits not in WIDTHS:
        raise ValueError(f"GPTQ checkpoints hold {WIDTHS}-bit codes here, not {bits}")
    q, scale, zero, perm = codes(linear, grid, group_size, 2**bits - 1)   # q in permuted order
    K = linear.in_features
    rank = torch.argsort(perm) if perm is not None else torch.arange(K)            # column k sits at rank[k]
    ordered = q[:, rank]                                                             # [N, K], original order
    out = {"qweight": _pack(ordered.t(), bits, 0),
           "qzeros": _pack(zero.t() - 1, bits, 1),
           "scales": scale.t().to(torch.float16).contiguous(),
           "g_idx": (rank // group_size).to(torch.int32)}
    if linear.bias is not None:
        out["bias"] = linear.bias.data.to(torch.float16)
    return out


def quantization_config(model, bits: int, group_size: int) -> dict:
    grids = model.quant_grids
    desc_act = any(not torch.equal(g["perm"].long(), torch.arange(len(g["perm"]))) for g in grids.values())
    sym = all(bool((g["zero"] == 2 ** (bits - 1)).all()) for g in grids.values())
    return {"quant_method": "gptq", "bits": bits, "group_size": group_size, "desc_act": desc_act, "sym": sym,
            "checkpoint_format": "gptq"}


def export(model, bits: int, group_size: int, folder: Path) -> Path:
    """Write a GPTQ model as a GPTQ checkpoint (config.json with its quantization_config, one
    safetensors file; everything not quantized in fp16)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    quantized = {}
    for name, grid in model.quant_grids.items():
        for key, t in pack_layer(model.get_submodule(name), grid, bits, group_size).items():
            quantized[f"{name}.{key}"] = t
    dense = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in model.state_dict().items()
             if k.rsplit(".", 1)[0] not in model.quant_grids}
    if model.config.tie_word_embeddings:
        dense.pop("lm_head.weight", None)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in {**dense, **quantized}.items()}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    config = model.config.to_dict() | {"quantization_config": quantization_config(model, bits, group_size),
                                       "torch_dtype": "float16", "dtype": "float16"}
    (folder / "config.json").write_text(json.dumps(config, indent=2, default=str))
    return folder


def available() -> bool:
    """Whether transformers can load GPTQ checkpoints here (GPTQModel and optimum installed)."""
    from transformers.utils import is_gptqmodel_available, is_optimum_available

    return is_gptqmodel_available() and is_optimum_available()


def load(folder: Path, device: str):
    """A GPTQ checkpoint on GPTQModel's kernels, and the kernel's name (its QuantLinear class)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, device_map=device, dtype=torch.float16).eval()
    layer = next((type(m).__name__ for m in model.modules() if "QuantLinear" in type(m).__name__), "none")
    return model, f"GPTQModel {layer}"
