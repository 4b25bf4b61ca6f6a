"""Run specs: one model x method x bits cell of a grid, in one serialisable form from grid to record.

A RunSpec is built from a plain mapping (a grid cell, the notebook's `spec` parameter, a record's
spec.json), validated at the door, and resolved: the compute dtype, the method's bits, group size
and full protocol (from the method registry) are filled in, so that `to_dict()` spells out
everything that shapes the run and the run's name is a hash of it. Defaults live here only.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from quantlib.io import files
from quantlib.models import load as loading
from quantlib.quantization import methods
from quantlib.quantization.variant import Calibration, Variant
from quantlib.scoring import suite

PPL_DATASETS = ("wikitext2", "ptb", "c4")


class SpecError(ValueError):
    """A grid or run spec that cannot be run; the message names the offending field."""


@dataclass(frozen=True)
class Perplexity:
    datasets: tuple = PPL_DATASETS
    seqlen: int = 2048
    limit: int | None = None      # windows per corpus; None = all


@dataclass(frozen=True)
class Efficiency:
    prompt_tokens: int = 256
    new_tokens: int = 512
    repeats: int = 3


def _section(cls, value, where: str):
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise SpecError(f"{where} must be a mapping, got {value!r}")
    unknown = set(value) - {f.name for f in fields(cls)}
    if unknown:
        raise SpecError(f"unknown {where} field(s): {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
    return cls(**value)


@dataclass(frozen=True)
class RunSpec:
    model: str
    method: str
    bits: int | None = None          # None: the method's default width (fp: the dtype's)
    group_size: int | None = None    # None: the method's default (GPTQ/RTN 128, SpQR 16)
    params: dict = field(default_factory=dict)   # protocol overrides; resolved to the full protocol
    calibration: Calibration | None = field(default_factory=Calibration)  # None for uncalibrated methods
    dtype: str = "auto"              # compute dtype; 'auto' resolves to bfloat16 where native, else float32
    perplexity: Perplexity = field(default_factory=Perplexity)
    benchmarks: dict = field(default_factory=dict)   # name -> {"limit": int | None}
    efficiency: Efficiency = field(default_factory=Efficiency)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        if not isinstance(self.method, str) or self.method not in methods.registry():
            raise SpecError(f"unknown method {self.method!r}; known: {sorted(methods.registry())}")
        m = methods.get(self.method)
        try:
            set_("dtype", loading.compute_dtype(self.dtype))
            set_("params", m.resolve_params(self.params))
        except ValueError as e:
            raise SpecError(str(e)) from None
        set_("bits", m.resolve_bits(self.bits, self.dtype))
        if self.group_size is None:
            set_("group_size", m.group_size)
        cal = self.calibration if m.calibrated else None
        set_("calibration", _section(Calibration, cal or {}, "calibration") if m.calibrated else None)
        set_("perplexity", _section(Perplexity, self.perplexity, "perplexity"))
        set_("perplexity", Perplexity(tuple([self.perplexity.datasets] if isinstance(self.perplexity.datasets, str)
                                            else self.perplexity.datasets), self.perplexity.seqlen,
                                      self.perplexity.limit))
        set_("efficiency", _section(Efficiency, self.efficiency, "efficiency"))
        validate(self)

    @property
    def method_info(self) -> methods.Method:
        return methods.get(self.method)

    @property
    def label(self) -> str:
        return self.method_info.label(self.bits, self.group_size, self.params, self.dtype)

    @property
    def title(self) -> str:
        return self.method_info.describe(self.bits, self.group_size, self.params, self.dtype)

    @property
    def variant(self) -> Variant:
        """The part of the spec that determines the quantized weights."""
        return Variant(self.model, self.method, self.bits, self.group_size, dict(self.params), self.calibration,
                       self.dtype)

    @property
    def name(self) -> str:
        """Readable prefix plus a hash of everything else, so equal specs share a folder."""
        is_path = self.model.startswith(("/", ".", "~")) or Path(self.model).exists()
        base = Path(self.model).name if is_path else self.model  # hub ids keep their org
        slug = re.sub(r"[^A-Za-z0-9.]+", "-", base).strip("-").lower()
        return f"{slug}__{self.label}__{self.digest()[:8]}"

    def digest(self) -> str:
        return files.digest({**self.to_dict(), "method_version": self.method_info.version})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["perplexity"]["datasets"] = list(self.perplexity.datasets)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        if not isinstance(d, dict):
            raise SpecError(f"a run spec must be a mapping, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise SpecError(f"unknown spec field(s): {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
        try:
            return cls(**d)
        except TypeError as e:
            raise SpecError(str(e)) from None


def _positive(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise SpecError(f"{name} must be a positive integer, got {value!r}")


def validate(spec: RunSpec) -> None:
    if not isinstance(spec.model, str) or not spec.model:
        raise SpecError("model must be a non-empty string (registry name, hub id or local path)")
    if not (loading.is_registered(spec.model) or "/" in spec.model or spec.model.startswith((".", "~"))):
        raise SpecError(f"unknown model {spec.model!r}: not a registered model, a local path or a hub id of "
                        "the form org/name (registered: quantlib/models/registry.yaml)")
    m = spec.method_info
    if spec.bits is None:
        raise SpecError(f"method {spec.method!r} needs bits, one of {sorted(m.bits)}")
    if spec.bits not in m.bits:
        raise SpecError(f"method {spec.method!r} cannot run at {spec.bits} bits; allowed: {sorted(m.bits)}")
    if m.group_size is None and spec.group_size is not None:
        raise SpecError(f"method {spec.method!r} takes no group_size")
    if m.group_size is not None:
        _positive("group_size", spec.group_size)
    thr = spec.params.get("outlier_threshold")
    if thr is not None and (not isinstance(thr, (int, float)) or thr <= 0):
        raise SpecError(f"params.outlier_threshold must be > 0, got {thr!r}")
    _positive("perplexity.seqlen", spec.perplexity.seqlen)
    _positive("perplexity.limit", spec.perplexity.limit, allow_none=True)
    if spec.calibration is not None:
        for n in ("n_samples", "max_tokens"):
            _positive(f"calibration.{n}", getattr(spec.calibration, n))
    for n in ("prompt_tokens", "new_tokens", "repeats"):
        _positive(f"efficiency.{n}", getattr(spec.efficiency, n))
    bad = [d for d in spec.perplexity.datasets if d not in PPL_DATASETS]
    if bad:
        raise SpecError(f"unknown perplexity dataset(s) {bad}; known: {list(PPL_DATASETS)}")
    if not isinstance(spec.benchmarks, dict):
        raise SpecError("benchmarks must be a mapping name -> {limit: N}")
    for b, opts in spec.benchmarks.items():
        if b not in suite.names():
            raise SpecError(f"unknown benchmark {b!r}; known: {list(suite.names())}")
        if not isinstance(opts, dict) or set(opts) - {"limit"}:
            raise SpecError(f"benchmark {b!r} options must be {{limit: N}}, got {opts!r}")
        _positive(f"benchmarks.{b}.limit", opts.get("limit"), allow_none=True)


# Grids: models x methods x bits, plus the run settings every cell shares (the RunSpec fields).
ENTRY_KEYS = {"method", "bits", "group_size", "params", "calibration"}
GRID_KEYS = {"include", "models", "methods", "limit", "group_size", "calibration", "dtype", "perplexity",
             "benchmarks", "efficiency"}


def _read_grid(path: Path, seen=()) -> dict:
    """A grid file's mapping over the grid it includes: this file's keys win; the settings sections
    (calibration, perplexity, efficiency) merge field by field; `benchmarks` replaces the included one."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"grid file not found: {path}")
    if path.resolve() in seen:
        raise SpecError(f"grid file {path} includes itself")
    try:
        grid = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"grid file {path} is not valid YAML: {e}") from e
    if not isinstance(grid, dict):
        raise SpecError(f"grid file {path} must be a mapping with keys {sorted(GRID_KEYS)}")
    unknown = set(grid) - GRID_KEYS
    if unknown:
        raise SpecError(f"grid file {path}: unknown key(s) {sorted(unknown)}; known: {sorted(GRID_KEYS)}")
    if "include" not in grid:
        return grid
    base = _read_grid(path.parent / grid.pop("include"), seen + (path.resolve(),))
    for k, v in grid.items():
        merge = k != "benchmarks" and isinstance(v, dict) and isinstance(base.get(k), dict)
        base[k] = {**base[k], **v} if merge else v
    return base


def grid_models(path: str | Path) -> list[str]:
    """The models a grid file names (after its includes)."""
    return list(_read_grid(Path(path)).get("models") or [])


def load_grid(path: str | Path) -> list[RunSpec]:
    """Expand a grid YAML (models x methods x bits) into validated run specs.

    `limit` sets the limit of every registered benchmark; `benchmarks` overrides it per benchmark
    (limit: null = the whole set, skip: a benchmark left out). Without `limit`, only the benchmarks
    listed are scored."""
    path = Path(path)
    grid = _read_grid(path)
    for k in ("models", "methods"):
        if not grid.get(k) or not isinstance(grid[k], list):
            raise SpecError(f"grid file {path}: '{k}' must be a non-empty list")
    listed = grid.get("benchmarks") or {}
    if not isinstance(listed, dict):
        raise SpecError(f"grid file {path}: 'benchmarks' must be a mapping name -> {{limit: N}} or skip")
    names = suite.names() if "limit" in grid else list(listed)
    bench = {n: ({"limit": grid.get("limit")} if listed.get(n) is None else listed[n]) for n in names}
    bench = {n: v for n, v in bench.items() if v != "skip"}
    common = {k: grid[k] for k in ("group_size", "calibration", "dtype", "perplexity", "efficiency") if k in grid}
    specs = []
    for model in grid["models"]:
        for entry in grid["methods"]:
            if isinstance(entry, str):
                entry = {"method": entry}
            if not isinstance(entry, dict) or "method" not in entry or set(entry) - ENTRY_KEYS:
                raise SpecError(f"grid file {path}: bad methods entry {entry!r} (keys: {sorted(ENTRY_KEYS)})")
            bits = entry.get("bits")
            m = methods.registry().get(entry["method"])
            cell = dict(common)
            if m is not None and m.group_size is None:
                cell.pop("group_size", None)   # the grid's group size is for grouped methods
            cell.update({k: entry[k] for k in ("group_size", "params") if k in entry})
            if "calibration" in entry:  # e.g. a seed per entry: merged over the grid's calibration
                cell["calibration"] = {**cell.get("calibration", {}), **entry["calibration"]}
            for b in (bits if isinstance(bits, list) else [bits]):
                try:
                    specs.append(RunSpec.from_dict({**cell, "model": model, "method": entry["method"], "bits": b,
                                                    "benchmarks": bench}))
                except SpecError as e:
                    raise SpecError(f"grid file {path}: {e}") from e
    return specs
