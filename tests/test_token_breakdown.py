"""The per-position breakdown of perplexity change into KL and calibration (quantlib.scoring.token_breakdown)."""
import numpy as np
import pytest
import torch

from quantlib.io import files, paths
from quantlib.scoring import divergence, token_breakdown


def _logp(z, temperature=1.0):
    return torch.log_softmax(z / temperature, dim=-1)


def test_an_over_confident_baseline_lets_the_farther_model_score_the_lower_nll():
    """Data drawn from a flatter distribution than the baseline's: a quantized model that flattens the
    baseline moves away from it (KL > 0) yet predicts the data better (dNLL < 0); the difference is the
    calibration term, which is zero on average when the data follow the baseline."""
    torch.manual_seed(0)
    z = 3 * torch.randn(4000, 40)
    lp, lq = _logp(z), _logp(z, 1.5)
    y_over = torch.distributions.Categorical(logits=z / 2).sample()
    s = token_breakdown.summarize(token_breakdown.position_stats(lp, lq, y_over))
    assert s["dnll"] < 0 < s["kl"] and s["calibration_term"] < -s["kl"]
    assert s["entropy_q"] > s["entropy_p"]
    y_cal = torch.distributions.Categorical(logits=z).sample()
    stats = token_breakdown.position_stats(lp, lq, y_cal)
    gap = stats["dnll"] - stats["kl"]
    assert abs(gap.mean()) < 3 * gap.std() / gap.numel() ** 0.5


def test_identical_models_and_the_coarse_kl_bound(monkeypatch):
    torch.manual_seed(1)
    lp, lq = _logp(torch.randn(300, 64)), _logp(torch.randn(300, 64))
    y = torch.randint(0, 64, (300,))
    same = token_breakdown.position_stats(lp, lp, y)
    assert same["dnll"].abs().max() == 0 and same["kl"].abs().max() < 1e-5
    monkeypatch.setattr(divergence, "TOP_K", 8)  # a coarse KL over 8 of 64 tokens bounds the exact one below
    s = token_breakdown.position_stats(lp, lq, y)
    assert (s["coarse_kl"] <= s["kl"] + 1e-5).all() and s["coarse_kl"].mean() < s["kl"].mean()


def test_bins_partition_the_positions_and_add_up_to_the_mean():
    torch.manual_seed(2)
    lp, lq = _logp(2 * torch.randn(500, 30)), _logp(2 * torch.randn(500, 30))
    y = torch.distributions.Categorical(logits=lp).sample()
    s = token_breakdown.summarize(token_breakdown.position_stats(lp, lq, y))
    assert sum(b["share"] for b in s["by_p_y"]) == pytest.approx(1)
    assert sum(b["dnll_contribution"] for b in s["by_p_y"]) == pytest.approx(s["dnll"], abs=1e-6)
    assert s["positions"] == 500


def _record(runs, spec, nlls=None, weights=None):
    from quantlib.running import records

    folder = runs / spec.name
    folder.mkdir(parents=True)
    records.write_spec(folder, spec)
    if nlls is not None:
        files.write_json(folder / "perplexity.json", {"key": {"weights": weights or {}},
                                                      "corpora": {"wikitext2": {"window_nll": nlls}}})
    return folder


def test_reproduces_the_recorded_window_nlls_and_writes_the_breakdown(tiny_model, tmp_path, monkeypatch, capsys):
    from quantlib.models import load
    from quantlib.quantization import methods
    from quantlib.running.spec import RunSpec
    from quantlib.scoring import perplexity

    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(token_breakdown, "OUT", tmp_path / "diagnostics")
    ppl = {"datasets": ["wikitext2"], "seqlen": 128, "limit": 2}
    specs = [RunSpec(model=tiny_model, method="fp", perplexity=ppl),
             RunSpec(model=tiny_model, method="gptq", bits=4, calibration={"n_samples": 4}, perplexity=ppl)]
    tok = load.load_tokenizer(tiny_model)
    wins = perplexity.windows(tok, perplexity.corpus("wikitext2"), 128, 2)
    nlls, keys = {}, {}
    for s in specs:
        model, info = methods.load(s.variant)
        nlls[s.label] = perplexity.window_nlls(load.exact_logits(model), wins)
        keys[s.label] = methods.weights_key(s.variant, info)
    assert "weights_sha256" in keys["gptq-4b"]  # GPTQ stores its weights, with their checksum
    for s in specs:
        _record(paths.RUNS, s, nlls[s.label], keys[s.label])
    label = specs[1].label
    assert token_breakdown.main([tiny_model, "--labels", label, "--windows", "2"]) == 0
    out = files.read_json(token_breakdown.out_file(tiny_model))
    r = out["variants"][label]
    assert out["records"][label] == {"max_window_nll_difference": pytest.approx(0, abs=1e-4), "same_weights": True}
    mean_gap = (sum(nlls[label]) - sum(nlls[specs[0].label])) / 2
    assert r["dnll"] == pytest.approx(mean_gap, abs=1e-4)  # equal windows: the mean dNLL is the NLL gap
    assert r["calibration_term"] == pytest.approx(r["dnll"] - r["kl"]) and r["kl"] >= r["coarse_kl"] - 1e-6
    # a record made from other weights (another thread count, say) is flagged, not passed off as these
    files.write_json(paths.RUNS / specs[1].name / "perplexity.json", {
        "key": {"weights": keys[label] | {"weights_sha256": "0" * 64}},
        "corpora": {"wikitext2": {"window_nll": nlls[label]}}})
    assert token_breakdown.main([tiny_model, "--labels", label, "--windows", "2"]) == 0
    assert files.read_json(token_breakdown.out_file(tiny_model))["records"][label]["same_weights"] is False
    assert "differ from the recorded ones" in capsys.readouterr().out


def test_an_unrecorded_label_fails_naming_it_and_writes_nothing(tiny_model, tmp_path, monkeypatch, capsys):
    from quantlib.running.spec import RunSpec

    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(token_breakdown, "OUT", tmp_path / "diagnostics")
    _record(paths.RUNS, RunSpec(model=tiny_model, method="fp"))
    assert token_breakdown.main([tiny_model, "--labels", "spqr-8b"]) == 2
    assert "spqr-8b" in capsys.readouterr().err and not (tmp_path / "diagnostics").exists()
    assert token_breakdown.main([tiny_model, "--labels", "x", "--windows", "0"]) == 2
    # two baselines of the same model and dtype: which one the breakdown compares with is not guessed
    _record(paths.RUNS, RunSpec(model=tiny_model, method="rtn", bits=4))
    _record(paths.RUNS, RunSpec(model=tiny_model, method="fp", perplexity={"limit": 3}))
    with pytest.raises(ValueError, match="one baseline run"):
        token_breakdown.model_runs(tiny_model, ["rtn-4b"])


def test_the_study_reads_one_row_per_variant_beside_what_the_runs_recorded(tmp_path, monkeypatch):
    from quantlib.reporting import study

    monkeypatch.setattr(token_breakdown, "OUT", tmp_path / "diagnostics")
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    torch.manual_seed(3)
    lp, lq = _logp(torch.randn(200, 20)), _logp(torch.randn(200, 20))
    s = token_breakdown.summarize(token_breakdown.position_stats(lp, lq, torch.randint(0, 20, (200,))))
    nll = {"base": [3.0, 3.2, 9.0], "a": [3.1, 3.3, 1.0], "b": [3.0, 3.4, 1.0]}  # the third window is not read
    for run, w in nll.items():
        files.write_json(paths.RUNS / run / "perplexity.json", {"corpora": {"wikitext2": {"window_nll": w}}})
    model = "qwen2.5-coder-0.5b-instruct"
    files.write_json(token_breakdown.out_file(model), {
        "model": model, "corpus": "wikitext2", "windows": 2, "torch_threads": 1, "labels": ["spqr-8b", "spqr-3b"],
        "runs": {"baseline": "base", "spqr-8b": "a", "spqr-3b": "b"},
        "records": {"spqr-8b": {"same_weights": False}, "spqr-3b": {"same_weights": True}},
        "variants": {"spqr-8b": s, "spqr-3b": s}})
    t = study.token_breakdown()
    assert list(t["variant"]) == ["spqr-8b", "spqr-3b"] and set(t["model"]) == {"0.5B"}
    bins = [c for c in t.columns if c.startswith("calibration from")]
    assert len(bins) == len(token_breakdown.BINS) - 1
    assert t[bins].sum(axis=1).iloc[0] == pytest.approx(s["calibration_term"], abs=1e-6)
    assert t["perplexity ratio"].iloc[0] == pytest.approx(np.exp(s["dnll"]))
    assert list(t["dNLL as recorded"]) == pytest.approx([0.1, 0.1])
    assert list(t["same weights as the run"]) == [False, True] and set(t["threads"]) == {1}


def test_nll_beyond_kl_from_the_records_alone():
    import pandas as pd

    from quantlib.reporting import study

    m = "qwen2.5-coder-0.5b-instruct"
    df = pd.DataFrame({"model": [m, m, m], "label": ["bf16", "a", "b"],
                       "ppl_wikitext2_ratio": [1.0, np.exp(0.05), np.exp(0.02)], "kl_wikitext2": [np.nan, 0.01, 0.07]})
    t = study.nll_beyond_kl(df)
    assert list(t["label"]) == ["a", "b"] and set(t["model"]) == {"0.5B"}  # the baseline has no KL to itself
    assert list(t["dNLL - recorded KL"]) == pytest.approx([0.04, -0.05])
    assert study.nll_beyond_kl(pd.DataFrame()).empty
