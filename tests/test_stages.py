"""Which runs the efficiency stage times (quantlib.running.stages)."""
from pathlib import Path

from quantlib.io import files, paths
from quantlib.running import records, stages
from quantlib.running.spec import RunSpec, load_grid

GRID = """models: [{model}]
methods: [fp, {{method: rtn, bits: 4}}]
benchmarks: {{}}
"""


def _finished(runs: Path, spec: RunSpec) -> Path:
    folder = runs / spec.name
    folder.mkdir(parents=True)
    records.write_spec(folder, spec)
    files.write_json(folder / "metrics.json", {"name": spec.name})
    (folder / "run.ipynb").write_text("{}")
    records.set_status(folder, "done")
    return folder


def test_a_grid_limits_the_stage_to_its_finished_runs(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    (tmp_path / "grid.yaml").write_text(GRID.format(model=tiny_model))
    in_grid = [_finished(paths.RUNS, s) for s in load_grid(tmp_path / "grid.yaml")]
    other = _finished(paths.RUNS, RunSpec(model=tiny_model, method="rtn", bits=3))  # a run of another grid
    assert stages.folders_to_measure([], []) == sorted(in_grid + [other])
    assert stages.folders_to_measure([], [tmp_path / "grid.yaml"]) == sorted(in_grid)
    assert stages.folders_to_measure([other], [tmp_path / "grid.yaml"]) == [other]  # runs named win


def test_a_missing_grid_fails_naming_it_and_measures_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    assert stages.main(["efficiency", "--grid", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
