"""Tool-use rewards: the final answer against the environment's truth, the well-formed-call term
read from the environment's log, and single-turn function calling compared after parsing."""

import json

import pytest

from tasks.data.cold_start import format_completion
from tasks.environments import environment_factory
from tasks.environments.rollout import call_tool
from tasks.verifiers import build_reward
from tasks.verifiers.tools import calls_match, predicted_calls, values_match

CATALOG = json.dumps({"fig": {"price": 4, "stock": 7}})
COLUMNS = {"catalog": [CATALOG] * 3, "ask": [json.dumps({"kind": "cost", "items": {"fig": 3}})] * 3,
           "family": ["shop"] * 3, "answer": ["999"] * 3}


def _env(*calls):
    env = environment_factory("shop")()
    env.reset(catalog=CATALOG, ask=COLUMNS["ask"][0])
    for name, args in calls:
        call_tool(env, {"type": "function", "function": {"name": name, "arguments": args}})
    return env


def test_tool_answer_reward_checks_the_environments_truth_with_or_without_a_rollout():
    reward = build_reward("tool_answer_reward")
    texts = [format_completion("3*4=12", "12"), format_completion("x", "999"), "<answer>12.001</answer>"]
    assert reward(completions=texts, **COLUMNS) == [1.0, 0.0, 0.0]  # built from the row's columns
    envs = [_env(("price", {"item": "fig"})) for _ in texts]
    assert reward(completions=texts, environments=envs, **COLUMNS) == [1.0, 0.0, 0.0]
    multi_turn = [{"role": "assistant", "content": "", "tool_calls": []}, {"role": "tool", "content": "4"},
                  {"role": "assistant", "content": "<answer>12</answer>"}]
    assert reward(completions=[multi_turn], **{k: v[:1] for k, v in COLUMNS.items()}) == [1.0]
    assert reward(completions=["<answer>12</answer>"], family=["math"], catalog=[None], ask=[None]) == [None]


def test_tool_call_reward_pays_only_for_clean_calls():
    reward = build_reward("tool_call_reward")
    envs = [_env(("price", {"item": "fig"})), _env(), _env(("price", {"item": 3})),
            _env(("price", {"item": "fig"}))]
    texts = ["<answer>12</answer>"] * 3 + ['<tool_call>{"name": "price"</tool_call>']
    cols = {k: v + v[:1] for k, v in COLUMNS.items()}
    assert reward(completions=texts, environments=envs, **cols) == [1.0, 0.0, 0.0, 0.0]
    assert reward(completions=texts[:1], **{k: v[:1] for k, v in COLUMNS.items()}) == [None]  # no rollout


@pytest.mark.parametrize("got, want, typ, ok", [
    (3, 3.0, "float", True),            # an int where a float is declared
    (3.0, 3, "integer", False),         # a float where an int is declared
    (True, 1, "integer", False),        # bool is never a number
    ("New York", "new-york", "string", True),
    ([1, 2], [2, 1], "array", False),
    ({"a": 1}, {"a": 1.0}, "", True),
])
def test_values_are_compared_as_bfcls_ast_checker_does(got, want, typ, ok):
    assert values_match(got, want, typ) is ok


def test_calls_match_in_any_order_unless_ordered():
    a = {"name": "f", "arguments": {"x": 1}}
    b = {"name": "f", "arguments": {"x": 2}}
    assert calls_match([b, a], [a, b], [], ordered=False)
    assert not calls_match([b, a], [a, b], [], ordered=True)
    assert not calls_match([a, a], [a, b], [], ordered=False)  # one predicted call per expected one
    assert not calls_match([a, b], [a], [], ordered=False)  # an extra call


def test_predicted_calls_read_tool_call_blocks_or_a_json_list():
    block = '<tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call>'
    assert predicted_calls(block) == [{"name": "f", "arguments": {"x": 1}}]
    assert predicted_calls('<answer>[{"name": "f", "arguments": {"x": 1}}]</answer>') == [
        {"name": "f", "arguments": {"x": 1}}]
    assert predicted_calls("f(x=1)") is None and predicted_calls('[{"arguments": {}}]') is None
