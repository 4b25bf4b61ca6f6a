"""Run records: one folder per run, written atomically, with spec, metrics, environment and status."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from . import paths

PACKAGES = ("torch", "transformers", "accelerate", "bitsandbytes", "lm_eval", "datasets", "gguf",
            "papermill", "numpy", "safetensors")


RESULT_PATHS = ("quantlib", "notebooks", "data/grids", "requirements.txt", "requirements-data.txt")


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def publish_dir(tmp: Path, target: Path) -> None:
    """Move a finished folder into place in one step. When another process published the same target
    first (two runs converting or quantizing the same weights at once), keep theirs and drop ours."""
    try:
        os.rename(tmp, target)
    except OSError:
        if not Path(target).is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def run_dir(name: str, runs: Path | None = None) -> Path:
    return Path(runs or paths.RUNS) / name


def status(folder: Path) -> str | None:
    """The run's state; None when there is no readable status (never started, or cut mid-write)."""
    f = Path(folder) / "status.json"
    try:
        return read_json(f)["status"] if f.exists() else None
    except (ValueError, KeyError):
        return None


def complete(folder: Path) -> bool:
    """A finished run whose record is whole: status 'done', spec and metrics readable and naming
    this run, the executed notebook present. Anything less is redone by the grid runner."""
    folder = Path(folder)
    if status(folder) != "done" or not (folder / "run.ipynb").exists():
        return False
    try:
        return (read_json(folder / "spec.json")["name"] == folder.name
                and read_json(folder / "metrics.json")["name"] == folder.name)
    except (OSError, ValueError, KeyError):
        return False


def read_spec(folder: Path):
    """The RunSpec a record was made from; its name must still match the spec (same naming rule)."""
    from .spec import RunSpec, SpecError

    d = dict(read_json(Path(folder) / "spec.json"))
    name = d.pop("name", None)
    spec = RunSpec.from_dict(d)
    if spec.name != name:
        raise SpecError(f"{folder}: spec.json names {name!r}, but its spec is named {spec.name!r} now")
    return spec


def stage_main(measure, doc: str, argv=None) -> int:
    """A per-run stage after the grid (divergence, deferred efficiency): `measure(folder)` on every
    finished run, or on the folders given; one failing run is reported and does not stop the others."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", type=Path)
    a = ap.parse_args(argv)
    folders = a.runs or [f for f in sorted(paths.RUNS.iterdir()) if complete(f)]
    failed = 0
    for f in folders:
        try:
            print(f"[{measure(f)}] {f.name}", flush=True)
        except Exception as e:
            failed += 1
            print(f"[failed] {f.name}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    return 1 if failed else 0


def set_status(folder: Path, state: str, **extra) -> None:
    write_json(Path(folder) / "status.json",
               {"status": state, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra})


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
            "device_name": dev, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "data_dir": str(paths.data_dir()) if paths.data_dir() else None}
