"""The papermill template and the grid runner: complete records, skip on rerun, resume mid-run,
failures recorded."""
import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import papermill as pm
import pytest

from quantlib.io import files, paths
from quantlib.reporting import summary
from quantlib.running import grid, notebook, records
from quantlib.scoring import efficiency

GRID = """models: [{model}]
methods:
  - fp
  - {{method: gptq, bits: [4]}}
calibration: {{n_samples: 4}}
perplexity: {{datasets: [wikitext2, c4], seqlen: 64, limit: 2}}
efficiency: {{prompt_tokens: 32, new_tokens: 16, repeats: 3}}
benchmarks:
  gsm8k: {{limit: 1}}
  snli: {{limit: 2}}
"""  # medians of 3 timings of 16 tokens: another job on the CPUs cannot make the prefill outlast the
# generation, which leaves the decode speed unmeasured (None)


def test_template_parameters_cell_matches_the_declared_parameters():
    params = pm.inspect_notebook(str(paths.RUN_TEMPLATE))
    assert {k: eval(v["default"]) for k, v in params.items()} == notebook.PARAMETERS


@pytest.fixture(scope="module")
def grid_run(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("grid")
    (d / "grid.yaml").write_text(GRID.format(model=tiny_model))
    rc = grid.main([str(d / "grid.yaml"), "--runs", str(d / "runs"), "--engine", "local"])
    return d, rc


def test_grid_writes_complete_records(grid_run):
    d, rc = grid_run
    assert rc == 0
    folders = sorted((d / "runs").iterdir())
    assert len(folders) == 2
    for f in folders:
        assert records.status(f) == "done"
        for name in ("spec.json", "environment.json", "metrics.json", "perplexity.json", "efficiency.json",
                     "run.ipynb", "benchmarks/gsm8k.json", "samples/gsm8k.jsonl", "benchmarks/snli.json"):
            assert (f / name).exists(), name
        spec = files.read_json(f / "spec.json")
        m = files.read_json(f / "metrics.json")
        assert spec["name"] == m["name"] == f.name and m["label"] == spec["label"] and m["stored_bits"] > 0
        ppl = files.read_json(f / "perplexity.json")["corpora"]
        assert set(ppl) == {"wikitext2", "c4"} and ppl["c4"]["windows"] == 2
        if spec["method"] == "gptq":  # next-token divergence from the same forward pass as perplexity
            assert ppl["c4"]["kl"] > 0 and ppl["c4"]["positions"] == 2 * 63
        assert files.read_json(f / "benchmarks" / "gsm8k.json")["n"] == 1
        st = files.read_json(f / "status.json")  # the kernel's CPU time, every core, at most wall x cores
        assert 0 < st["cpu_seconds"] <= st["seconds"] * os.cpu_count() * 1.05 and st["earlier_cpu_seconds"] == 0.0
        e = files.read_json(f / "efficiency.json")  # measured in the run: the local engine runs one at a time
        assert e["new_tokens"] == 16 and e["decode_tokens_per_s"] > 0 and e["machine"]
        # a quantized run times its full-precision model beside it, in the same sitting, interleaved
        assert ("baseline" in e) == (spec["method"] != "fp")
        assert spec["method"] == "fp" or (e["baseline"]["decode_tokens_per_s"] > 0 < e["baseline"]["run"][
            "decode_tokens_per_s"] and e["baseline"]["order"] == "interleaved")
        env = files.read_json(f / "environment.json")
        assert env["packages"]["torch"] and env["device"] == "cpu" and env["model"]["source"]
        executed = json.loads((f / "run.ipynb").read_text())
        assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    table = summary.wide(summary.collect(d / "runs"))
    fp = "bf16" if "bf16" in set(table["label"]) else "fp32"  # the machine's compute dtype
    assert sorted(table["label"]) == sorted([fp, "gptq-4b"])
    assert table["ppl_wikitext2"].notna().all() and table["decode_tok_s"].notna().all()
    assert table["kl_mean"].notna().sum() == 1 and table["gsm8k_n"].tolist() == [1, 1]


def test_rerun_skips_finished_runs(grid_run, capsys):
    d, _ = grid_run
    before = {f.name: (f / "metrics.json").stat().st_mtime_ns for f in (d / "runs").iterdir()}
    # the same grid named twice: each spec is visited once
    assert grid.main([str(d / "grid.yaml"), str(d / "grid.yaml"), "--runs", str(d / "runs"), "--engine", "local"]) == 0
    assert capsys.readouterr().out.count("[skip]") == 2
    assert before == {f.name: (f / "metrics.json").stat().st_mtime_ns for f in (d / "runs").iterdir()}


def test_interrupted_run_resumes_at_the_first_unfinished_benchmark(grid_run, capsys):
    """A run cut short after its first benchmark: the rerun keeps that result (and its speed, timed
    on a quiet machine) and scores the rest."""
    d, _ = grid_run
    folder = next(f for f in sorted((d / "runs").iterdir()) if "gptq" in f.name)
    kept = folder / "benchmarks" / "gsm8k.json"
    (folder / "benchmarks" / "snli.json").unlink()  # as if killed while scoring SNLI
    speed = files.read_json(folder / "efficiency.json")  # timed on a quiet machine: kept on resume
    speed["other_processes_cpus"] = speed["baseline"]["other_processes_cpus"] = 0.0
    files.write_json(folder / "efficiency.json", speed)
    assert efficiency.settled(folder)
    # the killed sitting started an hour ago and last wrote (a notebook checkpoint) 600 s after its start
    records.set_status(folder, "running")
    st = files.read_json(folder / "status.json")
    start = datetime.fromisoformat(st["time"]).timestamp() - 3600
    files.write_json(folder / "status.json", {**st, "time": datetime.fromtimestamp(start, timezone.utc).isoformat()})
    for f in folder.rglob("*"):
        if f.is_file() and f.name != "status.json":
            os.utime(f, (start, start))
    checkpoint = folder / ".run.999999.ipynb"
    checkpoint.write_text("{}")
    os.utime(checkpoint, (start + 600, start + 600))
    assert not records.complete(folder)
    assert grid.main([str(d / "grid.yaml"), "--runs", str(d / "runs"), "--engine", "local"]) == 0
    out = capsys.readouterr().out
    assert out.count("[resume]") == 1 and out.count("[skip]") == 1
    assert records.complete(folder) and (folder / "benchmarks" / "snli.json").exists()
    assert all(abs(f.stat().st_mtime - start) < 1e-3  # not redone
               for f in (kept, folder / "perplexity.json", folder / "efficiency.json"))
    done = files.read_json(folder / "status.json")
    assert done["earlier_seconds"] == 600.0 and done["seconds"] > 600  # both sittings' wall time
    assert done["cpu_seconds"] is None  # the killed sitting recorded no CPU time: the total is unknown
    assert not checkpoint.exists()  # the killed sitting's notebook is superseded
    executed = (folder / "run.ipynb").read_text()
    assert "perplexity: finished earlier" in executed and "gsm8k: exact_match" in executed
    printed = [o.get("text", "") for c in json.loads(executed)["cells"] for o in c.get("outputs", [])]
    assert any("efficiency.json kept" in "".join(t) for t in printed)  # its quiet timing was kept


def test_a_run_cut_inside_perplexity_keeps_the_corpora_it_finished(grid_run, capsys):
    d, _ = grid_run
    folder = next(f for f in sorted((d / "runs").iterdir()) if "gptq" in f.name)
    ppl = files.read_json(folder / "perplexity.json")
    del ppl["corpora"]["c4"]
    kept = ppl["corpora"]["wikitext2"]
    files.write_json(folder / "perplexity.json", ppl)  # as if killed while scoring C4
    for f in (folder / "benchmarks").glob("*.json"):
        f.unlink()
    records.set_status(folder, "running")
    assert grid.main([str(d / "grid.yaml"), "--runs", str(d / "runs"), "--engine", "local"]) == 0
    assert records.complete(folder)
    after = files.read_json(folder / "perplexity.json")["corpora"]
    assert after["wikitext2"] == kept and "c4" in after
    executed = (folder / "run.ipynb").read_text()
    assert "perplexity: finished earlier on wikitext2" in executed
    assert "finished earlier on c4" not in executed


def test_truncated_record_is_redone(grid_run, capsys):
    d, _ = grid_run
    folder = sorted((d / "runs").iterdir())[0]
    text = (folder / "metrics.json").read_text()
    (folder / "metrics.json").write_text(text[: len(text) // 2])  # a write cut short
    assert not records.complete(folder)
    assert grid.main([str(d / "grid.yaml"), "--runs", str(d / "runs"), "--engine", "local"]) == 0
    out = capsys.readouterr().out
    assert out.count("[resume]") == 1 and out.count("[skip]") == 1
    assert records.complete(folder) and files.read_json(folder / "metrics.json")["name"] == folder.name


def test_failed_run_is_recorded_and_others_still_run(tiny_model, tmp_path):
    light = GRID.split("benchmarks:")[0]  # plumbing only: no benchmarks
    (tmp_path / "grid.yaml").write_text(light.format(model=tiny_model).replace(
        f"models: [{tiny_model}]", f"models: [{tmp_path / 'no-such-model'}, {tiny_model}]"))
    rc = grid.main([str(tmp_path / "grid.yaml"), "--runs", str(tmp_path / "runs"), "--engine", "local"])
    assert rc == 1
    states = sorted((f.name.split("__")[0], records.status(f)) for f in (tmp_path / "runs").iterdir())
    assert states == [("no-such-model", "failed")] * 2 + [(tiny_model.rsplit("/", 1)[-1], "done")] * 2
    failed = [f for f in (tmp_path / "runs").iterdir() if records.status(f) == "failed"]
    assert all("no-such-model" in files.read_json(f / "status.json")["error"] for f in failed)
    assert all((f / "run.ipynb").exists() and not (f / "metrics.json").exists() for f in failed)
    table = summary.wide(summary.collect(tmp_path / "runs"))
    assert sorted(table["status"]) == ["done", "done", "failed", "failed"]


@pytest.mark.parametrize("params, msg", [({"mehtod": "gptq"}, "unknown notebook parameter.*mehtod"),
                                         ({"spec": {"model": "org/m", "method": "gptq", "bits": 5}},
                                          "cannot run at 5 bits")])
def test_bad_notebook_parameters_fail_at_the_door(tmp_path, params, msg):
    with pytest.raises(pm.PapermillExecutionError, match=msg):
        pm.execute_notebook(str(paths.RUN_TEMPLATE), str(tmp_path / "out.ipynb"),
                            parameters={**params, "run_dir": str(tmp_path / "r")}, cwd=str(paths.ROOT),
                            progress_bar=False)
    assert not (tmp_path / "r").exists()  # nothing written


def test_cli_rejects_bad_grid_without_touching_records(tmp_path):
    (tmp_path / "bad.yaml").write_text("models: [org/m]\nmethods: [{method: bnb-nf4, bits: 3}]\n")
    out = subprocess.run([sys.executable, "-m", "quantlib.running.grid", str(tmp_path / "bad.yaml"),
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
        files.publish_dir(tmp, target)
        assert not tmp.exists()
    assert (target / "weights").read_text() == "1"
