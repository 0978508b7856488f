"""The environment contract on `shop`: tools read only the environment's table, the model's
untrusted arguments come back as tool-result errors (never exceptions), per-rollout caps on
calls and seconds, fresh state per reset; the chat template renders and parses tool calls the
way TRL does, including calls it cannot parse."""

import json
import time

import pytest
from trl.chat_template_utils import is_chat_template_prefix_preserving, parse_response, supports_tool_calling

from tasks.data.synthetic import generate
from tasks.environments import ENVIRONMENTS, environment_factory, environment_row_problem, rollout_environment_problems
from tasks.environments._base import tool
from tasks.environments.chat import enable_tool_calls
from tasks.environments.rollout import call_tool, cold_start_example, corpus_text, tool_suffix_ids, tools_of
from tasks.environments.shop import ShopEnvironment
from tasks.modeling import train_tokenizer
from tasks.verifiers.rows import row_fields

ROW = {"catalog": json.dumps({"fig": {"price": 4, "stock": 7}, "kiwi": {"price": 3, "stock": 9}}),
       "ask": json.dumps({"kind": "cost", "items": {"fig": 3}}), "prompt": [], "answer": "999"}


def _env(**params):
    env = environment_factory("shop", params)()
    env.reset(**ROW)
    return env


def _call(env, name, arguments):
    return call_tool(env, {"type": "function", "function": {"name": name, "arguments": arguments}})[1]


def test_tools_read_the_table_and_the_truth_is_the_environments_not_the_rows_answer():
    env = _env()
    assert _call(env, "price", {"item": "fig"}) == 4 and _call(env, "stock", {"item": "kiwi"}) == 9
    assert env.expected == 12  # 3 * 4; the row's `answer` column (999) is never read
    assert [t.__name__ for t in tools_of(env)] == ["price", "stock"]  # helpers stay private
    assert env.calls[0] == {"name": "price", "arguments": {"item": "fig"}, "result": "4", "error": None,
                            "seconds": env.calls[0]["seconds"]}


@pytest.mark.parametrize("name, arguments, error", [
    ("price", {"item": 3}, "argument 'item' must be str, got int"),
    ("price", {"item": True}, "argument 'item' must be str"),
    ("price", {}, "price needs argument 'item'"),
    ("price", {"item": "fig", "qty": 2}, "price has no argument 'qty'"),
    ("price", {"item": "durian"}, "no item 'durian' in this shop"),
    ("price", {"__unparsed__": '{"item": fig}'}, "the arguments of price are not a JSON object"),
    ("refund", {"item": "fig"}, "Tool refund not found."),
])
def test_untrusted_arguments_come_back_as_errors_never_exceptions(name, arguments, error):
    result = _call(_env(), name, arguments)
    assert error in result["error"]


class SlowShop(ShopEnvironment):
    @tool
    def wait(self, seconds: float) -> str:
        """Sleep.

        Args:
            seconds: how long
        """
        time.sleep(seconds)
        return "ok"


def test_calls_past_the_call_budget_or_the_tool_time_budget_are_refused():
    env = _env(max_calls=2)
    assert [_call(env, "price", {"item": "fig"}) for _ in range(3)][2]["error"].startswith("tool call budget spent")
    env = SlowShop(max_seconds=0.05)
    env.reset(**ROW)
    time.sleep(0.1)  # the model's generation between turns is not the tools' time
    assert _call(env, "wait", {"seconds": 0.06}) == "ok"
    assert _call(env, "price", {"item": "fig"})["error"].startswith("time budget spent")


def test_reset_starts_fresh_state_from_the_row():
    env = _env()
    _call(env, "price", {"item": "fig"})
    env.reset(**{**ROW, "catalog": json.dumps({"pear": {"price": 2, "stock": 5}}),
                 "ask": json.dumps({"kind": "left", "items": {"pear": 1}})})
    assert env.calls == [] and env.expected == 4 and "error" in _call(env, "price", {"item": "fig"})


def test_bad_names_and_params_and_rows_are_refused_before_compute():
    assert "unknown environment 'shopp'" in rollout_environment_problems("data.environment", "shopp")[0]
    assert "has no parameter 'calls'" in rollout_environment_problems("data.environment", "shop", {"calls": 2})[0]
    assert rollout_environment_problems("data.environment", "shop", {"max_calls": 2}) == []
    bad = {"family": "shop", "question": "q", "metadata": {"catalog": {}, "ask": {"kind": "cost", "items": {"x": 1}}}}
    assert environment_row_problem("shop", {}, bad).startswith("bad environment state")
    assert environment_row_problem("shop", {}, {**bad, "family": "math"}) is None


def test_generated_rows_replay_their_calls_to_the_right_answer():
    rows = generate("shop", 30, seed=3)
    assert {r["metadata"]["ask"]["kind"] for r in rows} == {"cost", "left"}
    for row in rows:
        env = ENVIRONMENTS["shop"]()
        messages, schemas = cold_start_example(row_fields(row), env, "final")
        assert str(env.expected) == row["answer"] and all(c["error"] is None for c in env.calls)
        assert [m["role"] for m in messages] == ["assistant"] + ["tool"] * len(env.calls) + ["assistant"]
        assert [s["function"]["name"] for s in schemas] == ["price", "stock"]


@pytest.fixture(scope="module")
def tool_tokenizer():
    rows = generate("shop", 20, seed=0)
    texts = [r["question"] + "\n" + corpus_text(row_fields(r), ENVIRONMENTS["shop"]()) for r in rows]
    return enable_tool_calls(train_tokenizer(texts, vocab_size=300))


def test_the_template_renders_tools_and_calls_the_way_trl_parses_them(tool_tokenizer):
    tok, env = tool_tokenizer, _env()
    assert supports_tool_calling(tok) and is_chat_template_prefix_preserving(tok)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Shop 1: cost of 3 fig?"}], tools=tools_of(env),
                                     add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert "Tools: price(item) stock(item)" in tok.decode(prompt)

    def parsed(text):
        return parse_response(tok, tok(text, add_special_tokens=False)["input_ids"], prefix=prompt,
                              tools=tools_of(env))

    good = parsed('<tool_call>{"name": "price", "arguments": {"item": "fig"}}</tool_call><|im_end|>')
    assert good["tool_calls"][0]["function"] == {"name": "price", "arguments": {"item": "fig"}}
    final = parsed("<think>\n3*4=12\n</think>\n<answer>12</answer><|im_end|>")
    assert final == {"role": "assistant", "content": "<think>\n3*4=12\n</think>\n<answer>12</answer>"}
    broken = parsed('<tool_call>{"name": "price", "arguments": {"item": fig}</tool_call><|im_end|>')
    assert "not a JSON object" in call_tool(env, broken["tool_calls"][0])[1]["error"]  # back to the model
    suffix = tok.decode(tool_suffix_ids(tok, [{"role": "tool", "name": "price", "content": "4"}]))
    assert suffix == "\n<|im_start|>tool\n4<|im_end|>\n<|im_start|>assistant\n"


def test_a_corpus_without_tool_calls_keeps_the_plain_chatml_tokenizer():
    from tasks.modeling import CHAT_TEMPLATE

    tok = train_tokenizer(["Compute 1+2.\n<think>\n1+2=3\n</think>\n<answer>3</answer>"], vocab_size=300)
    assert tok.chat_template == CHAT_TEMPLATE and "<tool_call>" not in tok.get_vocab()
