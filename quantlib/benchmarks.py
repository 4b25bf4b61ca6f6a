"""The benchmark registry (quantlib/tasks/benchmarks.yaml): names, headline metrics, groups."""
from __future__ import annotations

from functools import cache

import yaml

from . import paths


@cache
def registry() -> dict:
    return yaml.safe_load((paths.TASKS / "benchmarks.yaml").read_text())


def names() -> tuple[str, ...]:
    return tuple(registry())


def headline(name: str) -> str:
    return registry()[name]["metrics"][0]


def groups(name: str) -> dict[str, list[str]]:
    """group -> task names (as in the YAML `task:` keys) for benchmarks reported by discipline."""
    f = registry()[name].get("groups")
    return yaml.safe_load((paths.TASKS / name / f).read_text()) if f else {}
