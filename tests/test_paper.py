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


def test_perplexity_as_ratios(paper_dir):
    r = paper.perplexity_ratios().set_index("label")
    assert r.loc["gptq-3b", "ratio"] == pytest.approx(9.54 / 8.67)


def test_no_paper_dir_means_our_numbers_alone(monkeypatch, tmp_path):
    monkeypatch.delenv("QUANTLIB_PAPER_DIR", raising=False)
    monkeypatch.setenv("QUANTLIB_DATA_DIR", str(tmp_path))  # no paper/ beside it
    assert not paper.available() and paper.effects("mmlu").empty
