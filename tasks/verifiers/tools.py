"""Tool-use rewards: multi-turn rollouts in an environment, and single-turn function calling.

- `tool_answer_reward`: the final answer against the environment's own truth (`expected`).
- `tool_call_reward`: the small shaping term for well-formed tool calls (the environment's log).
- `tool_call_match_reward`: predicted calls against a row's expected `answers` (xLAM / APIGen /
  BFCL shape), compared after parsing, the way BFCL's AST checker compares them.

In GRPO, TRL passes each rollout's environment as the `environments` column; evaluation's
multi-turn loop does the same. Where no rollout ran (cold-start checks), `tool_answer_reward`
builds a fresh environment from the row's columns.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from tasks.verifiers._base import Reward, column, log_metric

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)


def final_answer(text: str) -> str | None:
    """The content of the last `<answer>` block, stripped; None without one."""
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else None


def _same_value(answer: str, expected: Any) -> bool:
    if isinstance(expected, bool) or not isinstance(expected, (int, float)):
        return answer == str(expected)
    if len(answer) > 32 or not re.fullmatch(r"-?\d+(\.\d+)?", answer):  # plain numbers only
        return False
    return math.isclose(float(answer), float(expected), rel_tol=0, abs_tol=1e-9)


class _EnvironmentReward(Reward):
    PARAMS = {"environment": "shop"}

    def _validate(self) -> None:
        from tasks.environments import ENVIRONMENTS

        if self.params["environment"] not in ENVIRONMENTS:
            self._fail(f"unknown environment {self.params['environment']!r}; registered: {sorted(ENVIRONMENTS)}")
        self.env_class = ENVIRONMENTS[self.params["environment"]]
        self.FAMILIES = self.env_class.FAMILIES  # rows of other families get None (mixtures)

    def required_columns(self) -> list[str]:
        return list(self.env_class.COLUMNS)

    def _environments(self, n: int, kwargs: dict) -> list:
        """Each completion's environment: the rollout's own (TRL's `environments`), or None."""
        envs = kwargs.get("environments")
        return list(envs) if isinstance(envs, (list, tuple)) and len(envs) == n else [None] * n


class ToolAnswerReward(_EnvironmentReward):
    """1.0 when the last `<answer>` equals the environment's `expected` answer, else 0.0.

    Scoring rule: a numeric truth needs a plain decimal number (at most 32 characters) equal to
    it; any other truth an identical string. The truth comes from the rollout's environment
    (its own table, never the row's `answer` column) or, when no rollout ran, from a fresh
    environment reset from the row's columns; a row it cannot build an environment from scores
    None. Budget: the environment's own (its `max_calls`, `max_seconds`); scoring itself is a
    regex and a comparison. Params: ``environment`` (a registered environment, default shop).
    """

    name = "tool_answer_reward"

    def score_batch(self, texts, prompts, kwargs):
        rows = _rows(kwargs, len(texts))
        out = []
        for text, env, row in zip(texts, self._environments(len(texts), kwargs), rows):
            try:
                if env is None:
                    env = self.env_class()
                    env.reset(**row)
                expected = env.expected
            except (ValueError, KeyError, TypeError):
                out.append(None)
                continue
            answer = final_answer(text)
            out.append(float(answer is not None and _same_value(answer, expected)))
        return out


class ToolCallReward(_EnvironmentReward):
    """1.0 when the rollout called the environment's tools and every call was well formed.

    Scoring rule: 1.0 if the environment recorded at least one call and none returned an error
    (unknown argument, wrong type, unparsed JSON, over budget) and the final reply holds no
    unparsed `<tool_call>`; else 0.0. A call to a tool that does not exist never reaches the
    environment (TRL answers it), so it earns nothing. None without a rollout's environment.
    Budget: reads the environment's call log. Params: ``environment``. Logs
    `tools/errors_per_rollout` (TRL's `tools/failure_frequency` counts only raised exceptions,
    and environment tools return their errors).
    """

    name = "tool_call_reward"

    def score_batch(self, texts, prompts, kwargs):
        out = []
        for text, env in zip(texts, self._environments(len(texts), kwargs)):
            if env is None:
                out.append(None)
                continue
            calls = getattr(env, "calls", [])
            out.append(float(bool(calls) and all(c["error"] is None for c in calls) and "<tool_call>" not in text))
        envs = [e for e in self._environments(len(texts), kwargs) if e is not None]
        if envs:
            log_metric(kwargs, "tools/errors_per_rollout",
                       sum(c["error"] is not None for e in envs for c in e.calls) / len(envs))
        return out


def _rows(kwargs: dict, n: int) -> list[dict]:
    skip = {"environments", "trainer_state", "log_metric", "log_extra"}
    cols = {k: column(kwargs, k, n) for k, v in kwargs.items() if k not in skip and isinstance(v, (list, tuple))}
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


# ---------------------------------------------------------------- single-turn function calling
def predicted_calls(text: str) -> list[dict] | None:
    """The calls a completion makes: `<tool_call>{"name", "arguments"}</tool_call>` blocks, or a
    JSON list of `{"name", "arguments"}` (xLAM's output), inside `<answer>` if there is one.
    None when they cannot be read."""
    blocks = _CALL_BLOCK.findall(text)
    try:
        calls = [json.loads(b) for b in blocks] if blocks else json.loads(final_answer(text) or text.strip())
    except ValueError:
        return None
    calls = [calls] if isinstance(calls, dict) else calls
    if not isinstance(calls, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
        return None
    return [{"name": c["name"], "arguments": _arguments(c.get("arguments", c.get("parameters", {})))} for c in calls]


def _arguments(value: Any) -> Any:
    if isinstance(value, str):  # OpenAI-style arguments: a JSON string
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _standard(s: str) -> str:
    """BFCL's string normalisation: lower case, without spaces and ,./-_*^ punctuation."""
    return re.sub(r"[ ,./\-_*^]", "", s).lower()


def _param_types(tools: list, name: str) -> dict[str, str]:
    """Parameter -> declared type of tool `name`: JSON Schema (`parameters.properties`, BFCL,
    OpenAI) or xLAM's `parameters: {p: {type}}`; "float" and "number" declare a float."""
    for t in tools if isinstance(tools, list) else []:
        fn = t.get("function", t) if isinstance(t, dict) else {}
        if fn.get("name") == name:
            params = fn.get("parameters") or {}
            props = params.get("properties", params) if isinstance(params, dict) else {}
            return {k: str(v.get("type", "")) for k, v in props.items() if isinstance(v, dict)}
    return {}


def values_match(got: Any, want: Any, typ: str = "") -> bool:
    """BFCL's AST comparison of one argument value: an int where a float is declared counts as
    the float; bool is never a number; strings compare after `_standard`; lists in order and
    dicts by key, recursively."""
    if isinstance(want, bool) or isinstance(got, bool):
        return isinstance(got, bool) and isinstance(want, bool) and got == want
    if isinstance(want, (int, float)):
        if not isinstance(got, (int, float)) or (isinstance(got, float) and isinstance(want, int)
                                                 and typ not in ("float", "number")):
            return False
        return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(want, str):
        return isinstance(got, str) and _standard(got) == _standard(want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(values_match, got, want))
    if isinstance(want, dict):
        return isinstance(got, dict) and set(got) == set(want) and all(values_match(got[k], want[k]) for k in want)
    return got == want


def call_matches(got: dict, want: dict, tools: list) -> bool:
    """Same function name and the same arguments (every expected key, no other), value by value."""
    if got["name"] != want["name"] or not isinstance(got["arguments"], dict):
        return False
    args, expected = got["arguments"], _arguments(want.get("arguments", {}))
    types = _param_types(tools, want["name"])
    return set(args) == set(expected) and all(values_match(args[k], v, types.get(k, "")) for k, v in expected.items())


def calls_match(got: list[dict], want: list[dict], tools: list, ordered: bool) -> bool:
    """Every expected call matched by its own predicted call, none left over; in order when
    `ordered`, else any order (parallel, independent calls)."""
    if len(got) != len(want):
        return False
    if ordered:
        return all(call_matches(g, w, tools) for g, w in zip(got, want))
    free = list(range(len(got)))
    for w in want:
        hit = next((i for i in free if call_matches(got[i], w, tools)), None)
        if hit is None:
            return False
        free.remove(hit)
    return True


class ToolCallMatchReward(Reward):
    """1.0 when the completion's tool calls are the row's expected `answers`, else 0.0.

    Scoring rule: the calls are read from `<tool_call>` JSON blocks or a JSON list (in `<answer>`
    if present); unreadable calls score 0.0. They match when each expected call has its own
    predicted call with the same name and the same argument keys, values compared as BFCL's
    AST checker does (`values_match`: int accepted for a declared float, bool never a number,
    strings normalised), in any order unless ``ordered``. None for a row without `answers`.
    Budget: at most 16 calls of at most 4,000 characters are parsed; longer completions score 0.
    Params: ``answers_column``, ``tools_column``, ``ordered``.
    """

    name = "tool_call_match_reward"
    PARAMS = {"answers_column": "answers", "tools_column": "tools", "ordered": False}
    FAMILIES = ("function_calling",)
    COLUMNS = ("answers_column",)

    def score_batch(self, texts, prompts, kwargs):
        answers = column(kwargs, self.params["answers_column"], len(texts))
        tools = column(kwargs, self.params["tools_column"], len(texts))
        out = []
        for text, want, offered in zip(texts, answers, tools):
            want = _arguments(want)
            if not isinstance(want, list):
                out.append(None)
                continue
            got = predicted_calls(text) if len(text) <= 4000 else None
            ok = got is not None and len(got) <= 16 and calls_match(got, want, _arguments(offered) or [],
                                                                     self.params["ordered"])
            out.append(float(ok))
        return out
