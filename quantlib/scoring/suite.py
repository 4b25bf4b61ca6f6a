"""The benchmark registry: names, titles, headline metrics, groups, chance rules, paper tables.

Each benchmark is one folder of lm-evaluation-harness task YAML plus one entry in the registry
file beside it: the built-in ones in quantlib/tasks/ (benchmarks.yaml), and any folder named in
QUANTLIB_TASK_DIRS (os.pathsep-separated; each holds its own benchmarks.yaml and task folders).
Nothing else names a benchmark: grids with a `limit` score every registered one.
"""
from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import yaml

from quantlib.io import paths


def task_roots() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("QUANTLIB_TASK_DIRS", "").split(os.pathsep) if p]
    return [paths.TASKS] + extra


@cache
def _registry(roots: tuple) -> dict:
    out = {}
    for root in roots:
        for name, entry in (yaml.safe_load((root / "benchmarks.yaml").read_text()) or {}).items():
            if name in out:
                raise ValueError(f"benchmark {name!r} is registered twice ({root})")
            out[name] = entry | {"folder": str(root / name)}
    return out


def registry() -> dict:
    return _registry(tuple(task_roots()))


def task_dir(name: str) -> Path:
    if name not in registry():
        raise KeyError(f"unknown benchmark {name!r}; known: {list(names())}")
    return Path(registry()[name]["folder"])


def names() -> tuple[str, ...]:
    return tuple(registry())


def headline(name: str) -> str:
    return registry()[name]["metrics"][0]


def groups(name: str) -> dict[str, list[str]]:
    """group -> task names (as in the YAML `task:` keys) for benchmarks reported by discipline."""
    f = registry()[name].get("groups")
    return yaml.safe_load((task_dir(name) / f).read_text()) if f else {}
