"""Loading any model: a registry name (models/registry.yaml), a hub id or a local path, on CUDA
when present, in the compute dtype of the run.

Packaged models are GGUF files. transformers dequantizes a GGUF on load but will not quantize or
save it directly, so it is converted once into a cached safetensors checkpoint (with its
provenance): the dequantized weights are the 'full-precision' baseline of this report.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from quantlib.io import files, paths
from quantlib.models import bf16_cpu, embedded
from quantlib.models.bf16_cpu import cpu_has_bf16

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def compute_dtype(requested: str = "auto") -> str:
    """'auto': bfloat16 on CUDA and on CPUs with native bf16 (the paper's baseline is BF16), else float32."""
    if requested != "auto":
        if requested not in DTYPES:
            raise ValueError(f"unknown dtype {requested!r}; known: auto, {', '.join(DTYPES)}")
        return requested
    return "bfloat16" if device() == "cuda" or cpu_has_bf16() else "float32"


def is_registered(model: str) -> bool:
    return model in embedded.registry()


def resolve(model: str) -> str:
    """A path or hub id that `from_pretrained` loads without GGUF handling."""
    if is_registered(model):
        return str(_convert_embedded(model))
    if Path(model).expanduser().exists():
        return str(Path(model).expanduser().resolve())
    if model.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"model path {model!r} does not exist")
    if "/" not in model:
        raise ValueError(f"unknown model {model!r}: not a registered model ({sorted(embedded.registry())}), "
                         "not an existing local path, and not a hub id of the form org/name")
    return model  # hub id; from_pretrained reports it if it does not exist


def provenance(model: str) -> dict:
    """Where the weights come from: the GGUF header of a registered model, else the id or path."""
    if is_registered(model):
        return files.read_json(_convert_embedded(model) / "provenance.json")
    return {"source": model}


def _convert_embedded(name: str) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target = paths.cache_dir() / "models" / name
    if (target / "config.json").exists() and (target / "provenance.json").exists():
        return target
    gguf = embedded.gguf_file(name)
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
    prov = {"model": name, "upstream": embedded.registry()[name]["upstream"], **embedded.provenance(gguf),
            "n_params": sum(p.numel() for p in model.parameters())}
    (tmp / "provenance.json").write_text(json.dumps(prov, indent=1))
    files.publish_dir(tmp, target)  # atomic: a half-written checkpoint is never picked up
    return target


class Fp32Head(torch.nn.Module):
    """The output projection computed in fp32 from an fp32 copy of its weight: bf16 logits are rounded
    to steps of 0.125 at the magnitudes LLM logits take, which ties the log-likelihoods of
    multiple-choice answers (9% of MMLU items for Qwen2.5-Coder-0.5B) and biases the argmax toward
    the first choice. Scoring reads exact logits; the body still computes in the run's dtype."""

    def __init__(self, head: torch.nn.Linear):
        super().__init__()
        self.weight, self.bias = head.weight, head.bias  # the model's own (tied) parameters, untouched
        self.register_buffer("weight32", head.weight.detach().float(), persistent=False)

    def forward(self, x):
        bias = None if self.bias is None else self.bias.float()
        return torch.nn.functional.linear(x.float(), self.weight32, bias)


def exact_logits(model):
    """The model with fp32 logits (a no-op in fp32): what perplexity and benchmarks are scored with."""
    head = model.get_output_embeddings()
    if isinstance(head, torch.nn.Linear) and head.weight.dtype != torch.float32:
        model.set_output_embeddings(Fp32Head(head))
    return model


LOGITS = "float32"  # the precision scores are computed in (part of every score's cache key)


def load_tokenizer(model: str):
    """The model's tokenizer; a registered model's comes straight from its GGUF when the model has
    not been converted yet (no 40-60 s conversion just for a tokenizer)."""
    from transformers import AutoTokenizer

    converted = paths.cache_dir() / "models" / model
    if is_registered(model) and not (converted / "provenance.json").exists():
        gguf = embedded.gguf_file(model)
        return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return AutoTokenizer.from_pretrained(resolve(model))


def load_fp(model: str, dtype: str = "auto"):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(resolve(model), dtype=DTYPES[compute_dtype(dtype)],
                                             device_map=device())
    bf16_cpu.install(m)  # bf16 computed in fp32 where this CPU would emulate it slowly
    return m.eval()
