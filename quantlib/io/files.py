"""Atomic writes and checksums: a reader never sees half a file or half a folder."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; records are shared files
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
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest(obj) -> str:
    """A stable hash of a JSON-able value (cache keys, run names)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
