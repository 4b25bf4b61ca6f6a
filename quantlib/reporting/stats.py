"""Uncertainty and paired tests from the per-item records (data/runs/*/samples/<benchmark>.jsonl).

Every headline score gets a bootstrap confidence interval over items; every quantized run is compared
with its model's baseline on the same items: the share of items whose outcome flips, and a paired test
(exact McNemar for right/wrong outcomes, Wilcoxon signed-rank for graded ones, a paired bootstrap for
corpus BLEU).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

SEED = 0
BLEU_TOKENIZE = {"flores_en_zh": "zh", "flores_zh_en": "13a"}


def items(samples: Path, metric: str) -> dict:
    """(task, doc_id) -> the item's value of `metric` (a number, or a (reference, hypothesis) pair for BLEU)."""
    out = {}
    for line in Path(samples).read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r.get(metric) is not None:
            out[(r["task"], r["doc_id"])] = r[metric]
    return out


def _resampler(name: str, values: list):
    """idx -> the headline statistic of each bootstrap resample (one row of item indices per resample):
    the mean, or for FLORES corpus BLEU from per-item n-gram statistics summed over the resample, the
    method of sacrebleu's own paired bootstrap (sacrebleu.significance): equal to corpus_bleu on the
    resampled items, without re-tokenizing them for every resample."""
    if name not in BLEU_TOKENIZE:
        x = np.asarray(values, dtype=float)
        return lambda idx: x[idx].mean(axis=1)
    from sacrebleu.metrics import BLEU

    bleu = BLEU(tokenize=BLEU_TOKENIZE[name])
    refs, hyps = zip(*values)
    per_item = np.asarray(bleu._extract_corpus_statistics([h.strip() for h in hyps], [list(refs)]))
    return lambda idx: np.array([bleu._compute_score_from_stats(s.tolist()).score for s in per_item[idx].sum(axis=1)])


def _resamples(name: str, n: int, seed: int = SEED, size: int | None = None) -> np.ndarray:
    """The item indices of each resample (by default 1000 for corpus BLEU, 2000 for means)."""
    size = size or (1000 if name in BLEU_TOKENIZE else 2000)
    return np.random.default_rng(seed).integers(0, n, size=(size, n))


def _interval(x, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(x, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(values, level: float = 0.95, n_resamples: int | None = None, seed: int = SEED,
                 name: str = "") -> tuple[float, float]:
    """Percentile bootstrap over items (resampled with replacement) of benchmark `name`'s statistic."""
    values = list(values)
    if len(values) < 2:
        return (float("nan"), float("nan"))
    return _interval(_resampler(name, values)(_resamples(name, len(values), seed, n_resamples)), level)


def holm(p: dict, alpha: float) -> set:
    """Holm's step-down procedure: the keys of `p` (test -> p-value) rejected with the family-wise error
    held at alpha over all len(p) tests: the i-th smallest p (from 0) must be at most alpha / (m - i)."""
    rejected = set()
    for i, (key, value) in enumerate(sorted(p.items(), key=lambda kv: kv[1])):
        if value > alpha / (len(p) - i):
            break
        rejected.add(key)
    return rejected


def mcnemar(a, b) -> dict:
    """Exact McNemar test for paired right/wrong outcomes: a binomial test on the discordant pairs."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    n01, n10 = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if n01 + n10 == 0 else float(stats.binomtest(n01, n01 + n10, 0.5).pvalue)
    return {"only_first": n01, "only_second": n10, "p": p}


def paired(name: str, base: list, quant: list, level: float = 0.95, power: float = 0.8) -> dict:
    """The change from the baseline on the same items: its value, a paired bootstrap interval, the
    minimum detectable difference (MDD) of these n items, (z_{1-alpha/2} + z_power) times the bootstrap
    standard error of the difference (quantlib.reporting.power, with the measured spread; NaN when no
    item changed), and the p-value of 'quantized differs from baseline': exact McNemar for right/wrong
    outcomes, Wilcoxon signed-rank for graded ones, the two-sided paired bootstrap for corpus BLEU."""
    n = len(base)
    if n < 2:
        return {}
    idx = _resamples(name, n)
    if name in BLEU_TOKENIZE:
        fq, fb, whole = _resampler(name, quant), _resampler(name, base), np.arange(n)[None]
        deltas, observed = fq(idx) - fb(idx), float(fq(whole)[0] - fb(whole)[0])
        p = float(min(1.0, 2 * min((deltas <= 0).mean(), (deltas >= 0).mean()))) if observed else 1.0
    else:
        x, y = np.asarray(base, dtype=float), np.asarray(quant, dtype=float)
        deltas, observed = (y - x)[idx].mean(axis=1), float(np.mean(y) - np.mean(x))
        if set(np.unique(np.r_[x, y])) <= {0.0, 1.0}:
            p = mcnemar(x, y)["p"]
        else:
            p = 1.0 if np.allclose(x, y) else float(stats.wilcoxon(x, y, zero_method="zsplit").pvalue)
    lo, hi = _interval(deltas, level)
    z = stats.norm.ppf((1 + level) / 2) + stats.norm.ppf(power)
    # no item changed: the spread of the differences is not estimable from these runs, so no MDD
    # (the plug-in value, 0, would claim that any difference is detectable)
    sd = deltas.std(ddof=1)
    return {"p": p, "delta": observed, "delta_lo": lo, "delta_hi": hi, "mdd": float(z * sd) if sd > 0 else float("nan")}


def benchmark_stats(name: str, metric: str, run_samples: Path, base_samples: Path | None) -> dict:
    """CI of the headline metric, and against the baseline: flip share, paired p-value, items compared."""
    run = items(run_samples, metric)
    out = dict(zip(("ci_lo", "ci_hi"), bootstrap_ci(list(run.values()), name=name)))
    if base_samples is not None and base_samples.exists() and base_samples != run_samples:
        base = items(base_samples, metric)
        keys = sorted(set(base) & set(run), key=str)
        if keys:
            b, q = [base[k] for k in keys], [run[k] for k in keys]
            binary = name not in BLEU_TOKENIZE and set(np.unique(np.r_[b, q]).tolist()) <= {0.0, 1.0}
            vs = paired(name, b, q)
            out.update(paired_n=len(keys), p=vs.pop("p", None),
                       flips=float(np.mean(np.asarray(b) != np.asarray(q))) if binary else None, **vs)
    return out


def correlation(x, y, level: float = 0.95) -> dict:
    """Pearson (with its exact-t interval) and Spearman (Fisher-z interval, SE 1.06/sqrt(n-3),
    Fieller et al. 1957) between two paired series; NaN where fewer than 4 pairs."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    out = {"n": n}
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out | dict.fromkeys(("pearson", "pearson_lo", "pearson_hi", "spearman", "spearman_lo", "spearman_hi"),
                                   float("nan"))
    pr = stats.pearsonr(x, y)
    ci = pr.confidence_interval(confidence_level=level)
    rho = float(stats.spearmanr(x, y).statistic)
    z, half = np.arctanh(np.clip(rho, -0.999999, 0.999999)), stats.norm.ppf((1 + level) / 2) * 1.06 / np.sqrt(n - 3)
    return out | {"pearson": float(pr.statistic), "pearson_lo": float(ci.low), "pearson_hi": float(ci.high),
                  "spearman": rho, "spearman_lo": float(np.tanh(z - half)), "spearman_hi": float(np.tanh(z + half))}


def perplexity_stats(nll: list, base_nll: list | None = None, level: float = 0.95) -> dict:
    """Perplexity with a bootstrap interval over windows and, against the baseline on the same
    windows, the ratio of perplexities with a paired interval (windows resampled together)."""
    x = np.asarray(nll, dtype=float)
    if len(x) < 2:
        return {}
    rng = np.random.default_rng(SEED)
    idx = rng.integers(0, len(x), size=(2000, len(x)))
    q = [(1 - level) / 2, (1 + level) / 2]
    lo, hi = np.exp(np.quantile(x[idx].mean(axis=1), q))
    out = {"ppl_lo": float(lo), "ppl_hi": float(hi)}
    if base_nll is not None and len(base_nll) == len(x):
        d = x - np.asarray(base_nll, dtype=float)
        rlo, rhi = np.exp(np.quantile(d[idx].mean(axis=1), q))
        out.update(ratio=float(np.exp(d.mean())), ratio_lo=float(rlo), ratio_hi=float(rhi))
    return out
