"""The environment contract: a class whose public methods are the tools of a multi-turn rollout.

    class Shop(Environment):
        name = "shop"
        FAMILIES = ("shop",)
        def _start(self, row): self.catalog = ...            # fresh state from the row's columns
        @tool
        def price(self, item: str) -> int:
            '''The unit price of an item.

            Args:
                item: the item's name, as the question spells it
            '''
            return self.catalog[item]["price"]
        @property
        def expected(self): return ...                      # what the reward checks the answer against

TRL's `GRPOTrainer(environment_factory=...)` builds one instance per rollout, calls
`reset(**row)` with the row's columns before generation, renders the `@tool` methods (their type
hints and docstrings become the JSON schema) into the prompt, and calls them with the arguments
the model wrote. Those arguments are untrusted: `@tool` checks names and types against the
signature, and a wrong name, a bad type, unparsed JSON (`UNPARSED`), a raising tool, a call past
`max_calls` or after the rollout's tools have used `max_seconds` all come back to the model as the
tool result `{"error": ...}`, never as an exception in the trainer. The time budget counts the
tools' own seconds, not the model's generation between turns (the batch's, which
`max_completion_length` bounds): a slow machine must not turn every lookup into an error. Every call is recorded in `calls`
(name, arguments, result, error, seconds): the rewards and the MLflow traces read it.
"""

from __future__ import annotations

import functools
import inspect
import json
import time
import typing
from typing import Any, ClassVar

#: argument key the tool-call parser uses for a call whose arguments were not a JSON object
UNPARSED = "__unparsed__"
#: longest argument/result text kept in `calls` (and so in a trace)
KEEP_CHARS = 200

_TYPES = {str: (str,), int: (int,), float: (int, float), bool: (bool,), list: (list,), dict: (dict,)}


def _type_error(name: str, value: Any, annotation: Any) -> str | None:
    """Why `value` does not fit the parameter's annotation (None when it does). bool is not an
    int here (BFCL's checker rejects True for an integer too)."""
    allowed = _TYPES.get(typing.get_origin(annotation) or annotation)
    if allowed is None:
        return None
    if isinstance(value, bool) and bool not in allowed:
        return f"argument {name!r} must be {annotation.__name__}, got a boolean"
    if not isinstance(value, allowed):
        return f"argument {name!r} must be {annotation.__name__}, got {type(value).__name__} {str(value)[:40]!r}"
    return None


def _short(value: Any) -> Any:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= KEEP_CHARS else text[:KEEP_CHARS] + "..."


def tool(fn):
    """Mark an environment method as a tool and guard it: the model's arguments are checked
    against the signature and every failure becomes `{"error": ...}` (see the module doc)."""
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    params = [p for p in signature.parameters.values() if p.name != "self"]

    @functools.wraps(fn)
    def guarded(self, **kwargs):
        error = self._budget_error() or _argument_error(fn.__name__, params, hints, kwargs)
        result, t0 = None, time.perf_counter()
        if error is None:
            try:
                result = fn(self, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a tool's failure is the model's information
                error = f"{type(exc).__name__}: {exc}"
        self.calls.append({"name": fn.__name__, "arguments": {k: _short(v) for k, v in kwargs.items()},
                           "result": None if error else _short(result), "error": error,
                           "seconds": round(time.perf_counter() - t0, 6)})
        return {"error": error} if error else result

    guarded.is_tool = True
    return guarded


def _argument_error(name: str, params: list, hints: dict, kwargs: dict) -> str | None:
    if UNPARSED in kwargs:
        return f"the arguments of {name} are not a JSON object: {str(kwargs[UNPARSED])[:80]!r}"
    names = {p.name for p in params}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        return f"{name} has no argument {unknown[0]!r}; its arguments: {', '.join(sorted(names)) or '(none)'}"
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in kwargs]
    if missing:
        return f"{name} needs argument {missing[0]!r}"
    for key, value in kwargs.items():
        if key in hints and (why := _type_error(key, value, hints[key])):
            return why
    return None


class Environment:
    """Base class of a registered environment (see the module doc). Subclasses set `name`,
    `FAMILIES`, `PARAMS` (name -> default, like a verifier's), implement `_start(row)` and the
    `expected` property, and mark their tools with `@tool`. Every other public method would be
    offered to the model as a tool (TRL lists them all), so helpers start with `_`."""

    name: ClassVar[str] = "environment"
    #: task families whose rows this environment serves
    FAMILIES: ClassVar[tuple[str, ...]] = ()
    #: row columns `_start` cannot build the state without
    COLUMNS: ClassVar[tuple[str, ...]] = ()
    PARAMS: ClassVar[dict[str, Any]] = {"max_calls": 4, "max_seconds": 5.0}

    def __init__(self, **params: Any) -> None:
        self.params = {**self.PARAMS, **params}
        self.calls: list[dict] = []

    def reset(self, **row: Any) -> None:
        """Fresh state for one rollout from the row's columns (TRL passes every dataset column;
        JSON-encoded structures arrive as strings). Returns None: the prompt is the row's."""
        self.calls = []
        self._start({k: _decoded(v) for k, v in row.items()})

    def _start(self, row: dict) -> None:
        raise NotImplementedError

    @property
    def expected(self) -> Any:
        """The right final answer for this rollout, computed from the environment's own state."""
        raise NotImplementedError

    def _budget_error(self) -> str | None:
        if len(self.calls) >= int(self.params["max_calls"]):
            return f"tool call budget spent ({self.params['max_calls']} calls per answer): answer now"
        if sum(c["seconds"] for c in self.calls) >= float(self.params["max_seconds"]):
            return f"time budget spent ({self.params['max_seconds']} s of tool time per answer): answer now"
        return None

    @classmethod
    def tool_names(cls) -> list[str]:
        return sorted(n for n, f in inspect.getmembers(cls, inspect.isfunction) if getattr(f, "is_tool", False))


def _decoded(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
