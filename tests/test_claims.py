"""Verdict logic on constructed summaries with known answers."""
import numpy as np
import pandas as pd

from quantlib.reporting import claims, report

CFG = claims.config()


def _runs(**overrides):
    """fp and seven quantized variants of one model; `overrides` maps label -> column values."""
    rows = [
        dict(label="fp32", method="fp", ppl=10.0, mmlu=0.60, dec=10.0, lb=32.0),
        dict(label="gptq-8b", method="gptq", ppl=10.1, mmlu=0.60, dec=11.0, lb=8.25),
        dict(label="gptq-4b", method="gptq", ppl=10.5, mmlu=0.58, dec=9.5, lb=4.2),
        dict(label="gptq-3b", method="gptq", ppl=20.0, mmlu=0.45, dec=10.5, lb=3.2),
        dict(label="gptq-2b", method="gptq", ppl=5000.0, mmlu=0.25, dec=10.0, lb=2.2),
        dict(label="spqr-2b", method="spqr", ppl=25.0, mmlu=0.40, dec=10.2, lb=6.1),
        dict(label="bnb-nf4", method="bnb-nf4", ppl=11.0, mmlu=0.57, dec=5.0, lb=4.5),
        dict(label="bnb-int8", method="bnb-int8", ppl=10.1, mmlu=0.60, dec=1.0, lb=8.2),
    ]
    df = pd.DataFrame(rows).rename(columns={"ppl": "ppl_wikitext2", "dec": "decode_tok_s", "lb": "stored_bits"})
    df = df.assign(model="m", status="done", mmlu_p=0.5, weight_bytes=1e9, ppl_wikitext2_windows=16)
    df["ppl_wikitext2_ratio"] = df["ppl_wikitext2"] / 10.0
    df["ppl_wikitext2_ratio_lo"], df["ppl_wikitext2_ratio_hi"] = 0.97 * df["ppl_wikitext2_ratio"], 1.03 * df[
        "ppl_wikitext2_ratio"]
    for label, cols in overrides.items():
        for c, v in cols.items():
            df.loc[df["label"] == label, c] = v
    return df


def _verdict(df, key):
    return claims.CLAIMS[key](df, CFG, "m")["verdict"]


def test_c1_four_bit_within_threshold_and_no_significant_drop_holds():
    assert _verdict(_runs(), "C1") == claims.HOLDS
    # the interval decides: a ratio of 1.08 whose interval reaches past 1.10 is undecided, one window too
    assert _verdict(_runs(**{"gptq-4b": {"ppl_wikitext2_ratio_hi": 1.12}}), "C1") == claims.OPEN
    one_window = {"ppl_wikitext2_ratio_lo": float("nan"), "ppl_wikitext2_ratio_hi": float("nan")}
    assert _verdict(_runs(**{"gptq-4b": one_window}), "C1") == claims.OPEN
    rise = {"ppl_wikitext2": 12.0, "ppl_wikitext2_ratio": 1.2, "ppl_wikitext2_ratio_lo": 1.15,
            "ppl_wikitext2_ratio_hi": 1.25}
    assert _verdict(_runs(**{"gptq-4b": rise}), "C1") == claims.FAILS   # +20% perplexity, interval above 1.10
    assert _verdict(_runs(**{"gptq-4b": {"mmlu_p": 0.01}}), "C1") == claims.FAILS          # significant drop
    ev = claims.c1(_runs(**{"gptq-4b": {"mmlu_p": 0.01}}), CFG, "m")["evidence"]
    assert ev.endswith("drops on 1 of 1 benchmarks (mmlu; 1 after Holm's correction for 1 tests)")
    assert _verdict(_runs(**{"gptq-4b": {"mmlu_p": 0.01, "mmlu": 0.65}}), "C1") == claims.HOLDS  # a rise is no drop


def test_c2_needs_rank_correlation_below_zero():
    df = _runs()  # scores fall as perplexity rises, monotonically
    assert _verdict(df, "C2") == claims.HOLDS
    rng = np.random.default_rng(0)
    df["mmlu"] = np.r_[0.6, rng.permutation([0.5, 0.5, 0.6, 0.4, 0.6, 0.5, 0.4])]
    assert _verdict(df, "C2") == claims.OPEN


def test_c3_is_inconclusive_with_one_model():
    assert _verdict(_runs(), "C3") == claims.OPEN


def test_c3_pairs_the_larger_quantized_model_with_the_smaller_baseline(tmp_path, monkeypatch):
    import json

    from quantlib.io import paths

    monkeypatch.setattr(paths, "RUNS", tmp_path)
    right = {"small": 50, "big-fp": 90, "big-q": 80, "big-q2": 40}  # of 100 items, on each benchmark
    for run, k in right.items():
        (tmp_path / run / "samples").mkdir(parents=True)
        for b in ("snli", "mmlu", "truthfulqa_mc1"):
            rows = [{"task": b, "doc_id": i, "acc": float(i < k)} for i in range(100)]
            (tmp_path / run / "samples" / f"{b}.jsonl").write_text("\n".join(map(json.dumps, rows)))
    cols = ["model", "run", "method", "label", "weight_bytes", "ppl_wikitext2"]
    df = pd.DataFrame([("s", "small", "fp", "bf16", 1.0e9, 20.0), ("b", "big-fp", "fp", "bf16", 3.0e9, 10.0),
                       ("b", "big-q", "gptq", "gptq-4b", 1.4e9, 11.0), ("b", "big-q2", "gptq", "gptq-2b", 0.9e9, 90.0)],
                      columns=cols)
    for b in ("snli", "mmlu", "truthfulqa_mc1"):
        df[b] = df["run"].map(right) / 100
    r = claims.c3(df, CFG, "s")
    assert r["verdict"] == claims.HOLDS  # the best-perplexity variant within 1.5x of 1 GB: gptq-4b, 80 vs 50
    assert "b gptq-4b (1.30 GiB)" in r["evidence"] and "higher on 3 (mmlu, snli, truthfulqa_mc1)" in r["evidence"]
    worse = claims.c3(df[df["run"] != "big-q"], CFG, "s")  # only gptq-2b fits: 40 against 50 on every item set
    assert worse["verdict"] == claims.FAILS and "lower on 3" in worse["evidence"]


def test_c4_slower_than_every_dense_run_holds():
    assert _verdict(_runs(), "C4") == claims.HOLDS
    fast = _runs(**{"bnb-nf4": {"decode_tok_s": 9.6}, "bnb-int8": {"decode_tok_s": 9.7}})
    assert _verdict(fast, "C4") == claims.FAILS  # within the dense runs' noise (9.5-11.0)
    untimed = fast[fast["label"] != "bnb-int8"]  # the paper's slow case not timed yet: no verdict against
    assert _verdict(untimed, "C4") == claims.OPEN
    assert "awaits bnb-int8" in claims.CLAIMS["C4"](untimed, CFG, "m")["evidence"]


def test_c4_reads_a_timed_run_whose_benchmarks_are_still_running():
    running = _runs(**{"bnb-int8": {"status": "running", "mmlu": np.nan}})  # timed, benchmarks to come
    assert claims.judge("C4", running, CFG, "m")["verdict"] == claims.HOLDS
    assert claims.judge("C1", running, CFG, "m")["verdict"] == claims.HOLDS  # the others read finished runs
    assert "bnb-int8" not in set(report.done(running)["label"])
    untimed = _runs(**{"bnb-int8": {"status": "running", "decode_tok_s": np.nan},
                       "bnb-nf4": {"decode_tok_s": 9.6}})
    assert claims.judge("C4", untimed, CFG, "m")["verdict"] == claims.OPEN
    assert claims.table(running).loc[3, "verdict"] == claims.HOLDS
    # a variant with a finished run and an unfinished rerun: the finished one is the variant's speed
    rerun = pd.concat([_runs(), _runs().query("label == 'bnb-int8'").assign(status="running", decode_tok_s=50.0)])
    assert report.timed(rerun).query("label == 'bnb-int8'")["decode_tok_s"].tolist() == [1.0]


def test_c5_gptq2_collapses_spqr2_does_not():
    # GPTQ-4 (4.2 stored bits, ppl 10.5) beats SpQR-2 (6.1 bits, ppl 25): the verdict says both
    assert _verdict(_runs(), "C5") == "holds at nominal bits; not at matched storage"
    assert _verdict(_runs(**{"spqr-2b": {"ppl_wikitext2": 10.2}}), "C5") == claims.HOLDS
    assert _verdict(_runs(**{"spqr-2b": {"ppl_wikitext2": 500.0}}), "C5") == claims.FAILS


def test_claims_table_has_a_verdict_per_claim():
    t = claims.table(_runs())
    assert list(t["verdict"])[:4] == [claims.HOLDS, claims.HOLDS, claims.OPEN, claims.HOLDS]
    assert t["claim"].str.startswith(("C1", "C2", "C3", "C4", "C5")).all()
    assert t["judged by"].str.len().gt(20).all()  # every verdict shows the threshold it was judged by
    assert t.loc[0, "rests on"].startswith("16 windows; 0 paired items; ratio 1.050 [")


def test_each_verdict_is_coloured_by_what_it_says():
    t = claims.table(_runs())
    cells = claims.styled(t, "claims").to_html()
    for verdict, colour in (("holds", "#d4edda"), ("inconclusive", "#e9ecef"),
                            ("holds at nominal bits; not at matched storage", "#fff3cd")):
        assert verdict in set(t["verdict"]) and colour in cells
    assert claims._verdict_css(claims.FAILS).startswith("background-color: #f8d7da")


def test_overview_gives_each_model_its_own_verdict_column():
    big = _runs(**{"gptq-4b": {"mmlu_p": 0.01}}).assign(model="big", weight_bytes=3e9)  # a significant drop
    t = claims.overview(pd.concat([big, _runs()]), label=str.upper)
    assert list(t.columns) == ["claim", "verdict on M", "verdict on BIG"]  # smallest baseline first
    assert t.loc[0, "verdict on M"] == claims.HOLDS and t.loc[0, "verdict on BIG"] == claims.FAILS
    html = claims.styled(t, "glance").to_html()
    css = html.split("</style>")[0]
    assert "_row0_col1" in css and "_row0_col2" in css and "_col0" not in css  # both verdict columns, not the claim
    assert "#d4edda" in css and "#f8d7da" in css
