"""An LLM judge for the constraints FollowBench does not check by rule (its protocol uses GPT-4).

Off by default. Set QUANTLIB_JUDGE_URL (an OpenAI-compatible base URL, e.g. http://host:8000/v1),
QUANTLIB_JUDGE_MODEL and, if the endpoint needs one, QUANTLIB_JUDGE_API_KEY; the FollowBench task then
also scores its judge-only items. Without them those items are skipped and the record says so.
"""
from __future__ import annotations

import ast
import json
import os
import re
import urllib.request

# FollowBench's wording of each constraint type in its judge prompt
KIND_WORDS = {"content": "content constraint",
              "situation": "scenario constraint (information to describe a specific situation/background)",
              "style": "style constraint", "format": "format constraint", "mixed": "constraint"}


def configured() -> dict | None:
    url, model = os.environ.get("QUANTLIB_JUDGE_URL"), os.environ.get("QUANTLIB_JUDGE_MODEL")
    return {"url": url.rstrip("/"), "model": model} if url and model else None


def prompt(kind: str, instructions: list[str], answer: str) -> str:
    """FollowBench's discriminative prompt: the instruction at each level, the answer, a YES/NO list."""
    level, word = len(instructions) - 1, KIND_WORDS[kind]
    per_time = " per time" if level > 1 else ""
    text = (f"Given an initial instruction, we add one {word}{per_time} and obtain the final instruction with "
            f"{level} additional constraint{'s' if level > 1 else ''}.\n\n#Initial Instruction#\n{instructions[0]}\n\n")
    for i in range(1, level + 1):
        text += f"#Initial Instruction + {i} constraint{'s' if i > 1 else ''}#\n{instructions[i]}\n\n"
    s = "s" if level > 1 else ""
    text += f"#Answer of Initial Instruction + {level} constraint{s}#\n{answer}\n\n"
    if level == 1:
        return text + ("#System#\n1) Please identify the 1 added constraint.\n2) Please descriminate if the "
                       "#Answer of Initial Instruction + 1 constraint# satisfies the 1 added constraint.\n3) In the "
                       "final line, only output a Python LIST with 1 element ('YES' or 'NO') indicating whether the "
                       "answer satisfies the 1 added constraint.")
    text += (f"#System#\n1) Please identify all {level} added constraints.\n2) For the {level} added constraints, "
             f"discriminate if the #Answer of Initial Instruction + {level} constraints# satisfies each constraint.\n"
             f"3) In the final line, only output a Python LIST with {level} elements ('YES' or 'NO') indicating "
             f"whether the answer satisfies each constraint.")
    return text


def parse(reply: str, level: int) -> list[bool] | None:
    """The judge's last line as one verdict per constraint; None when it cannot be read."""
    last = reply.strip().split("\n")[-1]
    found = re.search(r"\[.*\]", last)
    if found:
        try:
            items = ast.literal_eval(found.group())
        except (ValueError, SyntaxError):
            return None
        if len(items) == level and all(i in ("YES", "NO") for i in items):
            return [i == "YES" for i in items]
        return None
    if level == 1 and ("YES" in last) != ("NO" in last):
        return ["YES" in last]
    return None


def ask(text: str, cfg: dict | None = None, timeout: float = 120) -> str:
    """One greedy chat completion from the configured endpoint."""
    cfg = cfg or configured()
    if cfg is None:
        raise RuntimeError("no judge configured: set QUANTLIB_JUDGE_URL and QUANTLIB_JUDGE_MODEL")
    body = json.dumps({"model": cfg["model"], "temperature": 0,
                       "messages": [{"role": "user", "content": text}]}).encode()
    headers = {"Content-Type": "application/json"}
    if os.environ.get("QUANTLIB_JUDGE_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['QUANTLIB_JUDGE_API_KEY']}"
    req = urllib.request.Request(f"{cfg['url']}/chat/completions", data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)["choices"][0]["message"]["content"]
