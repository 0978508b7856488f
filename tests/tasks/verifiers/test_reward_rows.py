"""The row-to-reward contract: columns, routing by family, and the pre-training column check."""

import json

from tasks.verifiers import build_reward
from tasks.verifiers.rows import column_problems, family_means, repeat_columns, reward_columns

MATH = {"id": "m1", "family": "math", "question": "Compute 1+2.", "answer": "3", "metadata": {"level": 1}}
COUNTDOWN = {"id": "c1", "family": "countdown", "question": "Use 2, 3, 4 to make 10.", "answer": "2*3+4",
             "metadata": {"numbers": [2, 3, 4], "target": 10}}
CODE = {"id": "k1", "family": "code", "question": "Write f(x) returning x+1.", "answer": "",
        "metadata": {"tests": [{"type": "assert", "code": "assert f(1) == 2"}]}}


def test_every_canonical_column_and_metadata_field_becomes_a_column():
    cols = reward_columns([MATH, COUNTDOWN, CODE])
    assert cols["family"] == ["math", "countdown", "code"]
    assert cols["level"] == [1, None, None]
    assert cols["numbers"] == [None, [2, 3, 4], None]
    assert json.loads(cols["tests"][2]) == CODE["metadata"]["tests"]  # structured values travel as JSON
    assert "metadata" not in cols and cols["reasoning"] == [None, None, None]


def test_a_canonical_column_wins_over_a_metadata_field_of_the_same_name():
    cols = reward_columns([{**MATH, "metadata": {"answer": "999"}}])
    assert cols["answer"] == ["3"]


def test_repeat_columns_gives_one_value_per_completion():
    assert repeat_columns({"id": ["a", "b"]}, [2, 1]) == {"id": ["a", "a", "b"]}


def test_mixture_rows_are_scored_by_their_own_family_verifiers():
    rows = [MATH, COUNTDOWN]
    texts = ["<think>1+2</think><answer>3</answer>", "<think>x</think><answer>2*3+4</answer>"]
    cols = reward_columns(rows)
    assert build_reward("math_answer_reward")(completions=texts, **cols) == [1.0, None]
    assert build_reward("equation_reward")(completions=texts, **cols) == [None, 1.0]
    assert family_means([1.0, None, 0.0], ["math", "countdown", "math"]) == {"math": 0.5}


def test_a_reward_missing_its_column_is_an_error_naming_reward_column_and_stage():
    bare = {**CODE, "metadata": {}}
    problems = column_problems("grpo.stages 'stage-1' rewards", [build_reward("code_reward")], [bare])
    assert len(problems) == 1
    assert "'stage-1'" in problems[0] and "code_reward" in problems[0] and "'tests'" in problems[0]
    assert column_problems("s", [build_reward("code_reward")], [CODE]) == []


def test_a_reward_for_a_family_the_rows_lack_is_an_error():
    problems = column_problems("s", [build_reward("equation_reward")], [MATH])
    assert problems and "countdown" in problems[0] and "math" in problems[0]


def test_family_reward_routes_each_row_to_its_family_verifier_and_checks_their_columns():
    texts = ["<think>1+2</think><answer>3</answer>", "<think>x</think><answer>2*3+4</answer>"]
    reward = build_reward("family_reward")
    assert reward(completions=texts, **reward_columns([MATH, COUNTDOWN])) == [1.0, 1.0]
    assert reward(completions=texts, **reward_columns([COUNTDOWN, MATH])) == [0.0, 0.0]
    problems = column_problems("s", [reward], [MATH, {**COUNTDOWN, "metadata": {}}])
    assert problems and "equation_reward" in problems[0] and "'numbers'" in problems[0]
