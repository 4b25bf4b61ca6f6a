"""FollowBench's rule-based constraint checks (English), reimplemented after the benchmark's own
`code/rule_based_evaluation.py` (Jiang et al., 2024, github.com/YJiangcm/FollowBench).

Multi-level sources add one constraint per level; each is checked on its own, so a level-l answer
has l verdicts (HSR: all hold; SSR: the share that holds). Sources whose constraints all shape a
single expected answer (and the example-pattern constraints) have one verdict for the whole answer.
"""
from __future__ import annotations

import ast
import re
import string

# sources FollowBench scores by rule; everything else needs its LLM judge
RULE_SOURCES = {"E2E", "WIKIEVENTS", "CONLL2003", "text_editing", "cnn_dailymail", "xsum", "samsum",
                "gigaword", "arxiv", "BBH_logical", "BBH_time", "self_made_space", "gsm_8k"}
RULE_FORMAT_IDS = {22, 30}  # format-category seeds with rule checks


def sentences(g: str) -> list[str]:
    return [s for s in re.split(r"[.!?]", g) if s]


def has_word(g: str, w: str) -> bool:
    return re.search(r"\b" + re.escape(w) + r"\b", g) is not None


def nth_sentence(g: str, n: int) -> str | None:
    s = sentences(g)
    return s[n - 1] if len(s) >= n else None


def nth_has_word(g: str, n: int, w: str) -> bool:
    s = nth_sentence(g, n)
    return s is not None and has_word(s, w)


def present_perfect(s: str | None) -> bool:
    return s is not None and re.search(r"\b(has|have)\s+\w+", s) is not None


def present_continuous(s: str) -> bool:
    return re.search(r"\b(am|is|are)\s+\w+ing\b", s) is not None


def n_words(g: str) -> int:
    return len(g.split(" "))


def _paragraphs(g: str) -> list[str]:
    return g.split("\n\n")


# the five constraints added at levels 1..5, one predicate each
LEVELED = {
    "cnn_dailymail": [
        lambda g: len(sentences(g)) == 3,
        lambda g: all(len(s.split()) < 15 for s in sentences(g)),
        lambda g: nth_has_word(g, 1, "Potter") and nth_has_word(g, 2, "actor") and nth_has_word(g, 3, "films"),
        lambda g: not nth_has_word(g, 2, "lavish"),
        lambda g: present_perfect(nth_sentence(g, 3)),
    ],
    "xsum": [
        lambda g: len(sentences(g)) == 1,
        lambda g: n_words(g) < 20,
        lambda g: not has_word(g, "Newton Stewart"),
        present_continuous,
        lambda g: has_word(g, "operation"),
    ],
    "samsum": [
        lambda g: len(sentences(g)) == 1,
        lambda g: n_words(g) < 15,
        lambda g: has_word(g, "stuff"),
        lambda g: re.search("procrast", g, re.IGNORECASE) is None,
        lambda g: sum(c in string.punctuation for c in g) == 1,
    ],
    "gigaword": [
        lambda g: n_words(g) == 8,
        lambda g: not any(c in string.punctuation for c in g),
        str.islower,
        lambda g: not has_word(g, "bus"),
        lambda g: has_word(g, "in"),
    ],
    "arxiv": [
        lambda g: len(sentences(g)) == 1,
        lambda g: n_words(g) <= 20,
        lambda g: g[:2] == "We",
        lambda g: has_word(g, "activations"),
        lambda g: not has_word(g, "transformer"),
    ],
}


def _last(pattern: str, g: str) -> str | None:
    found = re.findall(pattern, g)
    return found[-1] if found else None


# one verdict for the whole answer: (generation, target) -> bool
WHOLE = {
    "E2E": lambda g, t: g == t,
    "text_editing": lambda g, t: g == t,
    "WIKIEVENTS": lambda g, t: all(line in t.split("\n") for line in g.split("\n")),
    "CONLL2003": lambda g, t: g in ast.literal_eval(t),
    "BBH_logical": lambda g, t: _last(r"\([A-Z]\)", g) == t,
    "BBH_time": lambda g, t: _last(r"\d{2}/\d{2}/\d{4}", g) == t,
    "self_made_space": lambda g, t: t in g,
    "gsm_8k": lambda g, t: _last(r"\$\d+", g) == t,
}


def _format22(level: int) -> list:
    paras = lambda g: _paragraphs(g)
    return [
        lambda g: len(paras(g)) == (4 if level == 5 else 3),  # level 5 adds a closing paragraph
        lambda g: len(paras(g)) >= 3 and all(len(sentences(p)) < 3 for p in paras(g)[:3]),
        lambda g: all(len(s.split()) > 20 for s in sentences(g)),
        lambda g: all(re.match(r"\d+\.", p.lstrip()) for p in paras(g) if p.strip()),
        lambda g: g.endswith("Those are suggestions"),
    ]


def _format30_sentences(g: str) -> list[str]:
    return re.split(r"(?<!\w\.\w.)(?<![A-Z][a-z]\.)(?<=\.|\?)\s", g)


FORMAT30 = [
    lambda g: "**" in g,
    lambda g: len(re.findall(r"\*\*[\d].+?:", g)) == 5,
    lambda g: all(len(s.split(".")) < 3 for s in _format30_sentences(g) if any(f"{n}." in s for n in range(1, 6))),
    lambda g: all(10 <= len(s.split()) <= 15 for s in _format30_sentences(g)),
    lambda g: all(not w.endswith("-ly") for s in _format30_sentences(g) for w in s.split()),
]


def example_matches(template: str, g: str) -> bool:
    """Example constraints: the answer must fill the demonstrated pattern ('{answer}' is free text)."""
    pattern = template.replace("{instruction}\n", "").replace("{{", "{").replace("}}", "}").replace("{answer}", ".*")
    return re.fullmatch(re.escape(pattern).replace(r"\.\*", ".*"), g) is not None


def is_rule_based(kind: str, source: str, example_id: int) -> bool:
    return kind == "example" or source in RULE_SOURCES or (kind == "format" and example_id in RULE_FORMAT_IDS)


def verdicts(kind: str, source: str, example_id: int, level: int, target: str, generation: str) -> list[bool]:
    """One bool per constraint checked (l of them for leveled sources, one for whole-answer checks)."""
    g = generation.strip()
    if kind == "example":
        return [example_matches(target, g)]
    if source in WHOLE:
        return [bool(WHOLE[source](g, target))]
    if source in LEVELED:
        return [bool(c(g)) for c in LEVELED[source][:level]]
    if kind == "format" and example_id == 22:
        return [bool(c(g)) for c in _format22(level)[:level]]
    if kind == "format" and example_id == 30:
        return [bool(c(g)) for c in FORMAT30[:level]]
    raise ValueError(f"followbench: no rule for {kind}/{source}/{example_id}")
