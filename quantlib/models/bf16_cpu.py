"""bf16 models on CPUs without native bf16 (no AVX512-BF16 or AMX): torch's bf16 matmul there is
emulated and runs at about a fifth of fp32 (2 threads, AVX2: 15 against 77 GFLOP/s), so a bf16 run
would take hours longer, or, with dtype 'auto', turn into a different (fp32) run.

install() computes each plain bf16 nn.Linear in fp32 from its bf16 values whenever the input has
MIN_ROWS rows or more (prefill, perplexity, scoring), and rounds the result back to bf16. Products of
bf16 values are exact in fp32 and the sums are fp32, as in native bf16 kernels: only the summation
order differs. Fewer rows (decoding one token) stay on torch's bf16 path, which is faster there
because it reads half the bytes. Subclasses (bitsandbytes, packed kernels) keep their own forward.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path
from types import MethodType

import torch

MIN_ROWS = 32  # measured crossover on AVX2: 1 row 0.6 ms native vs 5.4 ms upcast; 256 rows 152 vs 30 ms


@cache
def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}


def cpu_has_bf16() -> bool:
    """Native bf16 matmuls on this CPU (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def cpu_has_amx() -> bool:
    """AMX tiles for bf16 matmuls (Intel Sapphire Rapids and later): dense bf16 prefill and scoring
    run much faster than on AVX512-BF16 alone (batch-1 decode, bound by memory, gains little), so it
    changes how quantized kernels compare with dense ones."""
    return "amx_bf16" in _cpu_flags()


def _plain_bf16_linears(model):
    return [m for m in model.modules() if type(m) is torch.nn.Linear and m.weight.dtype == torch.bfloat16]


def needed(model) -> bool:
    """A bf16 model on a CPU that emulates bf16."""
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    return on_cpu and not cpu_has_bf16() and bool(_plain_bf16_linears(model))


def _forward(self, x):
    if x.numel() < MIN_ROWS * x.shape[-1]:
        return torch.nn.functional.linear(x, self.weight, self.bias)
    bias = None if self.bias is None else self.bias.float()
    return torch.nn.functional.linear(x.float(), self.weight.float(), bias).to(x.dtype)


def install(model, force: bool = False) -> int:
    """Route the model's plain bf16 linears through _forward where needed() (or force); returns how
    many linears compute that way (counting any installed before: installing twice is a no-op)."""
    if not (force or needed(model)):
        return 0
    linears = _plain_bf16_linears(model)
    for m in linears:
        if not getattr(m, "bf16_upcast", False):
            m.forward, m.bf16_upcast = MethodType(_forward, m), True
    return len(linears)
