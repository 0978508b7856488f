"""Shared plumbing for the verifiers: completion text, parameter validation, the base class.

Every reward is an instance of a `Reward` subclass: a picklable callable with TRL's reward
contract ``(prompts, completions, **dataset_columns) -> list[float | None]`` and an instance
attribute ``__name__`` (TRL logs ``rewards/<__name__>/mean``). Parameters are declared once in
the class attribute ``PARAMS`` (name -> default); ``__init__`` rejects unknown names (naming the
closest valid one) and values whose type does not match the default's.

Each class also declares what it scores: ``FAMILIES`` (the task families it applies to; ``None``
= every family) and ``COLUMNS`` (the parameters naming the row columns it cannot score without,
e.g. ``("tests_column",)``). A row of another family gets ``None`` (routing in mixtures), and
``tasks.verifiers.rows.column_problems`` refuses a stage whose rows lack a needed column.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from tasks.recipe.base import did_you_mean

logger = logging.getLogger("tasks.verifiers")


def completion_text(completion: Any) -> str:
    """Return the text of one completion, standard (``str``) or conversational.

    Conversational completions are lists of messages ``[{"role": "assistant", "content": ...}]``;
    the assistant messages' contents are joined (content may be a string or a list of
    ``{"type": "text", "text": ...}`` parts). ``None`` gives ``""``.
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        msgs = [m for m in completion if isinstance(m, dict)]
        chosen = [m for m in msgs if m.get("role", "assistant") == "assistant"] or msgs
        return "".join(_content_text(m.get("content")) for m in chosen)
    return str(completion)


def prompt_text(prompt: Any) -> str:
    """Return the text of one prompt (string or list of chat messages, all roles joined)."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        return "\n".join(_content_text(m.get("content")) for m in prompt if isinstance(m, dict))
    if isinstance(prompt, dict):
        return _content_text(prompt.get("content"))
    return str(prompt)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") if isinstance(p, dict) else str(p) for p in content
        )
    return str(content)


def column(kwargs: dict, name: str, n: int) -> list:
    """Dataset column ``name`` from the reward kwargs as a list of length ``n`` (``None``s if absent)."""
    values = kwargs.get(name)
    if values is None:
        return [None] * n
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__len__"):
        return [values] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return values


def _type_ok(value: Any, default: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


class Reward:
    """Base class: a picklable TRL reward function configured by keyword parameters."""

    name: ClassVar[str] = "reward"
    #: parameter name -> default value (the default's type is the accepted type; None = any)
    PARAMS: ClassVar[dict[str, Any]] = {}
    #: task families this reward scores (a row of another family gets None); None = every family
    FAMILIES: ClassVar[tuple[str, ...] | None] = None
    #: parameters whose value names a row column the reward needs
    COLUMNS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        unknown = [k for k in params if k not in self.PARAMS]
        if unknown:
            k = unknown[0]
            valid = ", ".join(sorted(self.PARAMS)) or "(none)"
            raise ValueError(
                f"unknown parameter {k!r} for {self.name}{did_you_mean(k, self.PARAMS)} (valid parameters: {valid})"
            )
        merged = dict(self.PARAMS)
        for k, v in params.items():
            if not _type_ok(v, self.PARAMS[k]):
                raise ValueError(
                    f"parameter {k!r} of {self.name} must be {type(self.PARAMS[k]).__name__}, "
                    f"got {type(v).__name__} {v!r}"
                )
            merged[k] = float(v) if isinstance(self.PARAMS[k], float) else v
        self.params = merged
        self.__name__ = self.name
        self.__qualname__ = self.name
        self._validate()

    def _validate(self) -> None:
        """Check parameter values; raise ``ValueError`` with a clear message on bad values."""

    def runtime_problem(self) -> str | None:
        """Why this reward cannot run on this machine (recipe validation reports it), or None."""
        return None

    def sandbox_isolation(self) -> str | None:
        """The isolation level this reward runs untrusted code under; None when it runs none."""
        return None

    def _fail(self, msg: str) -> None:
        raise ValueError(f"{self.name}: {msg}")

    def __getattr__(self, item: str) -> Any:  # parameters readable as attributes
        params = self.__dict__.get("params")
        if params is not None and item in params:
            return params[item]
        raise AttributeError(item)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.params.items() if self.PARAMS.get(k) != v}
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{self.name}({args})"

    def __call__(self, prompts: list | None = None, completions: list | None = None, **kwargs: Any) -> list:
        if completions is None:
            raise TypeError(f"{self.name} needs completions=")
        texts = [completion_text(c) for c in completions]
        families = kwargs.get("family")
        if self.FAMILIES is None or families is None:
            return self.score_batch(texts, prompts, kwargs)
        mine = [i for i, f in enumerate(column(kwargs, "family", len(texts))) if self.applies(f)]
        out: list[float | None] = [None] * len(texts)
        if not mine:
            return out
        picked = {k: pick_entries(v, mine, len(texts)) for k, v in kwargs.items()}
        scores = self.score_batch([texts[i] for i in mine], pick_entries(prompts, mine, len(texts)), picked)
        for i, s in zip(mine, scores):
            out[i] = s
        return out

    def applies(self, family: str | None) -> bool:
        """Whether this reward scores rows of ``family`` (a row without a family: yes)."""
        return self.FAMILIES is None or family is None or family in self.FAMILIES

    def required_columns(self) -> list[str]:
        """The row columns this reward needs (the values of its ``COLUMNS`` parameters)."""
        return [self.params[k] for k in self.COLUMNS]

    def score_batch(self, texts: list[str], prompts: list | None, kwargs: dict) -> list[float | None]:
        raise NotImplementedError


def pick_entries(values: Any, index: list[int], n: int) -> Any:
    """The entries ``index`` of a per-completion list (other values pass through)."""
    if isinstance(values, (list, tuple)) and len(values) == n:
        return [values[i] for i in index]
    return values


def log_metric(kwargs: dict, name: str, value: float) -> None:
    """Forward a scalar to TRL's ``log_metric`` kwarg when present (never fails the reward)."""
    fn = kwargs.get("log_metric")
    if callable(fn):
        try:
            fn(name, float(value))
        except Exception:  # noqa: BLE001 - logging must not break scoring
            logger.debug("log_metric(%s) failed", name, exc_info=True)
