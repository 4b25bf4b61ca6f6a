"""Run a grid: one papermill execution of notebooks/run.ipynb per spec, one record folder per run.

    python -m quantlib.grid data/grids/default.yaml [more grids ...]

A finished run (status 'done' and a whole record) is skipped; a run cut short or with a truncated
record is redone. A failing run is recorded as 'failed' with its partial
notebook, the others still run, and the exit status is non-zero. The summary table is rebuilt at the end.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from . import notebook, paths, records, summary
from .spec import SpecError, load_grid


def run_one(spec, runs: Path, template: Path = paths.RUN_TEMPLATE, kernel: str = "python3") -> str:
    import papermill as pm

    folder = records.run_dir(spec.name, runs)
    if records.complete(folder):
        print(f"[skip] {spec.name}: finished earlier", flush=True)
        return "skipped"
    if records.status(folder) == "done":
        print(f"[redo] {spec.name}: its record is incomplete", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").unlink(missing_ok=True)  # never mix a stale result into a new attempt
    records.set_status(folder, "running")
    tmp = folder / f".run.{os.getpid()}.ipynb"
    t0 = time.perf_counter()
    print(f"[run ] {spec.name}", flush=True)
    try:
        pm.execute_notebook(str(template), str(tmp), parameters=notebook.from_spec(spec, str(folder)),
                            kernel_name=kernel, cwd=str(paths.ROOT), progress_bar=False)
        if not (folder / "metrics.json").exists():
            raise RuntimeError("notebook finished without writing metrics.json")
    except Exception as e:  # recorded, then the grid goes on
        if tmp.exists():
            os.replace(tmp, folder / "run.ipynb")
        err = getattr(e, "ename", type(e).__name__) + ": " + str(getattr(e, "evalue", e))
        records.set_status(folder, "failed", error=err[-2000:], seconds=time.perf_counter() - t0,
                           traceback=traceback.format_exc()[-4000:])
        print(f"[FAIL] {spec.name}: {err[:300]}", flush=True)
        return "failed"
    os.replace(tmp, folder / "run.ipynb")
    records.set_status(folder, "done", seconds=round(time.perf_counter() - t0, 1))
    print(f"[done] {spec.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return "done"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grids", type=Path, nargs="+", help="grid YAML file(s): models x methods x bits x benchmarks")
    ap.add_argument("--runs", type=Path, default=paths.RUNS, help="folder of run records")
    ap.add_argument("--summary", type=Path, default=paths.SUMMARY, help="summary table to (re)write")
    args = ap.parse_args(argv)
    try:
        specs = [s for g in args.grids for s in load_grid(g)]
        paths.data_dir()  # a bad QUANTLIB_DATA_DIR fails before any run starts
    except (SpecError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    outcome = {}
    for s in specs:  # a spec listed by two grids runs once
        outcome[s.name] = outcome.get(s.name) or run_one(s, args.runs)
    summary.write(args.runs, args.summary)
    failed = [n for n, o in outcome.items() if o == "failed"]
    print(f"{len(outcome)} runs: " + ", ".join(f"{sum(o == k for o in outcome.values())} {k}"
                                            for k in ("done", "skipped", "failed")))
    if failed:
        print("failed runs (see status.json and run.ipynb in each folder):\n  " + "\n  ".join(failed),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
