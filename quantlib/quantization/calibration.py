"""GPTQ calibration samples: Alpaca instructions in the model's chat format (the paper's recipe)."""
from __future__ import annotations

import json
import random

import torch

from quantlib.io import paths

HUB_URL = "https://raw.githubusercontent.com/hiyouga/LLaMA-Factory/main/data/alpaca_en_demo.json"


def _records(relative: str) -> list[dict]:
    if paths.data_dir() is not None:
        return json.loads(paths.data_file(relative).read_text())
    import datasets  # hub access: the same file as published by LLaMA-Factory

    return list(datasets.load_dataset("json", data_files=HUB_URL, split="train"))


def chat_text(tokenizer, rec: dict) -> str:
    prompt = rec["instruction"] + (f"\n\n{rec['input']}" if rec.get("input") else "")
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": rec["output"]}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return f"{prompt}\n\n{rec['output']}"


def samples(tokenizer, cal) -> list[torch.Tensor]:
    """`cal.n_samples` records drawn with `cal.seed`, each tokenized and cut to `cal.max_tokens`."""
    recs = _records(cal.file)
    if cal.n_samples > len(recs):
        raise ValueError(f"calibration asks for {cal.n_samples} samples, {cal.file} has {len(recs)}")
    picked = random.Random(cal.seed).sample(recs, cal.n_samples)
    out = []
    for rec in picked:
        ids = tokenizer(chat_text(tokenizer, rec), add_special_tokens=False, return_tensors="pt").input_ids
        out.append(ids[:, : cal.max_tokens])
    return out
