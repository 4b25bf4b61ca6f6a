"""Per-run stages after the grid: memory and decode speed of the runs that shared the CPUs (or were
timed on a busy machine: efficiency.settled), each measured alone in a fresh process (peak RSS must
not carry over an earlier model).

    python -m quantlib.running.stages efficiency [data/runs/<run> ...]   # default: every finished run
    python -m quantlib.running.stages efficiency --grid data/grids/default.yaml   # the finished runs of a grid
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from quantlib.io import paths
from quantlib.models import load as loading
from quantlib.quantization import methods
from quantlib.running import records
from quantlib.scoring import efficiency


def measure_efficiency(folder: Path) -> str:
    """Measure one run in this process unless its record already has a timing to keep."""
    if efficiency.settled(folder):
        return "done before"
    spec = records.read_spec(folder)
    model, _ = methods.load(spec.variant)
    model, kernel = methods.speed_model(spec.variant, model)
    efficiency.measure_into(folder, model, loading.load_tokenizer(spec.model), spec.efficiency, kernel,
                            baseline=efficiency.baseline_loader(spec))
    return "measured"


def measure_efficiency_fresh(folder: Path) -> str:
    if efficiency.settled(folder):
        return "done before"
    proc = subprocess.run([sys.executable, "-m", "quantlib.running.stages", "efficiency", "--here", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
    return "measured"


def folders_to_measure(runs: list[Path], grids: list[Path]) -> list[Path]:
    """The runs named, else the finished runs of the grids named, else every finished run."""
    if runs:
        return runs
    folders = [f for f in sorted(paths.RUNS.iterdir()) if records.complete(f)]
    if not grids:
        return folders
    from quantlib.running.spec import load_grid

    names = {s.name for g in grids for s in load_grid(g)}
    return [f for f in folders if f.name in names]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["efficiency"])
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--here", action="store_true", help="measure in this process (what each fresh process runs)")
    ap.add_argument("--grid", action="append", default=[], type=Path,
                    help="only the finished runs of this grid file (repeatable)")
    a = ap.parse_intermixed_args(argv)
    step = measure_efficiency if a.here else measure_efficiency_fresh
    try:
        folders = folders_to_measure(a.runs, a.grid)
    except (OSError, ValueError) as e:  # a missing or invalid grid file: named, nothing measured
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for f in folders:
        try:
            print(f"[{step(f)}] {f.name}", flush=True)
        except Exception as e:  # one failing run is reported and does not stop the others
            failed += 1
            print(f"[failed] {f.name}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
