"""FollowBench: the rule checks, HSR/SSR/CSL on toy verdicts, and the pluggable judge."""
import ast
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from quantlib.io import paths
from quantlib.scoring import judge
from quantlib.tasks.followbench import rules, utils


def _doc(kind="mixed", source="xsum", example_id=1, level=5, target="", seed="mixed/1"):
    return {"kind": kind, "source": source, "example_id": example_id, "level": level, "target": target,
            "seed": seed, "scorer": "rule", "history": []}


def test_leveled_constraints_give_hsr_and_ssr():
    good = "The team is planning an operation."
    out = utils.process_results(_doc(), [good])
    assert out["hsr"] == 1.0 and out["ssr"] == 1.0 and out["hsr_level5"] == 1.0
    # fails only constraint 4 (present continuous): 4 of 5 hold
    out = utils.process_results(_doc(), ["The team planned an operation."])
    assert out["hsr"] == 0.0 and out["ssr"] == pytest.approx(0.8)
    # at level 2 only the first two constraints count
    out = utils.process_results(_doc(level=2), ["The team planned an operation."])
    assert out["hsr"] == 1.0 and out["ssr"] == 1.0 and out["hsr_level2"] == 1.0
    assert out["hsr_level5"] != out["hsr_level5"]  # NaN: no level-5 item


def test_csl_counts_consecutive_levels_from_level_one():
    a = [("a", 1, True), ("a", 2, True), ("a", 3, False), ("a", 4, True), ("a", 5, True)]  # 2
    b = [("b", k, False) for k in range(1, 6)]                                             # 0
    c = [("c", k, True) for k in range(1, 6)]                                              # 5
    partial = [("d", 1, True), ("d", 2, True)]                                             # incomplete: ignored
    assert utils.csl(a + b + c + partial) == pytest.approx((2 + 0 + 5) / 3)
    assert utils.csl(partial) != utils.csl(partial)  # NaN without a complete seed


def test_example_pattern_must_be_followed():
    t = "{instruction}\nThe response is: {answer}"
    assert rules.example_matches(t, "The response is: Sports")
    assert not rules.example_matches(t, "Sports")
    assert not rules.example_matches(t, "The answer is: Sports")


def test_whole_answer_rules_accept_the_reference_answers():
    """Every whole-answer rule must accept FollowBench's own target (the real data when present)."""
    shared = paths.ROOT.parent / "shared" / "benchmarks" / "followbench"
    if not shared.exists():
        pytest.skip("the offline FollowBench copy is not next to the checkout")
    n = 0
    for kind in utils.KINDS:
        for r in json.loads((shared / f"{kind}_constraints.json").read_text()):
            if r["level"] > 0 and r["source"] in rules.WHOLE:
                answer = ast.literal_eval(r["target"])[0] if r["source"] == "CONLL2003" else r["target"]
                assert rules.verdicts(kind, r["source"], r["example_id"], r["level"], r["target"], answer) == [True]
                n += 1
    assert n >= 100


def test_without_a_judge_only_rule_items_are_scored(monkeypatch):
    monkeypatch.delenv("QUANTLIB_JUDGE_URL", raising=False)
    docs = utils.load()["test"]
    assert set(docs["scorer"]) == {"rule"} and not {"situation", "style"} & set(docs["kind"])
    # seeds stay whole, levels in order: a limit of 5k scores k complete seeds
    seeds = docs["seed"]
    assert all(seeds[i] == seeds[i + 1] or docs["level"][i + 1] == 1 for i in range(len(seeds) - 1))


def test_judge_prompt_and_parse():
    steps = ["Write a poem.", "Write a poem in a sad tone.", "Write a sad poem of 4 lines."]
    p = judge.prompt("style", steps, "A poem")
    assert "#Initial Instruction + 2 constraints#\nWrite a sad poem of 4 lines." in p and "LIST with 2 elements" in p
    assert judge.parse("reasoning...\n['YES', 'NO']", 2) == [True, False]
    assert judge.parse("['YES']", 2) is None and judge.parse("no idea", 2) is None
    assert judge.parse("YES", 1) == [True]


class _FakeJudge(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert body["temperature"] == 0 and body["messages"][0]["role"] == "user"
        reply = json.dumps({"choices": [{"message": {"content": "Checked.\n['YES', 'YES']"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_a_configured_judge_scores_the_judge_items(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _FakeJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("QUANTLIB_JUDGE_URL", f"http://127.0.0.1:{server.server_port}/v1")
    monkeypatch.setenv("QUANTLIB_JUDGE_MODEL", "fake-judge")
    try:
        docs = utils.load()["test"]
        judged = [d for d in docs if d["scorer"] == "judge"]
        assert {d["kind"] for d in judged} == {"situation", "style"}
        level2 = next(d for d in judged if d["level"] == 2)
        assert len(level2["history"]) == 3  # levels 0, 1, 2
        assert utils.process_results(level2, ["A farm sentence."])["hsr"] == 1.0
    finally:
        server.shutdown()
