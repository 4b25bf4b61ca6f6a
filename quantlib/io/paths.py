"""Every path the project uses, anchored at the repository root (showyourwork style)."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
GRIDS = DATA / "grids"
RUNS = DATA / "runs"                      # committed run records, one folder per run
SUMMARY = DATA / "summary.csv"            # the only table the book reads
NOTEBOOKS = ROOT / "notebooks"
RUN_TEMPLATE = NOTEBOOKS / "run.ipynb"
BOOK = ROOT / "book"
TASKS = ROOT / "quantlib" / "tasks"      # the built-in benchmarks (lm-eval task folders)


def cache_dir() -> Path:
    """Converted and quantized checkpoints (large, never committed)."""
    return Path(os.environ.get("QUANTLIB_CACHE", ROOT / ".cache")).resolve()


def data_dir() -> Path | None:
    """Offline benchmark copies (QUANTLIB_DATA_DIR); None means 'load from the hub'."""
    value = os.environ.get("QUANTLIB_DATA_DIR")
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"QUANTLIB_DATA_DIR={value!r} is not a directory")
    return path


def data_file(relative: str) -> Path:
    """A file inside the data directory, with an error that names what is missing."""
    base = data_dir()
    if base is None:
        raise FileNotFoundError(
            f"{relative!r} needs a local data directory: set QUANTLIB_DATA_DIR "
            "(for example ../shared/benchmarks)")
    path = base / relative
    if not path.exists():
        raise FileNotFoundError(f"missing data file {path} (QUANTLIB_DATA_DIR={base})")
    return path


def paper_dir() -> Path | None:
    """The paper's tables as CSV (QUANTLIB_PAPER_DIR; by default `paper/` beside the data directory);
    None when absent: the report then shows this project's numbers alone."""
    value = os.environ.get("QUANTLIB_PAPER_DIR")
    if value:
        path = Path(value).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"QUANTLIB_PAPER_DIR={value!r} is not a directory")
        return path
    base = data_dir()
    return base.parent / "paper" if base is not None and (base.parent / "paper" / "results.csv").exists() else None
