"""The verifier audit: a planted blind spot is caught at its rate, an honest verifier shows ~0,
and the LLM judge path works against a real OpenAI-style HTTP server on 127.0.0.1."""

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tasks.data.synthetic import arithmetic
from tasks.verifiers import build_reward
from tasks.verifiers.audit import AuditTally, answer_candidates, audit_batch, recheck, wilson
from tasks.verifiers.audit_judge import Judge
from tasks.verifiers.audit_report import audit_completions, audit_text
from tasks.verifiers.math import MathAnswerReward


class ThousandsBlindMath(MathAnswerReward):
    """math_answer_reward with a planted blind spot: any answer written with a thousands separator scores 0."""

    def score_batch(self, texts, prompts, kwargs):
        scores = super().score_batch(texts, prompts, kwargs)
        return [0.0 if s is not None and "," in t.split("</think>")[-1] else s for s, t in zip(scores, texts)]


def _completion(answer: str, steps: str = "1+1=2") -> str:
    return f"<think>\n{steps}\n</think>\n<answer>{answer}</answer>"


def _blind_spot_batch():
    """100 right plain answers, 40 right with separators (the blind spot), 60 wrong: FN 40/100."""
    rng = random.Random(1)
    texts, golds = [], []
    for kind, count in (("plain", 100), ("separator", 40), ("wrong", 60)):
        for _ in range(count):
            g = rng.randint(1000, 999_999)
            shown = {"plain": str(g), "separator": f"{g:,}", "wrong": str(g + rng.randint(1, 9))}[kind]
            texts.append(_completion(shown))
            golds.append(str(g))
    return texts, golds


def _audit(reward, texts, golds, rate=1.0, judge=None):
    columns = {"answer": golds, "family": ["math"] * len(texts)}
    scores = reward(prompts=["q"] * len(texts), completions=texts, **columns)
    items, skipped = audit_batch(reward, texts, scores, ["q"] * len(texts), columns, sample_rate=rate,
                                 max_per_batch=10_000, max_seconds=60.0, rng=random.Random(0), judge=judge)
    tally = AuditTally()
    tally.add(items, skipped)
    return tally


def test_wilson_interval():
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(0, 50)
    assert lo == 0.0 and 0.05 < hi < 0.09  # zero observed still leaves ~7% possible at n=50
    lo, hi = wilson(40, 100)
    assert lo < 0.4 < hi and 0.30 < lo and hi < 0.50


@pytest.mark.parametrize(("text", "answers", "form"), [
    ("<think>x</think> <answer>\\boxed{12}</answer>", ["12"], "answer_tag"),
    ("<think>x</think> so \\boxed{\\frac{1}{2}}.", ["\\frac{1}{2}"], "boxed"),
    ("<think>x</think>\n#### 1,234", ["1,234"], "hash"),
    ("<think>x</think> The final answer is $42$.", ["42"], "phrase"),
    ("<think>x</think>\n  17 ", ["17"], "bare"),
    ("<think>the answer is 5", [], "none"),  # reasoning never closed: nothing counts
    ("<think>\\boxed{5}</think> I am not sure.", [], "none"),  # only inside the reasoning
])
def test_answer_region_reparse(text, answers, form):
    assert answer_candidates(text) == (answers, form)


def test_recheck_equivalences():
    assert recheck(_completion("1,000"), "1000").correct is True
    assert recheck(_completion("\\frac{3}{4}"), "0.75").correct is True
    assert recheck(_completion("(x+1)^2"), "x^2+2x+1").correct is True
    assert recheck(_completion("x^2+2x"), "x^2+2x+1").correct is False
    assert recheck("<think>a</think><answer>3</answer><answer>4</answer>", "3").correct is False
    assert recheck(_completion("Paris"), "paris").correct is True
    # nested tags (a real GRPO completion): math-verify would read `2+4=17` as 17
    assert recheck("<think></think>\n<answer>1=m=4\n<answer>2+4=17\n<answer>3-8</answer>", "17").correct is False


def test_planted_blind_spot_is_caught_at_its_rate():
    texts, golds = _blind_spot_batch()
    tally = _audit(ThousandsBlindMath(), texts, golds)
    s = tally.summary()
    assert (tally.negatives, tally.false_negatives, tally.positives, tally.false_positives) == (100, 40, 100, 0)
    assert s["audit/false_negative_rate"] == pytest.approx(0.4)
    assert s["audit/false_negative_rate_low"] > 0.3
    assert {d["kind"] for d in tally.disagreements} == {"false_negative"}
    assert all("," in d["answer"] for d in tally.disagreements)


def test_sampled_blind_spot_rate_falls_in_its_interval():
    texts, golds = _blind_spot_batch()
    s = _audit(ThousandsBlindMath(), texts * 3, golds * 3, rate=0.5).summary()
    assert 60 < s["audit/negatives_checked"] < 240
    assert s["audit/false_negative_rate_low"] <= 0.4 <= s["audit/false_negative_rate_high"]


def _embedded_batch():
    rows = arithmetic(300, seed=0, min_operands=2, max_operands=4, max_value=9, terse_fraction=0.3)
    rng = random.Random(0)
    texts, golds = [], []
    for r in rows:  # the embedded model's shapes: worked or terse, right or off (a sign, a digit)
        answer = r["answer"] if rng.random() < 0.6 else str(int(r["answer"]) + rng.choice([-2, -1, 1, 10]))
        answer = str(-int(answer)) if rng.random() < 0.05 else answer
        texts.append(_completion(answer, r["reasoning"] or r["question"]))
        golds.append(r["answer"])
    return texts, golds


@pytest.mark.parametrize("name", ["math_answer_reward", "exact_match_reward", "numeric_match_reward"])
def test_honest_verifier_on_the_embedded_tasks_shows_no_disagreement(name):
    """exact_match_reward once stripped the minus sign with the punctuation (`5` paid for `-5`);
    this audit found it on the embedded tasks, and its normaliser now keeps signs."""
    tally = _audit(build_reward(name), *_embedded_batch())
    assert tally.negatives > 50 and tally.positives > 100
    assert tally.false_negatives == tally.false_positives == tally.undecided == 0


class _StubChat(BaseHTTPRequestHandler):
    """A minimal OpenAI chat-completions server: replies with the server's `verdict`."""

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, self.headers.get("Authorization"), body))
        reply = {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": self.server.verdict}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_server():
    server = HTTPServer(("127.0.0.1", 0), _StubChat)
    server.requests, server.verdict = [], "True"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("verdict", "false_negatives"), [("True", 40), ("False.", 0), ("maybe", 40)])
def test_judge_decides_the_disagreements(stub_server, monkeypatch, verdict, false_negatives):
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    stub_server.verdict = verdict
    judge = Judge(f"http://127.0.0.1:{stub_server.server_port}/v1", "judge-model", "JUDGE_KEY", timeout_s=5)
    texts, golds = _blind_spot_batch()
    tally = _audit(ThousandsBlindMath(), texts, golds, judge=judge)
    assert tally.false_negatives == false_negatives  # "maybe" is no verdict: the rule-based re-check stands
    assert judge.calls == 40 and judge.failures == 0  # asked about the disagreements only
    path, auth, body = stub_server.requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test" and body["model"] == "judge-model"
    assert "Reference answer:" in body["messages"][0]["content"]


def test_unreachable_judge_leaves_the_rule_based_verdict():
    judge = Judge("http://127.0.0.1:9/v1", "m", api_key_env="", timeout_s=1, max_calls=3)
    texts, golds = _blind_spot_batch()
    tally = _audit(ThousandsBlindMath(), texts, golds, judge=judge)
    assert tally.false_negatives == 40 and judge.calls == 3 and judge.failures == 3


def test_verify_audit_report_names_rates_and_examples():
    texts, golds = _blind_spot_batch()
    rows = [{"id": str(i), "answer": g, "completion": t} for i, (t, g) in enumerate(zip(texts, golds))]
    report = audit_completions(rows, [ThousandsBlindMath(), build_reward("format_reward")])
    text = audit_text(report)
    assert "false negatives: 40.0%" in text and "of 100 checked" in text
    assert "[false_negative] math_answer_reward" in text


def test_a_judge_without_a_model_or_with_a_bad_url_is_a_recipe_error():
    from pydantic import ValidationError

    from tasks.recipe.audit import JudgeSettings

    with pytest.raises(ValidationError, match="judge.model"):
        JudgeSettings(url="http://127.0.0.1:8000/v1")
    with pytest.raises(ValidationError, match="http"):
        JudgeSettings(url="127.0.0.1:8000", model="m")
    assert JudgeSettings().url is None  # off by default
