"""The grid on a real local Ray instance: runs in parallel, a killed worker's run is retried."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from quantlib.io import files, paths
from quantlib.running import grid, records, stages

pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a real Ray instance: minutes (make test runs it; make test-fast does not)

LIGHT = """models: [{model}]
methods: [fp, {{method: gptq, bits: [4]}}]
calibration: {{n_samples: 4}}
perplexity: {{datasets: [wikitext2], seqlen: 64, limit: 2}}
efficiency: {{prompt_tokens: 32, new_tokens: {new_tokens}, repeats: 3}}
"""


def test_local_ray_instance_runs_a_small_grid(tiny_model, tmp_path):
    (tmp_path / "grid.yaml").write_text(LIGHT.format(model=tiny_model, new_tokens=16))
    rc = grid.main([str(tmp_path / "grid.yaml"), "--runs", str(tmp_path / "runs"), "--cpus-per-run", "1"])
    assert rc == 0
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(records.complete(f) for f in folders)
    # two runs shared the CPUs, so neither measured its speed; the stage does, one at a time
    if (os.cpu_count() or 1) > 1:
        assert not any((f / "efficiency.json").exists() for f in folders)
    assert stages.main(["efficiency"] + [str(f) for f in folders]) == 0
    for f in folders:
        e = files.read_json(f / "efficiency.json")
        assert e["new_tokens"] == 16 and e["decode_tokens_per_s"] > 0 and e["peak_memory_bytes"] > 0
    assert stages.main(["efficiency"] + [str(f) for f in folders]) == 0  # measured runs are skipped


def test_worker_killed_mid_run_is_retried(tiny_model, tmp_path):
    """kill -9 the worker that runs a grid cell: Ray runs the task again and the record completes."""
    (tmp_path / "grid.yaml").write_text(LIGHT.format(model=tiny_model, new_tokens=400).replace(
        "methods: [fp, {method: gptq, bits: [4]}]", "methods: [fp]"))
    runs = tmp_path / "runs"
    # every CPU for the run, so that it has the machine to itself and measures its (long) speed test
    proc = subprocess.Popen([sys.executable, "-m", "quantlib.running.grid", str(tmp_path / "grid.yaml"),
                             "--runs", str(runs), "--cpus-per-run", str(os.cpu_count() or 1)],
                            cwd=paths.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.time() + 240
    while killed is None and time.time() < deadline and proc.poll() is None:
        for st in runs.glob("*/status.json"):
            try:
                s = json.loads(st.read_text())
            except ValueError:
                continue
            if s.get("status") == "running" and s.get("pid"):
                time.sleep(3)  # mid-run: the kernel is up and working
                os.kill(s["pid"], signal.SIGKILL)
                killed = s["pid"]
        time.sleep(0.5)
    out, _ = proc.communicate(timeout=600)
    assert killed is not None, out[-2000:]
    assert proc.returncode == 0, out[-3000:]
    (folder,) = runs.iterdir()
    assert records.complete(folder)
    done = files.read_json(folder / "status.json")
    assert done["pid"] and done["pid"] != killed  # finished by the retried task, in another worker
