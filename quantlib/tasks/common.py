"""Helpers the task folders share: local-or-hub loading, seeded order, and the metrics lm-eval lacks
in the form the paper uses (BLEU with a Chinese tokenizer, ROUGE with stemming, mean answer-token loss)."""
from __future__ import annotations

import json

import numpy as np

from quantlib.io import paths

SEED = 0
_tokenizer = None  # set by quantlib.scoring.harness before scoring (mean-token loss needs answer lengths)


class DataError(ValueError):
    """A benchmark file that is missing or lacks the columns its task needs."""


def set_tokenizer(tokenizer) -> None:
    global _tokenizer
    _tokenizer = tokenizer


def shuffled(dataset):
    """A fixed permutation, so that a `limit` takes items from every category/source, not the first."""
    return dataset.shuffle(seed=SEED).flatten_indices()


def require_columns(benchmark: str, path, columns) -> None:
    """Fail at the door with the benchmark, the file and the missing columns named."""
    text = open(path, encoding="utf-8").readline()
    if str(path).endswith(".jsonl"):
        have = set(json.loads(text)) if text.strip() else set()
    else:
        have = set(text.rstrip("\n").split("\t" if str(path).endswith(".tsv") else ","))
    missing = [c for c in columns if c not in have]
    if missing:
        raise DataError(f"{benchmark}: {path} lacks column(s) {missing} (has {sorted(have)})")


# --- translation --------------------------------------------------------------------------------
def corpus_bleu(items, tokenize: str) -> float:
    """sacrebleu corpus BLEU over (reference, hypothesis) pairs; 'zh' for Chinese targets, '13a' else."""
    import sacrebleu

    refs, hyps = zip(*items)
    return sacrebleu.corpus_bleu([h.strip() for h in hyps], [list(refs)], tokenize=tokenize).score


# --- summarization ------------------------------------------------------------------------------
def rouge(reference: str, prediction: str) -> dict:
    """ROUGE-1/2/L F-measure (x100) with rouge-score and the Porter stemmer."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    return {k: 100 * s.fmeasure for k, s in scorer.score(reference, prediction.strip()).items()}


def truncate_words(text: str, n: int) -> str:
    words = text.split()
    return text if len(words) <= n else " ".join(words[:n]) + " ..."


# --- multiple choice by mean answer-token loss (the paper's TruthfulQA protocol) ------------------
def mean_token_loglik(lls, choices) -> np.ndarray:
    """Log-likelihood per answer token: the choice with the lowest mean token loss wins."""
    if _tokenizer is None:
        raise RuntimeError("quantlib.tasks.common.set_tokenizer was not called before scoring")
    lengths = [max(1, len(_tokenizer(" " + c, add_special_tokens=False)["input_ids"])) for c in choices]
    return np.asarray(lls) / np.asarray(lengths)


# --- FLORES-200: two aligned files, not a dataset the harness can read ---------------------------
FLORES_HUB = {"eng_Latn": "eng_Latn", "zho_Hans": "cmn_Hans"}  # openlanguagedata/flores_plus names


def flores_pairs(src: str, tgt: str):
    """devtest sentence pairs from QUANTLIB_DATA_DIR/flores200/<lang>.devtest, or flores_plus on the hub."""
    import datasets

    if paths.data_dir() is not None:
        files = [paths.data_file(f"flores200/{lang}.devtest") for lang in (src, tgt)]
        s, t = (f.read_text(encoding="utf-8").rstrip("\n").split("\n") for f in files)
        if len(s) != len(t):
            raise DataError(f"flores200: {files[0]} has {len(s)} lines, {files[1]} has {len(t)}; they must align")
    else:
        s, t = (datasets.load_dataset("openlanguagedata/flores_plus", FLORES_HUB[lang], split="devtest")["text"]
                for lang in (src, tgt))
    ds = datasets.Dataset.from_dict({"id": list(range(len(s))), "source": s, "target": t})
    return datasets.DatasetDict({"devtest": shuffled(ds)})


# --- TruthfulQA: multiple-choice targets, from the hub's `multiple_choice` config or TruthfulQA.csv ---
def truthfulqa_targets(dataset):
    """Offline the CSV carries answers as '; '-joined text: MC1 = the best answer against the
    incorrect ones, MC2 = every correct answer against the incorrect ones (derived, as the data README says)."""
    if "mc1_targets" in dataset.column_names:
        return shuffled(dataset)

    def build(d):
        split = lambda s: [a.strip() for a in str(s).split(";") if a.strip()]
        best, correct, wrong = d["Best Answer"].strip(), split(d["Correct Answers"]), split(d["Incorrect Answers"])
        return {"question": d["Question"],
                "mc1_targets": {"choices": [best] + wrong, "labels": [1] + [0] * len(wrong)},
                "mc2_targets": {"choices": correct + wrong, "labels": [1] * len(correct) + [0] * len(wrong)}}
    return shuffled(dataset.map(build, remove_columns=dataset.column_names))
