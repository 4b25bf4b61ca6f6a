"""Freed memory handed back to the OS after every forward pass while a model is scored on a CPU.

glibc keeps freed blocks below its dynamic mmap threshold (up to 32 MiB) in its heaps, and a
fragmented heap cannot shrink. LLM.int8()'s CPU path allocates many mid-sized temporaries (fp16
casts, int32 products, outlier columns); scoring Qwen2.5-Coder-1.5B with it grew about 3 GB per
2,048-token window while the live tensors stayed constant, until the kernel was killed at 24 GB.
`malloc_trim(0)` after each forward keeps it flat (0.5B: 9.2 GB after 4 windows without it, 6.2 GB
with it; same perplexity to the last digit) at about 1 ms a call. It changes no number.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only


def trim() -> bool:
    """Return the free pages of every malloc arena to the OS; False where the C library has no malloc_trim."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def release_after_forward(model):
    """Trim the heap after each forward pass of `model` when it computes on a CPU; returns the model."""
    def after_forward(*_):  # returns None: a forward hook's return value would replace the output
        trim()

    if model.device.type == "cpu" and _libc() is not None:
        model.register_forward_hook(after_forward)
    return model
