"""Shared fixtures: a small offline data directory and a tiny random Llama with the real tokenizer."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from quantlib import models
from quantlib.tasks.mmlu._generate import SUBJECTS

# Natural English (public-domain style prose written for these tests) for perplexity checks.
PROSE = (
    "The river ran quietly past the old mill, where the miller's children used to play on summer "
    "evenings. In the spring the water rose and covered the low meadows, and the farmers waited "
    "for it to fall before they could plough. The town grew slowly around the bridge. Merchants "
    "came on market days with cloth, salt and iron tools, and travellers stopped at the inn to "
    "rest their horses before the long road over the hills. Nobody remembered who had built the "
    "first house, but everyone agreed that the church tower was the oldest stone in the valley. "
    "When the railway arrived, the mill closed and the children moved to the city to find work. "
)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A miniature QUANTLIB_DATA_DIR with the layout of ../shared/benchmarks."""
    d = tmp_path_factory.mktemp("benchmarks")
    (d / "perplexity").mkdir()
    (d / "perplexity" / "wikitext2.test.raw").write_text((PROSE + "\n") * 12)
    (d / "perplexity" / "ptb.test.txt").write_text((PROSE.lower() + "\n") * 12)
    pd.DataFrame({"text": [PROSE] * 12}).to_parquet(d / "perplexity" / "c4_validation_2k.parquet")
    (d / "speed").mkdir()
    (d / "speed" / "pg19_10146_excerpt.txt").write_text(PROSE * 4)
    (d / "calibration").mkdir()
    recs = [{"instruction": f"Describe item {i} of the list.", "input": "", "output": PROSE[: 80 + 10 * i]}
            for i in range(8)]
    (d / "calibration" / "alpaca_en_demo.json").write_text(json.dumps(recs))
    for split in ("test", "dev"):
        (d / "mmlu" / split).mkdir(parents=True)
        for s in SUBJECTS:
            pd.DataFrame({"question": ["What is 2 + 2?", "Which is a colour?"],
                          "choice0": ["3", "dog"], "choice1": ["4", "red"], "choice2": ["5", "run"],
                          "choice3": ["6", "tall"], "answer": [1, 1]}).to_csv(
                d / "mmlu" / split / f"{s}_{split}.csv", index=False)
    (d / "gsm8k").mkdir()
    (d / "gsm8k" / "test.jsonl").write_text("\n".join(json.dumps(
        {"question": f"Tom has {n} apples and buys 2 more. How many apples does he have?",
         "answer": f"He has {n} + 2 = {n + 2}.\n#### {n + 2}"}) for n in (3, 5)) + "\n")
    return d


@pytest.fixture(scope="session", autouse=True)
def _offline_env(data_dir):
    """Every test (and every papermill kernel it starts) reads the miniature data, never the hub."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUANTLIB_DATA_DIR", str(data_dir))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_VERBOSITY", "error")
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer Llama with random weights and SmolLM2's tokenizer and chat template, as a local path."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = models.load_tokenizer("smollm2-135m-instruct")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
