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


def test_report_names_each_row_the_reason_for_its_score_and_the_stage_total():
    from tasks.recipe import GRPOStage

    rows = [{"answer": "3", "completion": GOOD},                               # right
            {"answer": "3", "completion": "<think>\nhm\n</think>\n<answer>4</answer>"},   # wrong
            {"answer": "3", "completion": "I think it is three."}]             # no answer found
    report = verify_completions(rows, [build_reward("math_answer_reward"), build_reward("format_reward")])
    math = report["math_answer_reward"]
    assert math["reasons"] == {"right answer": 1, "wrong answer": 1, "no answer found": 1}
    stage = GRPOStage(name="s1")  # math_answer_reward x1 + format_reward x0.2
    text = format_report(report, [stage])
    assert "id=line 1 (right answer '3')" in text and "id=line 2 (wrong answer '4')" in text
    assert "id=line 3 (no answer found)" in text and "id=None" not in text
    # per row: 1 + 0.2, 0 + 0.2, 0 + 0 -> mean 0.4667
    assert "stage s1: weighted total 0.4667 (mean over rows of 1×math_answer_reward + 0.2×format_reward)" in text
