"""The method registry: the one owner of what a quantization method is.

A Method says which bits it accepts, its default group size, its protocol parameters (with
defaults; a grid may override them), whether its runs compute with dense kernels, how it is
labelled and drawn, how many bits it stores, and how it quantizes (`load(variant, method) -> (model, info)`).
Everything else (specs, the runner, the summary, the book) asks this registry.

A new method is one module that calls `register(Method(...))`; name it in QUANTLIB_PLUGINS
(comma-separated module names) to load it everywhere, papermill kernels included.
"""
from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from quantlib.models import bf16_cpu
from quantlib.quantization import bnb, bnb_dense, calibrated, gptq, kernels, layerwise, rtn, spqr
from quantlib.quantization import calibration as calibration_module

DTYPE_BITS = {"float32": 32, "bfloat16": 16, "float16": 16}
DTYPE_LABEL = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


@dataclass(frozen=True)
class Method:
    name: str
    title: str                       # for prose and legends: "GPTQ"
    bits: tuple                      # widths it accepts
    load: Callable                   # (variant, method) -> (model, info)
    doc: str
    default_bits: int | None = None  # width when a grid gives none (None: the grid must say)
    group_size: int | None = None    # default group size (None: not grouped)
    params: dict = field(default_factory=dict)        # protocol parameters -> defaults
    param_labels: dict = field(default_factory=dict)  # parameter -> value -> label suffix
    calibrated: bool = False         # needs calibration data
    dense: bool = True               # computes with dense kernels (its speed is the baseline's)
    line: bool = False               # drawn as a line over bits (else as points)
    color: str = "#4d4d4d"
    marker: str = "o"
    version: str = "1"               # bump when the algorithm's output changes on purpose
    code: tuple = ()                 # modules whose source shapes the output (hashed into cache keys)
    layer_bytes: Callable | None = None  # (rows, columns, bits, group_size, params, stats) -> stored bytes
    pack: Callable | None = None     # (model, bits, group_size) -> (model on packed kernels, kernel info)
    score: Callable | None = None    # (model, variant) -> scoring info, after timing: the model to score in place
    paper: str | None = None         # the method's name in the paper's tables (QUANTLIB_PAPER_DIR)

    def resolve_bits(self, bits, dtype: str):
        if bits is None and self.name == "fp":
            return DTYPE_BITS[dtype]
        if bits is None and self.default_bits is not None:
            return self.default_bits
        return bits

    def resolve_params(self, given: dict | None) -> dict:
        unknown = set(given or {}) - set(self.params)
        if unknown:
            raise ValueError(f"method {self.name!r} has no parameter(s) {sorted(unknown)}; "
                             f"its protocol: {self.params or 'none'}")
        return {**self.params, **(given or {})}

    def label(self, bits, group_size, params: dict, dtype: str) -> str:
        """Short variant name for tables and legends: fp32, bnb-nf4, gptq-4b, spqr-2b-g128-no-outliers."""
        if self.name == "fp":
            return DTYPE_LABEL[dtype]
        out = self.name if len(self.bits) == 1 else f"{self.name}-{bits}b"
        if self.group_size is not None and group_size != self.group_size:
            out += f"-g{group_size}"
        for k, v in params.items():
            if v != self.params[k]:
                out += "-" + self.param_labels.get(k, {}).get(v, f"{k}{v}")
        return out

    def describe(self, bits, group_size, params: dict, dtype: str) -> str:
        """Readable title of a variant: 'SpQR 2-bit, group 128, no outliers'."""
        if self.name == "fp":
            return f"baseline ({DTYPE_LABEL[dtype]})"
        out = self.title if len(self.bits) == 1 else f"{self.title} {bits}-bit"
        extra = [f"group {group_size}"] if self.group_size is not None and group_size != self.group_size else []
        extra += [self.param_labels.get(k, {}).get(v, f"{k} {v}").replace("-", " ")
                  for k, v in params.items() if v != self.params[k]]
        return ", ".join([out] + extra)

    def stored_bits(self, info: dict) -> float:
        """Bits per weight of the quantized linear layers as stored (codes + statistics + outliers)."""
        if "quantized_linear_packed_bytes" not in info:
            return float(DTYPE_BITS[info["dtype"]])
        return 8 * info["quantized_linear_packed_bytes"] / info["quantized_linear_params"]


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def _gptq_bytes(rows, columns, bits, group_size, params, stats):
    return gptq.packed_bytes(rows, columns, bits, group_size, params.get("actorder", False))


def _spqr_bytes(rows, columns, bits, group_size, params, stats):
    frac = stats["outliers"] / stats["weights"]
    return int(spqr.effective_bits(bits, group_size, frac, params["qq_bits"], params["beta2"], rows=rows)
               * rows * columns / 8)


CAL = (calibrated, layerwise, calibration_module)
register(Method("fp", "full precision", (16, 32), calibrated.load_fp, "the baseline: bf16 where the hardware "
                "computes it natively (CUDA, CPUs with AVX512-BF16), else fp32", color="#4d4d4d", marker="*",
                paper="bf16"))
register(Method("bnb-int8", "LLM.int8()", (8,), bnb.load_int8, "LLM.int8() (bitsandbytes), outlier threshold 6; "
                "on CPU its int8 matmul casts activations to fp16", default_bits=8, dense=False,
                color="#0173b2", marker="s", code=(bnb,), paper="llm.int8"))
BNB_4BIT = ("block 64, compute in the run's dtype; timed on bitsandbytes' kernel, scored on a CPU on the dense "
            "weights that kernel computes with (bnb_dense)")
register(Method("bnb-nf4", "NF4", (4,), bnb.load_4bit("nf4"), f"bitsandbytes NF4, {BNB_4BIT}", default_bits=4,
                dense=False, color="#029e73", marker="^", code=(bnb, bnb_dense), score=bnb_dense.densify))
register(Method("bnb-fp4", "FP4", (4,), bnb.load_4bit("fp4"), f"bitsandbytes FP4, {BNB_4BIT}", default_bits=4,
                dense=False, color="#d55e00", marker="v", code=(bnb, bnb_dense), score=bnb_dense.densify))
register(Method("rtn", "RTN", (2, 3, 4, 8), calibrated.load_rtn, "round-to-nearest on GPTQ's grid (group 128), "
                "no calibration: the floor GPTQ must beat", group_size=128, params={"sym": True},
                param_labels={"sym": {False: "asym"}}, line=True, color="#ca9161", marker="x",
                code=(rtn, gptq, layerwise, calibrated), layer_bytes=_gptq_bytes))
register(Method("gptq", "GPTQ", (2, 3, 4, 8), calibrated.load_layerwise(gptq.GPTQ), "GPTQ, group 128, act-order, "
                "damp 0.01, symmetric (the paper's setting)", group_size=128,
                params={"percdamp": 0.01, "actorder": True, "sym": True},
                param_labels={"sym": {False: "asym"}, "actorder": {False: "no-actorder"}},
                calibrated=True, line=True, color="#cc78bc", marker="o", code=(gptq,) + CAL, layer_bytes=_gptq_bytes,
                pack=kernels.pack, paper="gptq"))
register(Method("spqr", "SpQR", (2, 3, 4, 8), calibrated.load_layerwise(spqr.SpQR), "SpQR (simulated), group 16, "
                "3-bit statistics in groups of 16, outlier threshold 0.2, act-order", group_size=16,
                params={"percdamp": 0.01, "actorder": True, "outlier_threshold": 0.2, "qq_bits": 3, "beta2": 16},
                param_labels={"outlier_threshold": {math.inf: "no-outliers"}}, calibrated=True, line=True,
                color="#de8f05", marker="D", code=(spqr, gptq) + CAL, layer_bytes=_spqr_bytes, paper="spqr"))

def registry() -> dict[str, Method]:
    """Every method: the built-in ones above, plus those the modules named in QUANTLIB_PLUGINS register."""
    for module in filter(None, os.environ.get("QUANTLIB_PLUGINS", "").split(",")):
        importlib.import_module(module.strip())  # imported once; its register() calls fill METHODS
    return METHODS


def get(name: str) -> Method:
    if name not in registry():
        raise KeyError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name]


def speed_model(variant, model) -> tuple:
    """The model whose memory and decode speed a run reports, and the kernel it computes with:
    GPTQ's packed copy where its kernel exists (4 bits on CPU), else the scored model itself."""
    method = get(variant.method)
    if method.pack is not None:
        packed, info = method.pack(model, variant.bits, variant.group_size)
        if info["packed_layers"]:
            return packed, info
    kernel = "dense (dequantized weights)" if method.dense and method.name != "fp" else (
        "dense" if method.dense else f"{method.title} (bitsandbytes)")
    return model, {"kernel": kernel}


def score_model(variant, model) -> dict:
    """Prepare the timed model for scoring, in place (bitsandbytes 4-bit on a CPU: dense copies of its
    layers); returns what to record about it."""
    method = get(variant.method)
    return method.score(model, variant) if method.score is not None else {}


def weights_key(variant, info: dict) -> dict:
    """What results computed on these weights are keyed by: the variant's key, with the algorithm's
    code hash replaced by the checksum of the weights it produced where the method stores them
    (GPTQ, SpQR): a code change that leaves the weights unchanged keeps the results, one that
    changes them misses."""
    key = variant.key()
    if info.get("weights_sha256"):
        key = {k: v for k, v in key.items() if k != "code_sha256"} | {"weights_sha256": info["weights_sha256"]}
    return key


def load(variant):
    """The one entry point: the quantized model of a variant, plus what to record about it."""
    method = get(variant.method)
    model, info = method.load(variant, method)
    emulated = bf16_cpu.install(model)  # bf16 on a CPU without native bf16: computed in fp32 (bf16_cpu)
    return model, info | {"stored_bits": method.stored_bits(info)} | (
        {"bf16_emulated_linears": emulated} if emulated else {})
