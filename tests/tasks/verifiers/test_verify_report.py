import pytest

from tasks.verifiers import build_reward
from tasks.verifiers.report import format_report, join_completions, verify_completions

GOOD = "<think>\n1+2=3\n</think>\n<answer>3</answer>"


def test_report_counts_outcomes_and_keeps_examples():
    rows = [{"id": "a", "answer": "3", "completion": GOOD},
            {"id": "b", "answer": "3", "completion": "<think>\n1+2=4\n</think>\n<answer>4</answer>"},
            {"id": "c", "answer": "\\frac{", "completion": GOOD}]  # unparseable gold: not applicable
    report = verify_completions(rows, [build_reward("math_answer_reward"), build_reward("format_reward")])
    math = report["math_answer_reward"]
    assert (math["scored"], math["not_applicable"], math["mean"]) == (2, 1, 0.5)
    assert set(math["examples"]) == {"1", "0", "n/a"}
    assert report["format_reward"]["mean"] == 1.0
    text = format_report(report)
    assert "math_answer_reward: mean 0.5000 over 2/3 rows (1 not applicable)" in text


def test_join_by_id_and_missing_ids_are_an_error():
    rows = join_completions([{"id": 1, "completion": GOOD}], [{"id": "1", "answer": "3"}])
    assert rows[0]["answer"] == "3"
    with pytest.raises(ValueError, match="no dataset row"):
        join_completions([{"id": "x", "completion": GOOD}], [{"id": "1", "answer": "3"}])
