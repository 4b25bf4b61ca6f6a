import json
import random
from collections import defaultdict

import numpy as np

from quantlib.io import paths
from quantlib.scoring import judge
from quantlib.tasks.common import SEED, DataError
from quantlib.tasks.followbench import rules

KINDS = ("content", "situation", "style", "format", "example", "mixed")
HUB = "YuxinJiang/FollowBench"


def _read(kind: str) -> list[dict]:
    name = f"{kind}_constraints.json"
    if paths.data_dir() is not None:
        path = paths.data_file(f"followbench/{name}")
    else:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(HUB, f"data_en/{name}", repo_type="dataset")
    rows = json.loads(open(path, encoding="utf-8").read())
    missing = {"example_id", "source", "level", "instruction", "target"} - set(rows[0])
    if missing:
        raise DataError(f"followbench: {path} lacks field(s) {sorted(missing)}")
    return rows


def load(**_):
    """Rule-scoreable items (and judge items when a judge is configured), levels 1-5, seeds shuffled."""
    import datasets

    use_judge = judge.configured() is not None
    seeds = defaultdict(list)
    for kind in KINDS:
        for r in _read(kind):
            seeds[(kind, r["example_id"])].append(r)
    order = sorted(seeds)
    random.Random(SEED).shuffle(order)
    docs = []
    for kind, ex in order:
        levels = sorted(seeds[(kind, ex)], key=lambda r: r["level"])
        history = [r["instruction"] for r in levels]  # instructions of levels 0..5 (no level 0 for examples)
        for i, r in enumerate(levels):
            if r["level"] == 0:
                continue
            ruled = rules.is_rule_based(kind, r["source"], ex)
            if not ruled and not use_judge:
                continue
            docs.append({"seed": f"{kind}/{ex}", "kind": kind, "source": r["source"], "example_id": ex,
                         "level": r["level"], "instruction": r["instruction"], "target": str(r["target"]),
                         "scorer": "rule" if ruled else "judge",
                         "history": history[: i + 1]})
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def process_results(doc, results):
    g = results[0]
    if doc["scorer"] == "rule":
        v = rules.verdicts(doc["kind"], doc["source"], doc["example_id"], doc["level"], doc["target"], g)
    else:
        v = judge.parse(judge.ask(judge.prompt(doc["kind"], doc["history"], g)), doc["level"])
        v = v if v is not None else [False] * doc["level"]  # unreadable verdicts count as unmet
    out = {"hsr": float(all(v)), "ssr": float(np.mean(v)), "csl": (doc["seed"], doc["level"], all(v))}
    out.update({f"hsr_level{k}": (float(all(v)) if k == doc["level"] else np.nan) for k in range(1, 6)})
    return out


def nanmean(items):
    vals = [x for x in items if x == x]
    return float(np.mean(vals)) if vals else np.nan


def csl(items):
    """Consecutive satisfaction levels: per seed with all five levels scored, how many levels hold
    in a row from level 1; averaged over those seeds (NaN when no seed is complete)."""
    by_seed = defaultdict(dict)
    for seed, level, ok in items:
        by_seed[seed][level] = ok
    counts = []
    for levels in by_seed.values():
        if sorted(levels) != [1, 2, 3, 4, 5]:
            continue
        n = 0
        while n < 5 and levels[n + 1]:
            n += 1
        counts.append(n)
    return float(np.mean(counts)) if counts else np.nan
