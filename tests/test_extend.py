"""Extending the study: a toy method is one module plus a grid line, a toy benchmark is one task
folder plus its registry entry; each then runs, summarizes and plots with nothing else edited."""
import json
import textwrap

import matplotlib
import pytest

matplotlib.use("Agg")

from quantlib.reporting import report, summary  # noqa: E402
from quantlib.running import grid  # noqa: E402
from quantlib.running.spec import load_grid  # noqa: E402

TOY_METHOD = '''
"""A toy method: every decoder weight rounded to a per-row grid of 2**bits levels (no groups)."""
from quantlib.quantization import calibrated, layerwise, methods, rtn


def row_bytes(rows, columns, bits, group_size, params, stats):
    return rows * columns * bits // 8 + rows * 4  # codes + one fp16 scale and zero per row


methods.register(methods.Method(
    "toy", "Toy", (4,), calibrated.load_rtn, "round to nearest, one grid per row", default_bits=4,
    group_size=None, params={"sym": False}, color="#17becf", marker="P", code=(rtn, layerwise),
    layer_bytes=lambda r, c, b, g, p, st: row_bytes(r, c, b, 0, p, st)))
'''

TOY_TASK = """
task: toy_qa
dataset_path: json
dataset_kwargs:
  data_files: {{test: {data}}}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture
def extensions(tmp_path, monkeypatch):
    (tmp_path / "toy_method.py").write_text(TOY_METHOD)
    tasks = tmp_path / "tasks"
    (tasks / "toy_qa").mkdir(parents=True)
    data = tmp_path / "toy_qa.jsonl"
    data.write_text("".join(json.dumps({"question": q, "choices": ["yes", "no"], "answer": a}) + "\n"
                            for q, a in [("Is snow cold?", 0), ("Is fire cold?", 1), ("Is ice hot?", 1)]))
    (tasks / "toy_qa" / "toy_qa.yaml").write_text(textwrap.dedent(TOY_TASK.format(data=data)))
    (tasks / "benchmarks.yaml").write_text("toy_qa:\n  title: Toy QA\n  dimension: knowledge\n  metrics: [acc]\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("QUANTLIB_PLUGINS", "toy_method")
    monkeypatch.setenv("QUANTLIB_TASK_DIRS", str(tasks))
    return tmp_path


def test_a_toy_method_and_benchmark_run_summarize_and_plot(extensions, tiny_model):
    (extensions / "grid.yaml").write_text(textwrap.dedent(f"""\
        models: [{tiny_model}]
        methods: [fp, toy]
        perplexity: {{datasets: [wikitext2], seqlen: 64, limit: 1}}
        efficiency: {{prompt_tokens: 32, new_tokens: 2, repeats: 1}}
        benchmarks: {{toy_qa: {{limit: 3}}}}
        """))
    assert grid.main([str(extensions / "grid.yaml"), "--runs", str(extensions / "runs"), "--engine", "local"]) == 0
    df = summary.wide(summary.write(extensions / "runs", extensions / "summary.csv"))
    toy = df[df["method"] == "toy"].iloc[0]
    assert toy["label"] == "toy" and toy["title"] == "Toy" and toy["toy_qa_n"] == 3 and 0 <= toy["toy_qa"] <= 1
    assert 4 < toy["stored_bits"] < 5 and toy["kl_mean"] > 0  # stored-bits rule and divergence, from the registry
    assert toy["toy_qa_p"] >= 0  # paired with the baseline on the same items
    fig = report.plot_vs_bits(df, {"toy_qa": report.title("toy_qa"), "ppl_wikitext2": "WikiText-2"})
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any(t.startswith("Toy") for t in labels)
    assert f"{report.title('toy_qa')}, n = 3" in {ax.get_title() for ax in fig.axes}  # n in the panel title


def test_grids_with_a_default_limit_score_a_new_benchmark_unedited(extensions):
    from quantlib.io import paths

    spec = load_grid(paths.GRIDS / "default.yaml")[0]
    assert spec.benchmarks["toy_qa"] == {"limit": 8}
