"""Run records: one folder per run, its state, its spec and the environment that made it.

A record folder holds spec.json, environment.json and status.json; metrics.json (the variant as
quantized: label, stored bits, sizes), perplexity.json (with next-token divergence), one
benchmarks/<name>.json and samples/<name>.jsonl per benchmark as each finishes, efficiency.json,
and the executed run.ipynb.
"""
from __future__ import annotations

import os
import platform
import subprocess
import threading
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from quantlib.io import files, paths

PACKAGES = ("torch", "transformers", "accelerate", "bitsandbytes", "lm_eval", "datasets", "gguf",
            "papermill", "numpy", "safetensors")
RESULT_PATHS = ("quantlib", "notebooks", "data/grids", "requirements.txt", "requirements-data.txt")


def run_dir(name: str, runs: Path | None = None) -> Path:
    return Path(runs or paths.RUNS) / name


def status(folder: Path) -> str | None:
    """The run's state; None when there is no readable status (never started, or cut mid-write)."""
    f = Path(folder) / "status.json"
    try:
        return files.read_json(f)["status"] if f.exists() else None
    except (ValueError, KeyError):
        return None


def complete(folder: Path) -> bool:
    """A finished run whose record is whole: status 'done', spec and metrics readable and naming
    this run, the executed notebook present. Anything less is resumed by the grid runner."""
    folder = Path(folder)
    if status(folder) != "done" or not (folder / "run.ipynb").exists():
        return False
    try:
        return (files.read_json(folder / "spec.json")["name"] == folder.name
                and files.read_json(folder / "metrics.json")["name"] == folder.name)
    except (OSError, ValueError, KeyError):
        return False


def write_spec(folder: Path, spec) -> None:
    files.write_json(Path(folder) / "spec.json", {"name": spec.name, "label": spec.label, "title": spec.title,
                                                  **spec.to_dict()})


def read_spec(folder: Path):
    """The RunSpec a record was made from; its name must still match the spec (same naming rule)."""
    from quantlib.running.spec import RunSpec, SpecError

    d = dict(files.read_json(Path(folder) / "spec.json"))
    name = d.pop("name", None)
    d.pop("label", None), d.pop("title", None)
    spec = RunSpec.from_dict(d)
    if spec.name != name:
        raise SpecError(f"{folder}: spec.json names {name!r}, but its spec is named {spec.name!r} now")
    return spec


def earlier_seconds(folder: Path) -> float:
    """Wall time the run's earlier sittings spent, for a run resumed after an interruption: a failed
    sitting's recorded seconds; a killed one's, from its start to its last heartbeat (at most a minute
    short) or, for records made before heartbeats, to the last file it wrote (a lower bound). 0 for a
    run never started."""
    folder = Path(folder)
    try:
        st = files.read_json(folder / "status.json")
    except (OSError, ValueError):
        return 0.0
    before = st.get("earlier_seconds", 0.0)
    if st.get("status") == "failed":
        return before + (st.get("seconds") or 0.0)
    if st.get("status") != "running" or "time" not in st:
        return before
    started = datetime.fromisoformat(st["time"]).timestamp()
    if "alive" in st:  # the sitting's last heartbeat
        return before + max(0.0, datetime.fromisoformat(st["alive"]).timestamp() - started)
    # records from before heartbeats: file times (wrong after a fresh checkout, which resets them)
    writes = [f.stat().st_mtime for f in folder.rglob("*") if f.is_file() and f.name != "status.json"]
    return before + max([0.0] + [w - started for w in writes])


def earlier_cpu_seconds(folder: Path) -> float | None:
    """CPU seconds (user + system, every core) the run's earlier sittings spent, as `earlier_seconds`
    reads wall time: a failed sitting's recorded `cpu_seconds`, a killed one's last heartbeat
    (`cpu_alive`). None where a sitting's CPU time was not recorded (records older than the field)."""
    try:
        st = files.read_json(Path(folder) / "status.json")
    except (OSError, ValueError):
        return 0.0
    before = st.get("earlier_cpu_seconds", None if st.get("earlier_seconds") else 0.0)
    this = {"failed": st.get("cpu_seconds"), "running": st.get("cpu_alive")}.get(st.get("status"), 0.0)
    return None if before is None or this is None else before + this


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's children: those it has reaped (a finished run's
    notebook kernel) and the live ones so far (a running one's)."""
    import resource

    import psutil

    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            live += t.user + t.system
        except psutil.Error:  # ended between the listing and the reading: counted as reaped next time
            pass
    return reaped.ru_utime + reaped.ru_stime + live


_STATUS = threading.Lock()  # the heartbeat thread and the run share status.json
HEARTBEAT_SECONDS = 60


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def set_status(folder: Path, state: str, **extra) -> None:
    with _STATUS:
        files.write_json(Path(folder) / "status.json", {"status": state, "time": now(), **extra})


def heartbeat(folder: Path, every: float = HEARTBEAT_SECONDS, cpu_from: float | None = None) -> threading.Event:
    """Stamps `alive` into a running record's status.json every `every` seconds until the returned
    event is set: a killed sitting's wall time is read from it (file times do not survive a checkout);
    with `cpu_from` (children_cpu_seconds() at the sitting's start) also `cpu_alive`, its CPU time so far."""
    stop, f = threading.Event(), Path(folder) / "status.json"

    def beat():
        while not stop.wait(every):
            cpu = {} if cpu_from is None else {"cpu_alive": round(children_cpu_seconds() - cpu_from, 1)}
            with _STATUS:
                try:
                    st = files.read_json(f)
                    if st.get("status") == "running":
                        files.write_json(f, st | {"alive": now()} | cpu)
                except (OSError, ValueError):
                    pass

    threading.Thread(target=beat, daemon=True).start()
    return stop


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(paths.ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        # "-dirty" when code that shapes results differs from the commit (prose edits do not count)
        dirty = subprocess.run(["git", "-C", str(paths.ROOT), "status", "--porcelain", "--untracked-files=no",
                                "--", *RESULT_PATHS], capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def machine() -> str:
    """What computed a record, in words: the GPU, or the CPU, its core count and whether it computes
    bf16 natively. The part in parentheses is what speeds are compared by (report.comparable_speeds)."""
    import torch

    from quantlib.models.bf16_cpu import cpu_has_amx, cpu_has_bf16

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    bf16 = "emulated" if not cpu_has_bf16() else "native, AMX" if cpu_has_amx() else "native"
    return cpu_machine(cpu_name(), os.cpu_count(), bf16)


def cpu_machine(name: str, cpus, bf16: str) -> str:
    """A CPU machine in words: its name, core count and how it computes bf16 ('native', 'native, AMX'
    or 'emulated')."""
    return f"{name} ({cpus} CPUs, bf16 {bf16})"


def write_environment(folder: Path, extra: dict) -> None:
    """environment.json for this sitting; a resumed run's earlier sittings that ran elsewhere (another
    machine or commit) are kept under `earlier`, since their results are in the record too."""
    f, env = Path(folder) / "environment.json", environment() | extra
    if f.exists():
        old = files.read_json(f)
        earlier = old.pop("earlier", [])
        same = all(old.get(k) == env.get(k) for k in ("machine", "git_sha", "packages"))
        env["earlier"] = earlier if same else earlier + [old]
    files.write_json(f, env)


def environment() -> dict:
    import torch

    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[p] = None
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "git_sha": git_sha(), "device": "cuda" if torch.cuda.is_available() else "cpu",
            "device_name": dev, "machine": machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "data_dir": "QUANTLIB_DATA_DIR" if paths.data_dir() else None}
