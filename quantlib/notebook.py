"""Glue between the papermill template's flat parameters and a RunSpec."""
from __future__ import annotations

from . import benchmarks
from .spec import RunSpec, SpecError

BENCH_LIMITS = {b: f"{b}_limit" for b in benchmarks.names()}  # limit 0: skip, None: whole test set

# name -> default: the template's `parameters` cell must define exactly these (tests check it)
PARAMETERS = {
    "model": "smollm2-135m-instruct", "method": "fp", "bits": None, "group_size": None,
    "calib_file": "calibration/alpaca_en_demo.json", "calib_samples": 128, "calib_max_tokens": 2048,
    "calib_seed": 0, "ppl_datasets": ["wikitext2"], "ppl_seqlen": 2048, "ppl_limit": 1,
    **{k: 0 for k in BENCH_LIMITS.values()}, "speed_prompt_tokens": 256, "speed_new_tokens": 16,
    "speed_repeats": 1, "outlier_threshold": None, "run_dir": "",
    # not part of the spec: False when other runs share the machine, so that speed is measured
    # afterwards, alone (python -m quantlib.efficiency)
    "measure_speed": True,
}


def unknown_parameters(names) -> list[str]:
    """Names injected by papermill that the template does not know (papermill only warns)."""
    return sorted(n for n in names if not n.startswith("_") and n not in PARAMETERS)


def to_spec(p: dict) -> RunSpec:
    benchmarks = {b: {"limit": p[k]} for b, k in BENCH_LIMITS.items() if p[k] != 0}
    return RunSpec.from_dict(dict(
        model=p["model"], method=p["method"], bits=p["bits"], group_size=p["group_size"],
        calibration=dict(file=p["calib_file"], n_samples=p["calib_samples"],
                         max_tokens=p["calib_max_tokens"], seed=p["calib_seed"]),
        ppl_datasets=p["ppl_datasets"], ppl_seqlen=p["ppl_seqlen"], ppl_limit=p["ppl_limit"],
        benchmarks=benchmarks, speed_prompt_tokens=p["speed_prompt_tokens"],
        speed_new_tokens=p["speed_new_tokens"], speed_repeats=p["speed_repeats"],
        outlier_threshold=p["outlier_threshold"]))


def from_spec(spec: RunSpec, run_dir: str, measure_speed: bool = True) -> dict:
    p = dict(model=spec.model, method=spec.method, bits=spec.bits, group_size=spec.group_size,
             calib_file=spec.calibration.file, calib_samples=spec.calibration.n_samples,
             calib_max_tokens=spec.calibration.max_tokens, calib_seed=spec.calibration.seed,
             ppl_datasets=list(spec.ppl_datasets), ppl_seqlen=spec.ppl_seqlen, ppl_limit=spec.ppl_limit,
             speed_prompt_tokens=spec.speed_prompt_tokens, speed_new_tokens=spec.speed_new_tokens,
             speed_repeats=spec.speed_repeats, outlier_threshold=spec.outlier_threshold, run_dir=run_dir,
             measure_speed=measure_speed)
    for b, k in BENCH_LIMITS.items():
        p[k] = spec.benchmarks[b].get("limit") if b in spec.benchmarks else 0
    assert set(p) == set(PARAMETERS)
    return p


def check(namespace: dict, before: set) -> dict:
    """Validate what papermill injected; returns the parameters as a dict."""
    unknown = unknown_parameters(set(namespace) - before)
    if unknown:
        raise SpecError(f"unknown notebook parameter(s) {unknown}; known: {sorted(PARAMETERS)}")
    return {k: namespace[k] for k in PARAMETERS}
