"""The statistics, on synthetic data with known answers."""
import json
import math

import numpy as np
import pytest

from quantlib.reporting import stats
from quantlib.tasks.common import corpus_bleu


def test_bootstrap_ci_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    p, n, reps = 0.3, 120, 300
    hits = 0
    for r in range(reps):
        x = rng.random(n) < p
        lo, hi = stats.bootstrap_ci(x.astype(float), n_resamples=1000, seed=r)
        hits += lo <= p <= hi
    assert 0.90 <= hits / reps <= 0.98  # 95% nominal; the percentile bootstrap runs slightly narrow


def test_holm_steps_down_until_a_p_value_misses_its_threshold():
    # 4 tests at 0.05: thresholds 0.0125, 0.0167, 0.025, 0.05; 0.03 misses the third, so it and 0.04 stay
    assert stats.holm({"a": 0.001, "b": 0.03, "c": 0.04, "d": 0.011}, 0.05) == {"a", "d"}
    assert stats.holm({"a": 0.04}, 0.05) == {"a"} and stats.holm({}, 0.05) == set()
    # under the null, uncorrected tests reject somewhere in ~46% of 12-test families; Holm in at most 5%
    rng = np.random.default_rng(0)
    families = [dict(enumerate(rng.random(12))) for _ in range(2000)]
    assert np.mean([bool(stats.holm(f, 0.05)) for f in families]) <= 0.06
    assert np.mean([min(f.values()) < 0.05 for f in families]) > 0.4


def test_mcnemar_exact_p_on_a_hand_made_table():
    # 1 item right only in the first run, 9 right only in the second, 5 right in both, 5 wrong in both
    a = [1] * 1 + [0] * 9 + [1] * 5 + [0] * 5
    b = [0] * 1 + [1] * 9 + [1] * 5 + [0] * 5
    r = stats.mcnemar(a, b)
    assert (r["only_first"], r["only_second"]) == (1, 9)
    assert r["p"] == pytest.approx(2 * 11 / 1024)  # 2 P(X <= 1), X ~ Bin(10, 1/2)
    assert stats.mcnemar([1, 0, 1], [1, 0, 1])["p"] == 1.0


def _write(path, task_values, metric="acc"):
    path.write_text("".join(json.dumps({"task": "t", "doc_id": i, metric: v}) + "\n"
                            for i, v in enumerate(task_values)))
    return path


def test_benchmark_stats_pairs_items_and_counts_flips(tmp_path):
    base = _write(tmp_path / "base.jsonl", [1, 1, 1, 1, 0, 0, 0, 0])
    quant = _write(tmp_path / "quant.jsonl", [1, 0, 0, 0, 0, 0, 0, 1])
    s = stats.benchmark_stats("mmlu", "acc", quant, base)
    assert s["paired_n"] == 8 and s["flips"] == pytest.approx(4 / 8)
    assert s["p"] == pytest.approx(stats.mcnemar([1, 1, 1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 1])["p"])
    assert s["ci_lo"] <= 0.25 <= s["ci_hi"]


def test_no_mdd_when_no_item_changed():
    scores = [1.0, 0.5, 0.0, 1.0, 0.2]
    same = stats.paired("followbench", scores, scores)
    assert same["delta"] == 0 and same["p"] == 1.0 and math.isnan(same["mdd"])
    moved = stats.paired("followbench", scores, [1.0, 0.5, 0.0, 1.0, 0.4])
    assert moved["mdd"] > 0


def test_graded_scores_use_a_signed_rank_test(tmp_path):
    base = _write(tmp_path / "b.jsonl", [30.0, 40.0, 25.0, 50.0, 35.0, 45.0], "rougeL")
    quant = _write(tmp_path / "q.jsonl", [10.0, 12.0, 5.0, 20.0, 15.0, 11.0], "rougeL")
    s = stats.benchmark_stats("xsum", "rougeL", quant, base)
    assert s["flips"] is None and s["p"] == pytest.approx(0.03125)  # all 6 differences one way: 2/2^6


def test_bleu_interval_recomputes_corpus_bleu(tmp_path):
    pairs = [["a b c d e f", "a b c d e f"], ["g h i j k l", "g h i j k m"], ["m n o p", "m n o p"]]
    f = _write(tmp_path / "f.jsonl", pairs, "bleu")
    s = stats.benchmark_stats("flores_zh_en", "bleu", f, None)
    assert s["ci_lo"] <= corpus_bleu(pairs, "13a") <= s["ci_hi"] <= 100 + 1e-9


@pytest.mark.parametrize("name", ["flores_zh_en", "flores_en_zh"])
def test_bleu_of_a_resample_is_corpus_bleu_of_its_items(name):
    """The bootstrap sums per-item n-gram statistics (sacrebleu's paired-bootstrap method) instead of
    rescoring each resample: it must give sacrebleu's corpus BLEU of the resampled items exactly."""
    pairs = ([["the cat sat on the mat", "the cat sat on a mat"], ["a b c d e f", "a b c d e g"],
              ["it is raining today .", "today it rains ."], ["m n o p", "m n o p"]] if name == "flores_zh_en" else
             [["我爱北京天安门", "我爱北京天安"], ["今天下雨。", "今天下雨了。"], ["他是老师", "她是学生"]])
    idx = np.random.default_rng(1).integers(0, len(pairs), size=(20, len(pairs)))
    fast = stats._resampler(name, pairs)(idx)
    slow = [corpus_bleu([pairs[i] for i in row], stats.BLEU_TOKENIZE[name]) for row in idx]
    assert fast.tolist() == pytest.approx(slow, abs=1e-12) and np.ptp(slow) > 0


def test_correlation_on_known_relations():
    x = np.arange(10.0)
    r = stats.correlation(x, 3 * x + 1)
    assert r["pearson"] == pytest.approx(1) and r["spearman"] == pytest.approx(1) and r["n"] == 10
    r = stats.correlation(x, np.exp(x))  # monotone but not linear: rank correlation 1, Pearson below 1
    assert r["spearman"] == pytest.approx(1) and r["pearson"] < 0.9
    rng = np.random.default_rng(0)
    r = stats.correlation(rng.normal(size=50), rng.normal(size=50))
    assert r["pearson_lo"] < 0 < r["pearson_hi"] and r["spearman_lo"] < 0 < r["spearman_hi"]
    assert np.isnan(stats.correlation([1, 2, 3], [1, 2, 3])["pearson"])  # too few runs


def test_a_run_is_compared_with_the_baseline_of_its_own_dtype(tmp_path):
    """Two baselines of one model (fp32 and bf16): a bf16 run's perplexity ratio pairs with the bf16
    one, window by window; an unfinished run still shows the corpora it has finished."""
    from quantlib.reporting import summary

    def record(name, method, dtype, nll, status="done"):
        d = tmp_path / name
        d.mkdir()
        spec = {"model": "m", "label": name, "method": method, "bits": 16 if method == "fp" else 4,
                "dtype": dtype, "perplexity": {"seqlen": 8, "limit": len(nll)}}
        (d / "spec.json").write_text(json.dumps(spec))
        (d / "status.json").write_text(json.dumps({"status": status}))
        (d / "perplexity.json").write_text(json.dumps(
            {"corpora": {"wikitext2": {"ppl": float(np.exp(np.mean(nll))), "windows": len(nll), "window_nll": nll}}}))

    record("a-base32", "fp", "float32", [3.0, 3.0, 3.0])
    record("b-base16", "fp", "bfloat16", [2.0, 2.0, 2.0])  # sorts after the fp32 one
    record("q16", "gptq", "bfloat16", [2.1, 2.1, 2.1])
    record("q16-running", "gptq", "bfloat16", [2.2, 2.2, 2.2], status="running")
    w = summary.wide(summary.write(tmp_path, tmp_path / "summary.csv")).set_index("run")
    assert w.loc["q16", "ppl_wikitext2_ratio"] == pytest.approx(np.exp(0.1))
    assert w.loc["q16-running", "ppl_wikitext2"] == pytest.approx(np.exp(2.2))
