"""The study's pages (quantlib.reporting.study): progress, baselines with their MDD, GPTQ over RTN."""
import json
import math

import pytest


def test_gptq_is_compared_with_its_rtn_twin_on_the_same_items(tmp_path, monkeypatch):
    import pandas as pd

    from quantlib.io import paths
    from quantlib.reporting import study

    monkeypatch.setattr(paths, "RUNS", tmp_path)
    for run, right in (("g", 60), ("r", 30)):  # GPTQ right on 60 of 100 SNLI items, RTN on 30
        (tmp_path / run / "samples").mkdir(parents=True)
        rows = [{"task": "snli", "doc_id": i, "acc": float(i < right)} for i in range(100)]
        (tmp_path / run / "samples" / "snli.jsonl").write_text("\n".join(map(json.dumps, rows)))
    df = pd.DataFrame([{"model": "m", "label": "gptq-3b", "method": "gptq", "run": "g", "snli": 0.6,
                        "ppl_wikitext2": 20.0},
                       {"model": "m", "label": "rtn-3b", "method": "rtn", "run": "r", "snli": 0.3,
                        "ppl_wikitext2": 40.0}])
    row = study.gptq_over_rtn(df).iloc[0]
    assert (row["GPTQ"], row["RTN"]) == ("gptq-3b", "rtn-3b") and row["GPTQ / RTN perplexity"] == 0.5
    assert row["benchmarks compared"] == 1
    assert (row["GPTQ significantly higher on"], row["GPTQ significantly lower on"]) == ("SNLI", "none")


def test_study_baselines_give_the_planned_and_the_measured_mdd(tmp_path, monkeypatch):
    """The baseline table plans the MDD from the baseline's items and takes the measured one from the
    quantized runs scored on the same items (their median); a registered model shows its size."""
    import pandas as pd

    from quantlib.io import paths
    from quantlib.reporting import power, study

    monkeypatch.setattr(paths, "RUNS", tmp_path)
    (tmp_path / "b" / "samples").mkdir(parents=True)
    acc = [float(i % 2) for i in range(100)]
    (tmp_path / "b" / "samples" / "snli.jsonl").write_text(
        "\n".join(json.dumps({"task": "snli", "doc_id": i, "acc": a}) for i, a in enumerate(acc)))
    model = "qwen2.5-coder-0.5b-instruct"
    df = pd.DataFrame([{"model": model, "label": "bf16", "method": "fp", "run": "b", "snli": 0.5, "snli_n": 100},
                       {"model": model, "label": "gptq-4b", "method": "gptq", "run": "g", "snli": 0.4,
                        "snli_n": 100, "snli_mdd": 0.08},
                       {"model": model, "label": "rtn-4b", "method": "rtn", "run": "r", "snli": 0.4,
                        "snli_n": 100, "snli_mdd": 0.10},
                       {"model": model, "label": "rtn-3b", "method": "rtn", "run": "s", "snli": 0.4,
                        "snli_n": 50, "snli_mdd": 0.5}])  # other items: not this baseline's MDD
    row = study.baselines(df).set_index("benchmark").iloc[0]
    assert row["model"] == "0.5B" and row["n"] == 100
    assert row["MDD planned"] == pytest.approx(power.mdd(power.planned_sd(acc), 100))
    assert row["MDD measured"] == pytest.approx(0.09) and row["runs"] == 2
    assert power.mdd(power.sd_from_mdd(0.09, 100), 100) == pytest.approx(0.09)


def test_study_progress_says_what_each_cell_has_finished(tmp_path, monkeypatch):
    """Done, to run, or an interrupted cell's finished stages with its wall time so far."""
    from quantlib.io import files, paths
    from quantlib.reporting import study
    from quantlib.running import records
    from quantlib.running.spec import load_grid

    grids, runs = tmp_path / "grids", tmp_path / "runs"
    grids.mkdir()
    (grids / "study.yaml").write_text("models: [smollm2-135m-instruct]\nmethods: [fp, {method: gptq, bits: [4, 3]}]\n"
                                      "perplexity: {datasets: [wikitext2, c4]}\nbenchmarks: {gsm8k: {}, snli: {}}\n")
    monkeypatch.setattr(paths, "GRIDS", grids)
    monkeypatch.setattr(paths, "RUNS", runs)
    fp, q4, _ = load_grid(grids / "study.yaml")
    done, part = records.run_dir(fp.name), records.run_dir(q4.name)
    for f, name in ((done, fp.name), (part, q4.name)):
        files.write_json(f / "spec.json", {"name": name})
        files.write_json(f / "metrics.json", {"name": name})
    (done / "run.ipynb").write_text("{}")
    files.write_json(done / "status.json", {"status": "done", "seconds": 7200.0})
    files.write_json(part / "perplexity.json", {"corpora": {"wikitext2": {}}})
    files.write_json(part / "benchmarks" / "gsm8k.json", {"seconds": 60.0})
    files.write_json(part / "status.json", {"status": "running", "earlier_seconds": 600.0,
                                            "time": "2026-01-01T00:00:00+00:00", "alive": "2026-01-01T00:30:00+00:00"})
    t = study.progress().set_index("variant")
    assert t.loc["bf16", "state"] == "done" and t.loc["bf16", "wall hours"] == 2.0
    assert t.loc["gptq-4b", "state"] == "quantized; perplexity 1 of 2; 1 of 2 benchmarks"
    assert t.loc["gptq-4b", "wall hours"] == pytest.approx((600 + 1800) / 3600)
    assert t.loc["gptq-3b", "state"] == "to run" and t.loc["gptq-3b", "model"] == "135M"


def test_our_effects_are_starred_where_the_paired_test_is_significant(tmp_path, monkeypatch):
    import pandas as pd

    from quantlib.reporting import study

    monkeypatch.delenv("QUANTLIB_PAPER_DIR", raising=False)
    monkeypatch.setenv("QUANTLIB_DATA_DIR", str(tmp_path))  # no paper tables: ours alone
    df = pd.DataFrame([{"model": "m", "label": "bf16", "method": "fp", "snli": 0.50},
                       {"model": "m", "label": "gptq-4b", "method": "gptq", "snli": 0.45, "snli_delta": -0.05,
                        "snli_delta_lo": -0.08, "snli_delta_hi": -0.02, "snli_p": 0.004},
                       {"model": "m", "label": "gptq-8b", "method": "gptq", "snli": 0.49, "snli_delta": -0.01,
                        "snli_delta_lo": -0.04, "snli_delta_hi": 0.02, "snli_p": 0.6}])
    t = study.beside_paper(df, "snli").set_index("variant")["ours m"]
    assert t["gptq-4b"] == "-0.05* [-0.08, -0.02]" and t["gptq-8b"] == "-0.01 [-0.04, +0.02]"


def test_figure_tells_the_two_sizes_apart_even_at_a_lone_point():
    import pandas as pd

    from quantlib.reporting import report

    rows = []
    for model, wb, n in (("qwen2.5-coder-0.5b-instruct", 1e9, 285), ("qwen2.5-coder-1.5b-instruct", 3e9, 1140)):
        rows += [{"model": model, "method": "fp", "label": "bf16", "bits": 16, "mmlu": 0.4, "mmlu_n": n,
                  "weight_bytes": wb},
                 {"model": model, "method": "gptq", "label": "gptq-4b", "bits": 4, "mmlu": 0.38, "mmlu_n": n,
                  "weight_bytes": wb / 3}]
    fig = report.plot_vs_bits(pd.DataFrame(rows), {"mmlu": "MMLU"})
    ax = fig.axes[0]
    assert ax.get_title() == "MMLU, n = 285 / 1,140"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "GPTQ (0.5B)" in labels and "GPTQ (1.5B)" in labels and not ax.get_legend()  # below, not on a panel
    small, big = (next(ln for ln in ax.lines if ln.get_label() == f"GPTQ ({s})") for s in ("0.5B", "1.5B"))
    assert big.get_markerfacecolor() == "white" and small.get_markerfacecolor() != "white"


def test_hours_to_go_from_each_models_median_cell():
    import pandas as pd

    from quantlib.reporting import study

    prog = pd.DataFrame({"model": ["0.5B"] * 4 + ["1.5B"] * 2,
                         "state": ["done", "done", "perplexity 3 of 3", "to run", "done", "to run"],
                         "wall hours": [1.0, 2.0, 0.5, float("nan"), 3.0, float("nan")]})
    assert study.hours_to_go(prog) == 1.0 + 1.5 + 3.0  # the cell in progress has spent 0.5 of its 1.5
    assert study.to_go(prog) == "3 still to run, about 6 hours more at each model's median cell time"
    slow = prog.assign(**{"wall hours": [1.0, 2.0, 1.6, float("nan"), 3.0, float("nan")]})
    assert math.isnan(study.hours_to_go(slow)) and "no time is estimated" in study.to_go(slow)
    assert math.isnan(study.hours_to_go(prog.iloc[2:4]))  # no finished cell to price it by
    assert study.to_go(prog.assign(state="done")) == "every cell is done"


def test_caption_says_how_coarsely_the_paper_printed_its_values(tmp_path, monkeypatch):
    """The paper prints ROUGE as fractions to two decimals: changes move in whole points here, so a
    change it marks significant can read "+0*"; the caption says so."""
    import pandas as pd

    from quantlib.reporting import paper, study

    (tmp_path / "results.csv").write_text(
        "table,model,method,bits,benchmark,subset,metric,value,scale,significant\n"
        "Table 12,Qwen-7B-Chat,bf16,16,cnn_dailymail,,rougeL,0.21,fraction,\n"
        "Table 12,Qwen-7B-Chat,gptq,4,cnn_dailymail,,rougeL,0.21,fraction,true\n")
    monkeypatch.setenv("QUANTLIB_PAPER_DIR", str(tmp_path))
    paper._csv.cache_clear()
    df = pd.DataFrame([{"model": "m", "label": "bf16", "method": "fp", "cnn_dailymail": 20.0},
                       {"model": "m", "label": "gptq-4b", "method": "gptq", "cnn_dailymail": 19.0}])
    try:
        [table] = study.beside_paper_tables(df, ["cnn_dailymail"])
        assert study.beside_paper(df, "cnn_dailymail").set_index("variant").loc["gptq-4b", "paper Qwen-7B"] == "+0*"
    finally:
        paper._csv.cache_clear()
    assert table.caption.endswith("(the paper prints these values to 1 in these units)")
