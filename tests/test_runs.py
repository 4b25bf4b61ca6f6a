"""The papermill template and the grid runner: complete records, skip on rerun, failures recorded."""
import json
import subprocess
import sys

import papermill as pm
import pytest

from quantlib import grid, notebook, paths, records, summary
from quantlib.spec import load_grid

GRID = """models: [{model}]
methods:
  - fp
  - {{method: gptq, bits: [4]}}
calibration: {{n_samples: 4}}
perplexity: {{datasets: [wikitext2, c4], seqlen: 64, limit: 2}}
efficiency: {{prompt_tokens: 32, new_tokens: 4, repeats: 1}}
benchmarks:
  mmlu: {{limit: 1}}
  gsm8k: {{limit: 1}}
"""


def test_template_parameters_cell_matches_the_declared_parameters():
    params = pm.inspect_notebook(str(paths.RUN_TEMPLATE))
    assert {k: eval(v["default"]) for k, v in params.items()} == notebook.PARAMETERS


@pytest.fixture(scope="module")
def grid_run(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("grid")
    (d / "grid.yaml").write_text(GRID.format(model=tiny_model))
    rc = grid.main([str(d / "grid.yaml"), "--runs", str(d / "runs"), "--summary", str(d / "summary.csv"), "--engine", "local"])
    return d, rc


def test_grid_writes_complete_records(grid_run):
    d, rc = grid_run
    assert rc == 0
    folders = sorted((d / "runs").iterdir())
    assert len(folders) == 2
    for f in folders:
        assert records.status(f) == "done"
        for name in ("spec.json", "environment.json", "metrics.json", "efficiency.json", "run.ipynb", "samples/mmlu.jsonl",
                     "samples/gsm8k.jsonl"):
            assert (f / name).exists(), name
        spec = records.read_json(f / "spec.json")
        assert spec["name"] == f.name
        m = records.read_json(f / "metrics.json")
        assert set(m["perplexity"]) == {"wikitext2", "c4"} and m["perplexity"]["c4"]["windows"] == 2
        assert m["benchmarks"]["mmlu"]["n"] == 57 and m["benchmarks"]["gsm8k"]["n"] == 1
        e = records.read_json(f / "efficiency.json")  # measured in the run: the local engine runs one at a time
        assert e["new_tokens"] == 4 and e["decode_tokens_per_s"] > 0
        env = records.read_json(f / "environment.json")
        assert env["packages"]["torch"] and env["device"] == "cpu"
        executed = json.loads((f / "run.ipynb").read_text())
        assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    table = summary.collect(d / "runs")
    assert list(table["label"]) == ["fp32", "gptq-4b"] and table["ppl_wikitext2"].notna().all()
    assert table["decode_tok_s"].notna().all()


def test_rerun_skips_finished_runs(grid_run, capsys):
    d, _ = grid_run
    before = {f.name: (f / "metrics.json").stat().st_mtime_ns for f in (d / "runs").iterdir()}
    # the same grid named twice: each spec is visited once
    assert grid.main([str(d / "grid.yaml"), str(d / "grid.yaml"), "--runs", str(d / "runs"),
                      "--summary", str(d / "s.csv"), "--engine", "local"]) == 0
    assert capsys.readouterr().out.count("[skip]") == 2
    assert before == {f.name: (f / "metrics.json").stat().st_mtime_ns for f in (d / "runs").iterdir()}
    # make report leaves the table to its summary stage: no table written, not even a missing one
    assert grid.main([str(d / "grid.yaml"), "--runs", str(d / "runs"), "--summary", str(d / "none.csv"),
                      "--engine", "local", "--no-summary"]) == 0
    assert not (d / "none.csv").exists()


def test_truncated_record_is_redone(grid_run, capsys):
    d, _ = grid_run
    folder = sorted((d / "runs").iterdir())[0]
    text = (folder / "metrics.json").read_text()
    (folder / "metrics.json").write_text(text[: len(text) // 2])  # a write cut short
    assert not records.complete(folder)
    assert grid.main([str(d / "grid.yaml"), "--runs", str(d / "runs"), "--summary", str(d / "s.csv"), "--engine", "local"]) == 0
    out = capsys.readouterr().out
    assert out.count("[redo]") == 1 and out.count("[skip]") == 1
    assert records.complete(folder) and records.read_json(folder / "metrics.json")["name"] == folder.name


def test_failed_run_is_recorded_and_others_still_run(tiny_model, tmp_path):
    light = GRID.split("benchmarks:")[0]  # plumbing only: no benchmarks
    (tmp_path / "grid.yaml").write_text(light.format(model=tiny_model).replace(
        f"models: [{tiny_model}]", f"models: [{tmp_path / 'no-such-model'}, {tiny_model}]"))
    rc = grid.main([str(tmp_path / "grid.yaml"), "--runs", str(tmp_path / "runs"),
                    "--summary", str(tmp_path / "summary.csv"), "--engine", "local"])
    assert rc == 1
    states = sorted((f.name.split("__")[0], records.status(f)) for f in (tmp_path / "runs").iterdir())
    assert states == [("no-such-model", "failed")] * 2 + [(tiny_model.rsplit("/", 1)[-1], "done")] * 2
    failed = [f for f in (tmp_path / "runs").iterdir() if records.status(f) == "failed"]
    assert all("no-such-model" in records.read_json(f / "status.json")["error"] for f in failed)
    assert all((f / "run.ipynb").exists() and not (f / "metrics.json").exists() for f in failed)
    table = summary.collect(tmp_path / "runs")
    assert sorted(table["status"]) == ["done", "done", "failed", "failed"]


def test_unknown_notebook_parameter_fails(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="unknown notebook parameter.*mehtod"):
        pm.execute_notebook(str(paths.RUN_TEMPLATE), str(tmp_path / "out.ipynb"),
                            parameters={"mehtod": "gptq", "run_dir": str(tmp_path / "r")},
                            cwd=str(paths.ROOT), progress_bar=False)


def test_cli_rejects_bad_grid_without_touching_records(tmp_path):
    (tmp_path / "bad.yaml").write_text("models: [org/m]\nmethods: [{method: bnb-nf4, bits: 3}]\n")
    out = subprocess.run([sys.executable, "-m", "quantlib.grid", str(tmp_path / "bad.yaml"),
                          "--runs", str(tmp_path / "runs")], capture_output=True, text=True)
    assert out.returncode == 2 and "cannot run at 3 bits" in out.stderr
    assert not (tmp_path / "runs").exists()


def test_two_processes_publishing_the_same_cache_folder(tmp_path):
    """Two runs converting (or quantizing) the same weights at once: the second keeps the first's."""
    target = tmp_path / "model"
    for pid in (1, 2):
        tmp = tmp_path / f"model.tmp{pid}"
        tmp.mkdir()
        (tmp / "weights").write_text(str(pid))
        records.publish_dir(tmp, target)
        assert not tmp.exists()
    assert (target / "weights").read_text() == "1"
