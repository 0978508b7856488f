"""Dataset formats: the native columns of public datasets as our canonical row columns.

    raw = from_format(raw, "humaneval")    # a source's `format:`; before `columns:` renames

- `countdown` (TinyZero's Countdown-Tasks-3to4): `nums`, `target` -> question "Make 16 from
  3 5 2." (the embedded generator's prompt), metadata `numbers`, `target`, family countdown.

The code formats return the raw row with `question`, `answer` (a fenced reference solution
when the dataset has one), `family: code` and `tests` (tasks.verifiers.code_tests), or
`_invalid` with the reason when its tests cannot be read (curation quarantines the row):

- `mbpp`: `text` (or `prompt`), `code`, `test_list` (assert strings), `test_setup_code`
  (run before each assert), `challenge_test_list` (added when present).
- `humaneval`: `prompt` (signature and docstring), `canonical_solution`, `entry_point`, `test`
  (`def check(candidate): ...`), judged natively: the asserts inside `check` run against the
  entry point, in a sandboxed process apart from the solution.
- `apps` (also TACO): `question`, `solutions` (JSON list), `input_output` (JSON
  `{"inputs": [...], "outputs": [...]}`: stdin/stdout cases).
- `livecodebench`: `question_content`, `public_test_cases` / `private_test_cases` (JSON lists of
  `{input, output, testtype}`; `stdin` cases run on stdin, `functional` ones call
  `Solution().<func_name>(...)` with `metadata.func_name`), `starter_code`.
- `function_calling` (xLAM / APIGen, BFCL-shaped): `query`, `tools` (a list of function schemas,
  or its JSON), `answers` (the expected calls `[{"name", "arguments"}]`, or its JSON) -> question
  "<query>\n\nTools: <tools JSON>", answer the calls' JSON, metadata `tools` and `answers`,
  family function_calling (scored by tool_call_match_reward); unreadable answers are quarantined.
GSM8K and MATH need no format: `answer_format: gsm8k | boxed` (and `columns:` for MATH's
`problem`/`solution`).
"""

from __future__ import annotations

import json
from typing import Any

FORMATS = ("canonical", "countdown", "mbpp", "humaneval", "apps", "livecodebench", "function_calling")
#: the task family each format's rows belong to (the code formats: code)
FAMILY = {"countdown": "countdown", "function_calling": "function_calling"}


def _fenced(code: Any) -> str | None:
    return f"```python\n{code.strip()}\n```" if isinstance(code, str) and code.strip() else None


def _json(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as e:
            raise ValueError(f"bad tests: {what} is not JSON ({e})") from None
    return value


def _mbpp(raw: dict) -> dict:
    asserts = list(raw.get("test_list") or []) + list(raw.get("challenge_test_list") or [])
    setup = (raw.get("test_setup_code") or "").strip()
    tests = [{"type": "assert", "code": f"{setup}\n{a}" if setup else a} for a in asserts]
    return {"question": raw.get("text") or raw.get("prompt"), "answer": _fenced(raw.get("code")), "tests": tests}


def _humaneval(raw: dict) -> dict:
    prompt = raw.get("prompt") or ""
    tests = [{"type": "assert", "code": raw.get("test"), "entry_point": raw.get("entry_point")}]
    solution = prompt + (raw.get("canonical_solution") or "") if raw.get("canonical_solution") else None
    return {"question": f"Complete this Python function:\n{prompt}", "answer": _fenced(solution), "tests": tests}


def _apps(raw: dict) -> dict:
    tests = _json(raw.get("input_output"), "input_output")
    solutions = _json(raw.get("solutions") or "[]", "solutions")
    return {"question": raw.get("question"), "answer": _fenced(solutions[0] if solutions else None), "tests": tests}


def _livecodebench(raw: dict) -> dict:
    cases = _json(raw.get("public_test_cases") or "[]", "public_test_cases")
    cases += _json(raw.get("private_test_cases") or "[]", "private_test_cases")
    func = (_json(raw.get("metadata") or "{}", "metadata") or {}).get("func_name")
    tests = []
    for c in cases:
        if c.get("testtype") == "functional":
            if not func:
                raise ValueError("bad tests: a functional test case without metadata.func_name")
            args = ", ".join(line for line in str(c["input"]).splitlines() if line.strip())
            tests.append({"type": "assert", "code": f"assert Solution().{func}({args}) == {c['output'].strip()}"})
        else:
            tests.append({"type": "io", "input": c.get("input", ""), "output": c.get("output", "")})
    starter = raw.get("starter_code") or ""
    question = raw.get("question_content") or ""
    return {"question": f"{question}\n\n{starter}".strip(), "answer": None, "tests": tests}


def _countdown(raw: dict) -> dict:
    nums, target = raw.get("nums"), raw.get("target")
    question = f"Make {target} from {' '.join(map(str, nums))}." if isinstance(nums, list) and target is not None else None
    return {"question": question, "numbers": nums, "target": target}


def _function_calling(raw: dict) -> dict:
    tools, answers = _json(raw.get("tools"), "tools"), _json(raw.get("answers"), "answers")
    if not isinstance(tools, list) or not isinstance(answers, list) or not all(
            isinstance(a, dict) and isinstance(a.get("name"), str) and isinstance(a.get("arguments", {}), dict)
            for a in answers):
        raise ValueError("bad answers: tools must be a list and answers a list of {name, arguments} calls")
    query = raw.get("query") or raw.get("question")
    return {"question": f"{query}\n\nTools: {json.dumps(tools)}" if query else None,
            "answer": json.dumps(answers), "tools": tools, "answers": answers}


_CONVERT = {"countdown": _countdown, "function_calling": _function_calling, "mbpp": _mbpp, "humaneval": _humaneval, "apps": _apps, "livecodebench": _livecodebench}


def from_format(raw: dict, fmt: str) -> dict:
    """`raw` with its dataset-native columns read as canonical code-row columns (module docstring)."""
    if fmt == "canonical":
        return raw
    family = FAMILY.get(fmt, "code")
    try:
        row = _CONVERT[fmt](raw)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        msg = str(e) if str(e).startswith(("bad tests", "bad answers")) else \
            f"bad tests: unreadable {fmt} row ({type(e).__name__}: {e})"
        return {**raw, "family": family, "_invalid": msg}
    keep = {k: v for k, v in raw.items() if k not in row and k not in ("nums", "query")}
    return {**keep, **{k: v for k, v in row.items() if v is not None}, "family": raw.get("family") or family}
