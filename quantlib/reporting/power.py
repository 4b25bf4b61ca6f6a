"""How many items a benchmark needs to see an effect: the minimum detectable difference (MDD).

A quantized run is compared with its baseline on the same items, so what matters is the spread of
the per-item differences d = quantized - baseline. With n items, a two-sided paired test at level
alpha detects a mean difference of MDD = (z_{1-alpha/2} + z_{power}) * sd(d) / sqrt(n) with the
given power. Before any quantized run exists, sd(d) is planned from the baseline's per-item scores:
Var(d) = 2 * Var(item) * (1 - rho), with rho the correlation of a model's item scores before and
after quantization; once runs exist, sd(d) is measured.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def _z(alpha: float, power: float) -> float:
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def planned_sd(baseline_items, rho: float = 0.5) -> float:
    """sd of the paired differences, planned from the baseline's per-item scores and a correlation rho."""
    x = np.asarray(list(baseline_items), dtype=float)
    return float(math.sqrt(2 * x.var(ddof=1) * (1 - rho))) if len(x) > 1 else float("nan")


def measured_sd(baseline: dict, quantized: dict) -> float:
    """sd of the per-item differences over the items both runs scored ((task, doc) -> score)."""
    keys = sorted(set(baseline) & set(quantized), key=str)
    d = np.array([float(quantized[k]) - float(baseline[k]) for k in keys])
    return float(d.std(ddof=1)) if len(d) > 1 else float("nan")


def mdd(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest mean difference the paired test detects with the given power."""
    return _z(alpha, power) * sd / math.sqrt(n) if n > 0 else float("nan")


def sd_from_mdd(mdd_: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The sd of the paired differences that gives this MDD on n items (the inverse of mdd)."""
    return mdd_ * math.sqrt(n) / _z(alpha, power)


def n_for(sd: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Items needed to detect a mean difference `delta`."""
    return math.ceil((_z(alpha, power) * sd / delta) ** 2)
