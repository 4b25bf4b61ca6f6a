"""Run a grid: one papermill execution of notebooks/run.ipynb per spec, one record folder per run.

    python -m quantlib.running.grid data/grids/default.yaml [more grids ...] [--address ray://host:10001]

Runs are Ray tasks: on an embedded local Ray instance by default, on an existing cluster with
--address (or RAY_ADDRESS). Each task declares what it needs (--gpus-per-run, --cpus-per-run; by
default one GPU where there is one, else all CPUs), so Ray runs as many at once as fit: 8 on an
8-GPU machine, one at a time on a CPU box. A task lost with its worker is retried. --engine local
runs them one after another in this process, without Ray. Runs that share the CPUs leave memory
and speed to `make efficiency`, which measures them one at a time afterwards.

A finished run (status 'done' and a whole record) is skipped; a run cut short or with a truncated
record is redone. A failing run is recorded as 'failed' with its partial
notebook, the others still run, and the exit status is non-zero. The summary table is the reporting
layer's job (`python -m quantlib.reporting.summary`, make summary).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from pathlib import Path

from quantlib.io import paths
from quantlib.running import records
from quantlib.running.spec import RunSpec, SpecError, load_grid


def run_one(spec, runs: Path, template: Path = paths.RUN_TEMPLATE, kernel: str = "python3",
            measure_speed: bool = True) -> str:
    import papermill as pm

    folder = records.run_dir(spec.name, runs)
    if records.complete(folder):
        print(f"[skip] {spec.name}: finished earlier", flush=True)
        return "skipped"
    if records.status(folder) is not None:  # finished benchmarks are kept: the notebook resumes after them
        print(f"[resume] {spec.name}: its record is incomplete", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    earlier, earlier_cpu = round(records.earlier_seconds(folder), 1), records.earlier_cpu_seconds(folder)
    for stale in folder.glob(".run.*.ipynb"):  # an interrupted sitting's notebook: superseded by this one
        stale.unlink()
    records.set_status(folder, "running", pid=os.getpid(), host=platform.node(), earlier_seconds=earlier,
                       earlier_cpu_seconds=earlier_cpu, alive=records.now(), cpu_alive=0.0)
    tmp = folder / f".run.{os.getpid()}.ipynb"
    cpu0 = records.children_cpu_seconds()  # the notebook kernel is this process's child: its CPU time
    t0, alive = time.perf_counter(), records.heartbeat(folder, cpu_from=cpu0)
    print(f"[run ] {spec.name}", flush=True)
    try:
        params = dict(spec=spec.to_dict(), run_dir=str(folder), measure_speed=measure_speed)
        pm.execute_notebook(str(template), str(tmp), parameters=params, kernel_name=kernel, cwd=str(paths.ROOT),
                            progress_bar=False)
        if not (folder / "metrics.json").exists():
            raise RuntimeError("notebook finished without writing metrics.json")
    except Exception as e:  # recorded, then the grid goes on
        if tmp.exists():
            os.replace(tmp, folder / "run.ipynb")
        err = getattr(e, "ename", type(e).__name__) + ": " + str(getattr(e, "evalue", e))
        records.set_status(folder, "failed", error=err[-2000:], seconds=time.perf_counter() - t0,
                           earlier_seconds=earlier, cpu_seconds=round(records.children_cpu_seconds() - cpu0, 1),
                           earlier_cpu_seconds=earlier_cpu, traceback=traceback.format_exc()[-4000:])
        print(f"[FAIL] {spec.name}: {err[:300]}", flush=True)
        return "failed"
    finally:
        alive.set()  # the heartbeat stops however the sitting ends
    os.replace(tmp, folder / "run.ipynb")
    this = time.perf_counter() - t0  # seconds: every sitting's wall time (earlier_seconds: all but this one)
    cpu = records.children_cpu_seconds() - cpu0  # cpu_seconds likewise, unknown if a sitting's is
    records.set_status(folder, "done", seconds=round(this + earlier, 1), earlier_seconds=earlier,
                       cpu_seconds=None if earlier_cpu is None else round(cpu + earlier_cpu, 1),
                       earlier_cpu_seconds=earlier_cpu, pid=os.getpid(), host=platform.node())
    print(f"[done] {spec.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return "done"


def _task(spec: dict, runs: str, threads: int, measure_speed: bool) -> str:
    """One run inside a Ray worker: the kernel papermill starts uses the CPUs the task declared."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    return run_one(RunSpec.from_dict(spec), Path(runs), measure_speed=measure_speed)


def resources(cpus: float | None, gpus: float | None) -> tuple[float, float]:
    """Per-run resources: one GPU (and a CPU) where CUDA is present, otherwise every CPU (the
    Makefile asks for 1 CPU per run on CPU machines: two 1-thread runs beat one 2-thread run)."""
    import torch

    if gpus is None:
        gpus = 1.0 if torch.cuda.is_available() else 0.0
    if cpus is None:
        cpus = 1.0 if gpus else float(os.cpu_count() or 1)
    return cpus, gpus


def _ray_ready(address: str | None) -> bool:
    """Start (or connect to) Ray once, up front, so that a machine without it can fall back."""
    try:
        import ray

        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False)
        return True
    except Exception as e:  # ImportError, or a node that cannot start (no /dev/shm, sandboxed, ...)
        print(f"Ray unavailable: {type(e).__name__}: {e}", file=sys.stderr)
        return False


def run_on_ray(specs, runs: Path, address: str | None = None, cpus: float | None = None,
               gpus: float | None = None, retries: int = 2) -> dict:
    """Every unfinished spec as a Ray task; returns name -> outcome. A crashed worker's task is retried
    (its half-done folder is redone, see run_one); an error inside a run is recorded by run_one."""
    import ray

    cpus, gpus = resources(cpus, gpus)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False)
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=retries)(_task)
    # speed is measured inside a run only when the run has its hardware to itself: its own GPU, or
    # every CPU of the machine; otherwise afterwards, run by run (make efficiency)
    alone = gpus >= 1 or cpus >= (os.cpu_count() or 1)
    pending, outcome = {}, {}
    for s in specs:
        if s.name not in outcome and s.name not in pending.values():
            if records.complete(records.run_dir(s.name, runs)):
                print(f"[skip] {s.name}: finished earlier", flush=True)
                outcome[s.name] = "skipped"
            else:
                pending[remote.remote(s.to_dict(), str(runs), max(1, int(cpus)), alone)] = s.name
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(done[0])
            try:
                outcome[name] = ray.get(done[0])
            except ray.exceptions.RayError as e:  # lost beyond its retries
                records.set_status(records.run_dir(name, runs), "failed", error=f"{type(e).__name__}: {e}"[-2000:])
                print(f"[FAIL] {name}: {type(e).__name__}", flush=True)
                outcome[name] = "failed"
    finally:
        ray.shutdown()
    return outcome


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grids", type=Path, nargs="+", help="grid YAML file(s): models x methods x bits x benchmarks")
    ap.add_argument("--runs", type=Path, default=paths.RUNS, help="folder of run records")
    ap.add_argument("--engine", choices=("ray", "local"), default="ray", help="Ray tasks (default) or in-process")
    ap.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="an existing Ray cluster")
    ap.add_argument("--cpus-per-run", type=float, default=None)
    ap.add_argument("--gpus-per-run", type=float, default=None)
    ap.add_argument("--only", action="append", metavar="LABEL",
                    help="run only the cells with this label (e.g. gptq-4b, bf16; repeatable)")
    ap.add_argument("--speed-later", action="store_true",
                    help="local engine: leave memory and speed to `make efficiency` (the machine is busy)")
    args = ap.parse_args(argv)
    try:
        specs = [s for g in args.grids for s in load_grid(g) if not args.only or s.label in args.only]
        paths.data_dir()  # a bad QUANTLIB_DATA_DIR fails before any run starts
    except (SpecError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.engine == "ray" and not _ray_ready(args.address):
        if args.address:
            print(f"error: cannot reach the Ray cluster at {args.address}", file=sys.stderr)
            return 2
        print("warning: no local Ray instance could be started; running in-process (--engine local)",
              file=sys.stderr)
        args.engine = "local"
    if args.engine == "ray":
        outcome = run_on_ray(specs, args.runs, args.address, args.cpus_per_run, args.gpus_per_run)
    else:
        outcome = {}
        for s in specs:  # a spec listed by two grids runs once
            outcome[s.name] = outcome.get(s.name) or run_one(s, args.runs, measure_speed=not args.speed_later)
    from quantlib.scoring import efficiency  # torch: only once the runs are done

    deferred = [n for n, o in outcome.items() if o == "done" and not efficiency.settled(records.run_dir(n, args.runs))]
    if deferred:
        print(f"{len(deferred)} runs have no quiet speed timing (they shared the CPUs): "
              "measure it alone with `make efficiency`")
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
