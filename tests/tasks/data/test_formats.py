"""Real dataset formats, each read from a small fixture written in that format
(tests/fixtures/formats/): the rows import, a row whose tests cannot be read is quarantined
with a reason, and the reference solutions pass their own tests in the sandbox."""

from pathlib import Path

import pytest

from tasks.data.cold_start import format_completion
from tasks.data.curate import validation_reason
from tasks.data.sources import iter_source_rows
from tasks.recipe import DataSection, Source
from tasks.verifiers import build_reward
from tasks.verifiers.rows import reward_columns

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "formats"


def _read(name: str, **source) -> tuple[list[dict], list[str | None]]:
    src = Source(kind="jsonl", name=str(FIXTURES / f"{name}.jsonl"), **source)
    rows = list(iter_source_rows(src, 0, 0))
    return rows, [validation_reason(r, DataSection()) for r in rows]


def test_gsm8k_answers_are_read_after_the_hash_marks():
    rows, why = _read("gsm8k", answer_format="gsm8k")
    assert [r["answer"] for r in rows[:2]] == ["7", "36"] and why[:2] == [None, None]
    assert "#### " not in rows[0]["reasoning"] and why[2].startswith("unextractable gold answer")


def test_math_answers_are_read_from_boxed_and_the_rest_is_metadata():
    rows, why = _read("math", answer_format="boxed", columns={"question": "problem", "answer": "solution"})
    assert [r["answer"] for r in rows] == ["\\frac{5}{6}", "5"] and why == [None, None]
    assert rows[0]["metadata"] == {"level": "Level 2", "type": "Prealgebra"}


def test_countdown_nums_and_target_reach_equation_reward():
    rows, why = _read("countdown", format="countdown")
    assert rows[0]["question"] == "Make 16 from 3 5 2." and rows[0]["family"] == "countdown"
    assert why[:2] == [None, None] and why[2] == "missing or empty question"  # no target
    cols = reward_columns(rows[:2])
    texts = [format_completion("x", "3*5+2"), format_completion("x", "4+7-1+9")]
    assert build_reward("equation_reward")(completions=texts, **cols) == [0.0, 1.0]


@pytest.mark.parametrize("fmt, good, reason", [
    ("mbpp", 2, "bad tests"),
    ("humaneval", 1, "bad tests: tests[0]: a test with entry_point must define check(candidate)"),
    ("apps", 1, "bad tests: input_output is not JSON"),
    ("livecodebench", 2, None),
])
def test_code_formats_import_their_tests_and_quarantine_unreadable_ones(fmt, good, reason):
    rows, why = _read(fmt, format=fmt)
    assert all(r["family"] == "code" for r in rows)
    assert why[:good] == [None] * good
    if reason:
        assert why[good].startswith(reason), why[good]


@pytest.mark.parametrize("fmt", ["mbpp", "humaneval", "apps"])
def test_reference_solutions_pass_their_own_tests_in_the_sandbox(fmt):
    rows, why = _read(fmt, format=fmt)
    kept = [r for r, w in zip(rows, why) if w is None and r["answer"]]
    texts = [format_completion("", r["answer"]) for r in kept]
    assert build_reward("code_reward")(completions=texts, **reward_columns(kept)) == [1.0] * len(kept)


def test_livecodebench_functional_and_stdin_cases_are_judged():
    rows, _ = _read("livecodebench", format="livecodebench")
    texts = [format_completion("", "```python\ns = input()\nprint(s + s)\n```"),
             format_completion("", "```python\nclass Solution:\n    def add(self, a, b):\n        return a + b\n```")]
    assert build_reward("code_reward")(completions=texts, **reward_columns(rows)) == [1.0, 1.0]
    wrong = [format_completion("", "```python\nprint(1)\n```")] * 2
    assert build_reward("code_reward")(completions=wrong, **reward_columns(rows)) == [0.0, 0.0]


def test_function_calling_rows_import_and_score_by_their_expected_calls():
    """xLAM / APIGen / BFCL shape: query, tools (JSON schemas, or xLAM's parameter map), answers."""
    rows, why = _read("function_calling", format="function_calling")
    assert why[:3] == [None, None, None] and why[3].startswith("bad answers")
    assert rows[0]["family"] == "function_calling" and "Tools: [" in rows[0]["question"]
    cols = reward_columns(rows[:3])
    reward = build_reward("tool_call_match_reward")
    calls = [
        '<tool_call>{"name": "get_weather", "arguments": {"city": "oslo", "unit": "c"}}</tool_call>'
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}</tool_call>',
        '[{"name": "convert_currency", "arguments": {"amount": 100, "src": "USD", "dst": "EUR"}}]',
        '<tool_call>{"name": "factorial", "arguments": {"n": 7.0}}</tool_call>',
    ]
    assert reward(completions=calls, **cols) == [1.0, 1.0, 0.0]  # any order; 100 for a float; 7.0 for an int
    wrong = ['<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}</tool_call>',
             '[{"name": "convert_currency", "arguments": {"amount": 100, "src": "USD", "dst": "GBP"}}]',
             "<answer>5040</answer>"]
    assert reward(completions=wrong, **cols) == [0.0, 0.0, 0.0]
