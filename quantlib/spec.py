"""Run specs: one model x method x bits cell of a grid, validated at the door and named from its content."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from . import benchmarks
from .methods import METHODS
from .models import EMBEDDED

PPL_DATASETS = ("wikitext2", "ptb", "c4")
BENCHMARKS = benchmarks.names()


class SpecError(ValueError):
    """A grid or run spec that cannot be run; the message names the offending field."""


@dataclass(frozen=True)
class Calibration:
    file: str = "calibration/alpaca_en_demo.json"
    n_samples: int = 128
    max_tokens: int = 2048
    seed: int = 0


@dataclass(frozen=True)
class RunSpec:
    model: str
    method: str
    bits: int | None = None          # None: the method's natural width (fp: bf16 on GPU, fp32 on CPU)
    group_size: int | None = None    # None: the method's default (GPTQ 128, SpQR 16)
    calibration: Calibration = field(default_factory=Calibration)
    ppl_datasets: tuple[str, ...] = PPL_DATASETS
    ppl_seqlen: int = 2048
    ppl_limit: int | None = None     # windows per corpus; None = all
    benchmarks: dict = field(default_factory=dict)   # name -> {"limit": int | None}
    speed_prompt_tokens: int = 256
    speed_new_tokens: int = 512
    speed_repeats: int = 3
    outlier_threshold: float | None = None  # SpQR only (0.2 when not given; .inf = no outliers)

    def __post_init__(self):
        if isinstance(self.calibration, dict):
            bad = set(self.calibration) - set(Calibration.__dataclass_fields__)
            if bad:
                raise SpecError(f"unknown calibration field(s): {sorted(bad)}")
            object.__setattr__(self, "calibration", Calibration(**self.calibration))
        if isinstance(self.ppl_datasets, str):
            object.__setattr__(self, "ppl_datasets", (self.ppl_datasets,))
        object.__setattr__(self, "ppl_datasets", tuple(self.ppl_datasets))
        if self.group_size is None:
            object.__setattr__(self, "group_size", 16 if self.method == "spqr" else 128)
        if self.method == "spqr" and self.outlier_threshold is None:
            object.__setattr__(self, "outlier_threshold", 0.2)
        validate(self)
        allowed = METHODS[self.method].bits
        if self.bits is None and len(allowed) == 1:  # bnb-int8 is 8 bits whether or not the grid says so
            object.__setattr__(self, "bits", next(iter(allowed)))

    @property
    def bits_label(self) -> str:
        return METHODS[self.method].label(self.bits)

    @property
    def name(self) -> str:
        """Readable prefix plus a hash of everything else, so equal specs share a folder."""
        is_path = self.model.startswith(("/", ".", "~")) or Path(self.model).exists()
        base = Path(self.model).name if is_path else self.model  # hub ids keep their org
        slug = re.sub(r"[^A-Za-z0-9.]+", "-", base).strip("-").lower()
        return f"{slug}__{self.bits_label}__{self.digest()[:8]}"

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def quant_key(self) -> dict:
        """What determines the quantized weights (the checkpoint-cache key)."""
        key = {"model": self.model, "method": self.method, "bits": self.bits}
        if METHODS[self.method].calibrated:
            key.update(group_size=self.group_size, calibration=asdict(self.calibration))
        if self.outlier_threshold is not None:
            key["outlier_threshold"] = self.outlier_threshold
        return key

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ppl_datasets"] = list(self.ppl_datasets)
        if d["outlier_threshold"] is None:  # absent for methods without outliers: older names stay valid
            del d["outlier_threshold"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        d = dict(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise SpecError(f"unknown spec field(s): {sorted(unknown)}")
        if d.get("calibration") is None:
            d.pop("calibration", None)
        return cls(**d)


def _positive(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise SpecError(f"{name} must be a positive integer, got {value!r}")


def validate(spec: RunSpec) -> None:
    if not isinstance(spec.model, str) or not spec.model:
        raise SpecError("model must be a non-empty string (registry name, hub id or local path)")
    if not (spec.model in EMBEDDED or "/" in spec.model or spec.model.startswith((".", "~"))):
        raise SpecError(f"unknown model {spec.model!r}: not an embedded model ({sorted(EMBEDDED)}), "
                        "a local path or a hub id of the form org/name")
    if spec.method not in METHODS:
        raise SpecError(f"unknown method {spec.method!r}; known: {sorted(METHODS)}")
    allowed = METHODS[spec.method].bits
    if spec.bits is not None and spec.bits not in allowed:
        raise SpecError(f"method {spec.method!r} cannot run at {spec.bits} bits; allowed: {sorted(allowed)}")
    if spec.bits is None and not METHODS[spec.method].default_bits_ok:
        raise SpecError(f"method {spec.method!r} needs bits, one of {sorted(allowed)}")
    _positive("group_size", spec.group_size)
    if spec.outlier_threshold is not None and (spec.method != "spqr" or not isinstance(
            spec.outlier_threshold, (int, float)) or spec.outlier_threshold <= 0):
        raise SpecError(f"outlier_threshold applies to spqr only and must be > 0, got {spec.outlier_threshold!r} "
                        f"for {spec.method!r}")
    _positive("ppl_seqlen", spec.ppl_seqlen)
    _positive("ppl_limit", spec.ppl_limit, allow_none=True)
    for n in ("n_samples", "max_tokens"):
        _positive(f"calibration.{n}", getattr(spec.calibration, n))
    for n in ("speed_prompt_tokens", "speed_new_tokens", "speed_repeats"):
        _positive(n, getattr(spec, n))
    bad = [d for d in spec.ppl_datasets if d not in PPL_DATASETS]
    if bad:
        raise SpecError(f"unknown perplexity dataset(s) {bad}; known: {list(PPL_DATASETS)}")
    if not isinstance(spec.benchmarks, dict):
        raise SpecError("benchmarks must be a mapping name -> {limit: N}")
    for b, opts in spec.benchmarks.items():
        if b not in BENCHMARKS:
            raise SpecError(f"unknown benchmark {b!r}; known: {list(BENCHMARKS)}")
        if not isinstance(opts, dict) or set(opts) - {"limit"}:
            raise SpecError(f"benchmark {b!r} options must be {{limit: N}}, got {opts!r}")
        _positive(f"benchmarks.{b}.limit", opts.get("limit"), allow_none=True)


ENTRY_KEYS = {"method", "bits", "group_size", "outlier_threshold"}
GRID_KEYS = {"models", "methods", "group_size", "calibration", "perplexity", "benchmarks", "efficiency"}


def load_grid(path: str | Path) -> list[RunSpec]:
    """Expand a grid YAML (models x methods x bits) into validated run specs."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"grid file not found: {path}")
    try:
        grid = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"grid file {path} is not valid YAML: {e}") from e
    if not isinstance(grid, dict):
        raise SpecError(f"grid file {path} must be a mapping with keys {sorted(GRID_KEYS)}")
    unknown = set(grid) - GRID_KEYS
    if unknown:
        raise SpecError(f"grid file {path}: unknown key(s) {sorted(unknown)}; known: {sorted(GRID_KEYS)}")
    for k in ("models", "methods"):
        if not grid.get(k) or not isinstance(grid[k], list):
            raise SpecError(f"grid file {path}: '{k}' must be a non-empty list")
    ppl = grid.get("perplexity") or {}
    eff = grid.get("efficiency") or {}
    common = dict(
        group_size=grid.get("group_size"),
        calibration=grid.get("calibration") or {},
        ppl_datasets=ppl.get("datasets", list(PPL_DATASETS)),
        ppl_seqlen=ppl.get("seqlen", 2048),
        ppl_limit=ppl.get("limit"),
        benchmarks={k: (v or {}) for k, v in (grid.get("benchmarks") or {}).items()},
        speed_prompt_tokens=eff.get("prompt_tokens", 256),
        speed_new_tokens=eff.get("new_tokens", 512),
        speed_repeats=eff.get("repeats", 3),
    )
    specs = []
    for model in grid["models"]:
        for entry in grid["methods"]:
            if isinstance(entry, str):
                entry = {"method": entry}
            if not isinstance(entry, dict) or "method" not in entry or set(entry) - ENTRY_KEYS:
                raise SpecError(f"grid file {path}: bad methods entry {entry!r} (keys: {sorted(ENTRY_KEYS)})")
            bits = entry.get("bits")
            extra = {k: entry[k] for k in ("group_size", "outlier_threshold") if k in entry}
            for b in (bits if isinstance(bits, list) else [bits]):
                try:
                    specs.append(RunSpec.from_dict({**common, "model": model, "method": entry["method"], "bits": b,
                                                    **extra}))
                except (SpecError, TypeError) as e:
                    raise SpecError(f"grid file {path}: {e}") from e
    return specs
