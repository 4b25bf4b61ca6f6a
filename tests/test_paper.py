"""The paper's tables beside ours: effects against each model's own baseline, in this report's units."""
import pytest

from quantlib.reporting import paper

RESULTS = """table,model,method,bits,benchmark,subset,metric,value,scale,significant
Table 9,Qwen-7B-Chat,bf16,16,mmlu,average,accuracy,55.80,percent,
Table 9,Qwen-7B-Chat,gptq,4,mmlu,average,accuracy,54.27,percent,true
Table 9,Qwen-7B-Chat,llm.int8,8,mmlu,average,accuracy,55.21,percent,false
Table 9,Qwen-7B-Chat,gptq,4,mmlu,stem,accuracy,40.00,percent,
Table 7,Qwen-7B-Chat,bf16,16,wikitext2,,perplexity,8.67,raw,
Table 7,Qwen-7B-Chat,gptq,3,wikitext2,,perplexity,9.54,raw,
"""


@pytest.fixture
def paper_dir(tmp_path, monkeypatch):
    (tmp_path / "results.csv").write_text(RESULTS)
    monkeypatch.setenv("QUANTLIB_PAPER_DIR", str(tmp_path))
    paper._csv.cache_clear()
    yield tmp_path
    paper._csv.cache_clear()


def test_effects_are_deltas_in_our_units_with_our_labels(paper_dir):
    e = paper.effects("mmlu").set_index("label")
    assert list(e.index) == ["bf16", "gptq-4b", "bnb-int8"]  # the STEM subset is not the headline
    assert e.loc["gptq-4b", "delta"] == pytest.approx(-0.0153) and e.loc["bf16", "delta"] == 0
    assert str(e.loc["gptq-4b", "significant"]) == "True"
    assert e.loc["gptq-4b", "step"] == pytest.approx(1e-4)  # "54.27" percent: printed to 0.0001 as a fraction


def test_printed_step_reads_the_decimals_as_written():
    assert [paper._printed_step(t) for t in ("0.21", "54", "8.670")] == [0.01, 1, 0.001]


def test_perplexity_as_ratios(paper_dir):
    r = paper.perplexity_ratios().set_index("label")
    assert r.loc["gptq-3b", "ratio"] == pytest.approx(9.54 / 8.67)


def test_no_paper_dir_means_our_numbers_alone(monkeypatch, tmp_path):
    monkeypatch.delenv("QUANTLIB_PAPER_DIR", raising=False)
    monkeypatch.setenv("QUANTLIB_DATA_DIR", str(tmp_path))  # no paper/ beside it
    assert not paper.available() and paper.effects("mmlu").empty


def test_claim_numbers_are_computed_from_the_tables(tmp_path, monkeypatch):
    rows = ["table,model,method,bits,benchmark,subset,metric,value,scale,significant"]
    for i, m in enumerate(paper.MODELS):
        base = 8.0 + i
        for method, bits, ratio in (("bf16", 16, 1), ("gptq", 4, 1.05), ("gptq", 2, 1e4), ("spqr", 2, 1.2)):
            rows.append(f"Table 7,{m},{method},{bits},wikitext2,,perplexity,{base * ratio},raw,")
    monkeypatch.setenv("QUANTLIB_PAPER_DIR", str(tmp_path))
    (tmp_path / "results.csv").write_text("\n".join(rows) + "\n")
    paper._csv.cache_clear()
    try:
        c5 = paper.claim_numbers("C5", {})
    finally:
        paper._csv.cache_clear()
    assert c5.split("; ")[0] == "7B: WikiText-2 x1e+04 (GPTQ-2) vs x1.2 (SpQR-2)"
    assert c5.count("GPTQ-2") == 3


def test_c1_rule_on_the_paper_tables_counts_marked_drops(paper_dir):
    from quantlib.reporting import claims

    rows = [f"Table 7,{m},{meth},{b},wikitext2,,perplexity,{p},raw," for m in paper.MODELS
            for meth, b, p in (("bf16", 16, 8.0), ("gptq", 4, 8.4))]
    rows += [f"Table 9,{m},{meth},{b},mmlu,average,accuracy,{v},percent,{sig}" for m, drop in
             zip(paper.MODELS, (True, False, False)) for meth, b, v, sig in
             (("bf16", 16, 55.0, ""), ("gptq", 4, 53.0 if drop else 55.5, "true" if drop else "false"))]
    (paper_dir / "results.csv").write_text(RESULTS.splitlines()[0] + "\n" + "\n".join(rows) + "\n")
    paper._csv.cache_clear()
    drops = paper.significant_drops("gptq-4b")
    assert drops["Qwen-7B-Chat"] == (["mmlu"], 1) and drops["Qwen-14B-Chat"] == ([], 1)
    assert claims.c1_on_paper(claims.config()) == {"Qwen-7B-Chat": claims.FAILS, "Qwen-14B-Chat": claims.HOLDS,
                                                   "Qwen-72B-Chat": claims.HOLDS}  # x1.05, within 1.10
    assert "does not hold on 1 of the paper's 3 models (7B)." in claims.c1_strictness(claims.config())


def test_report_numbers_are_readable():
    from quantlib.reporting.report import number

    assert [number(x) for x in (7778549.3264, 579.8, 0.35123, 1140.0, float("nan"), "gptq-4b")] == \
        ["7,778,549", "579.8", "0.3512", "1,140", "", "gptq-4b"]
