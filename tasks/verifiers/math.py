"""Math answer extraction and checking, shared by the GRPO reward and evaluation.

Extraction (``extract_answers`` / ``extract_final_answer``):

* Only the *answer region* is searched: the text after the last ``</think>`` when the
  completion has one; nothing when a ``<think>`` block is left open (or, with
  ``prefilled_think``, when ``</think>`` never appears); otherwise the whole text.
  An answer that appears only inside the reasoning is therefore never found.
* In the region, in order of preference: ``<answer>...</answer>`` blocks (the ``\\boxed{}``
  contents inside a block if it has any, else the block text); else every ``\\boxed{}`` /
  ``\\fbox{}``; else every GSM8K ``#### n`` line.
* Every candidate found must match the gold answer: a completion that states several
  different final answers scores 0.

Checking (``answers_match``): a fast exact path for plain numbers (integers, decimals,
thousands separators, ``a/b`` and ``\\frac{a}{b}``, leading ``$``), normalised string
comparison for text answers, the fast LaTeX evaluator of ``latex_fast`` for common
expressions/tuples/intervals/sets (it answers only when the comparison is clear), and
math-verify for everything else (percentages, equations, matrices, unusual LaTeX). Parsed
answers are cached.
math-verify's signal-based timeouts are used only on the main thread with no alarm pending;
in worker threads they are disabled and risky inputs (exponent towers, huge integers,
big factorials, very long answers) are compared as strings only.
"""

from __future__ import annotations

import functools
import re
import signal
import threading
from fractions import Fraction
from typing import Any

from tasks.verifiers._base import Reward, column, log_metric, logger, prompt_text
from tasks.verifiers.answer_norm import (
    TEXT_UNITS_RE,
    is_text_answer,
    norm_text,
    numbers_equal,
    parse_number,
)
from tasks.verifiers.latex_fast import fast_equal, parse_latex

__all__ = [
    "MathAnswerReward",
    "answers_match",
    "extract_answers",
    "extract_final_answer",
    "extract_gold",
    "parse_number",
    "score_math_answer",
]

MAX_ANSWER_CHARS = 512
MV_TIMEOUT_S = 5

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_SPACE_RE = re.compile(r"\\boxed +([^\s$]+)")
_HASH_RE = re.compile(r"^[ \t]*####[ \t]*(.*?)[ \t]*$", re.MULTILINE)


def _answer_tag_re(tag: str) -> re.Pattern:
    return re.compile(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", re.DOTALL)


_ANSWER_RE = _answer_tag_re("answer")


def _boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` / ``\\fbox{...}`` (brace-matched) and ``\\boxed x``."""
    out: list[str] = []
    for m in _BOX_RE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            i += 1
        if depth == 0:
            out.append(text[m.end():i - 1])
        else:  # unbalanced: treat as an (unparseable) answer so it cannot be ignored
            out.append(text[m.end():])
    out.extend(m.group(1) for m in _BOX_SPACE_RE.finditer(text))
    return out


def answer_region(text: str, *, think_tag: str = "think", prefilled_think: bool = False) -> str | None:
    """The part of ``text`` that may hold the final answer (``None``: reasoning never closed)."""
    close = f"</{think_tag}>"
    k = text.rfind(close)
    if k >= 0:
        return text[k + len(close):]
    if prefilled_think or f"<{think_tag}>" in text:
        return None
    return text


def extract_answers(
    text: str, *, think_tag: str = "think", answer_tag: str = "answer", prefilled_think: bool = False
) -> list[str]:
    """All final-answer candidates stated in ``text`` (see the module docstring for the rules)."""
    region = answer_region(text or "", think_tag=think_tag, prefilled_think=prefilled_think)
    if not region:
        return []
    tag_re = _ANSWER_RE if answer_tag == "answer" else _answer_tag_re(answer_tag)
    blocks = tag_re.findall(region) if f"<{answer_tag}>" in region else []
    if blocks:
        cands: list[str] = []
        for b in blocks:
            boxed = _boxed_contents(b)
            cands.extend(boxed if boxed else [b])
    elif "\\boxed" in region or "\\fbox" in region:
        cands = _boxed_contents(region)
    elif "####" in region:
        cands = _HASH_RE.findall(region)
    else:
        return []
    return [_clean(c) for c in cands]


def extract_final_answer(text: str, **kwargs: Any) -> str | None:
    """The last final-answer candidate in ``text``, or ``None`` (same rules as the reward)."""
    cands = extract_answers(text, **kwargs)
    return cands[-1] if cands else None


def extract_gold(gold: Any) -> str | None:
    """The gold answer string: the last ``\\boxed{}`` or ``#### n`` of a worked solution, else the text."""
    if gold is None:
        return None
    if isinstance(gold, (int, float, Fraction)) and not isinstance(gold, bool):
        gold = str(gold)
    if not isinstance(gold, str):
        return None
    if "\\boxed" in gold or "\\fbox" in gold:
        boxed = _boxed_contents(gold)
        gold = boxed[-1] if boxed else gold
    elif "####" in gold:
        hashes = _HASH_RE.findall(gold)
        gold = hashes[-1] if hashes else gold
    gold = _clean(gold)
    return gold or None


_WRAPPERS = re.compile(r"^\\\(|\\\)$|^\\\[|\\\]$")


def _clean(s: str) -> str:
    s = s.strip()
    s = _WRAPPERS.sub("", s).strip()
    while len(s) >= 2 and s[0] == "$" and s[-1] == "$" and not s.startswith("\\$"):
        s = s[1:-1].strip()
    s = s.rstrip(".").strip()
    return s


# ---------------------------------------------------------------- math-verify path
_RISKY_RE = re.compile(
    r"\^\s*\{[^{}]*\^|\^\s*\(?[^{}\s]*\^|\d{40,}|\^\s*\{?\s*\d{4,}|\d{4,}\s*!|\\(?:int|sum|prod|lim)"
)


def _timeouts_ok() -> bool:
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        return signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    except (AttributeError, OSError, ValueError):  # pragma: no cover - non-POSIX
        return False


def _mv_parse(s: str) -> list:
    from math_verify import parse

    return parse(f"${s}$", parsing_timeout=MV_TIMEOUT_S if _timeouts_ok() else None)


@functools.lru_cache(maxsize=16384)
def _parse_gold(gold: str) -> tuple:
    """math-verify parse of the gold; empty when nothing but the raw string came back."""
    parsed = tuple(_mv_parse(gold))
    return parsed if any(not isinstance(x, str) for x in parsed) else ()


@functools.lru_cache(maxsize=16384)
def _parse_pred(pred: str) -> tuple:
    return tuple(_mv_parse(pred))


def _mv_verify(gold_parsed: tuple, pred_parsed: tuple) -> bool:
    from math_verify import verify

    try:
        return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=MV_TIMEOUT_S if _timeouts_ok() else None))
    except Exception:  # noqa: BLE001 - a crash in sympy is a non-match, never a pass
        logger.debug("math-verify failed", exc_info=True)
        return False


def gold_is_parseable(gold: Any) -> bool:
    """Whether ``gold`` can be checked at all (numbers, text, or something math-verify parses)."""
    g = extract_gold(gold)
    if g is None:
        return False
    if parse_number(g) is not None or is_text_answer(g) or parse_latex(g) is not None:
        return True
    return len(_parse_gold(g)) > 0


def answers_match(pred: str | None, gold: Any) -> bool | None:
    """Whether the extracted answer ``pred`` equals ``gold``; ``None`` if gold cannot be parsed."""
    g = extract_gold(gold)
    if g is None:
        return None
    if pred is None:
        return False if gold_is_parseable(g) else None
    p = _clean(pred)
    gnum = parse_number(g)
    if gnum is not None:
        pnum = parse_number(p)
        if pnum is not None:
            return numbers_equal(pnum, gnum)
        stripped = TEXT_UNITS_RE.sub("", p)  # "18 dollars", "18 \text{ cm}"
        if stripped != p and (pnum := parse_number(stripped)) is not None:
            return numbers_equal(pnum, gnum)
    if is_text_answer(g):
        return bool(p) and norm_text(p) == norm_text(g)
    if p == g:
        return True
    fast = fast_equal(p, g)
    if fast is not None:
        return fast
    gp = _parse_gold(g)
    if not gp:
        return None
    if not p or len(p) > max(MAX_ANSWER_CHARS, 4 * len(g)) or _RISKY_RE.search(p):
        return False
    pp = _parse_pred(p)
    if not pp:
        return False
    return _mv_verify(gp, pp)


def derivation_chars(text: str, prompt: Any = None, *, think_tag: str = "think") -> int:
    """Non-space characters of reasoning before the final answer (0 if it is a copy of the prompt)."""
    close = f"</{think_tag}>"
    if close in text:
        reasoning = text[: text.rfind(close)].replace(f"<{think_tag}>", "")
    else:
        cut = [i for i in (text.find("<answer>"), text.find("\\boxed"), text.find("####")) if i >= 0]
        reasoning = text[: min(cut)] if cut else text
    compact = "".join(reasoning.split())
    if prompt is not None and compact and compact in "".join(prompt_text(prompt).split()):
        return 0
    return len(compact)


def score_math_answer(
    completion_text: str,
    gold: Any,
    *,
    prefilled_think: bool = False,
    think_tag: str = "think",
    answer_tag: str = "answer",
    min_derivation_chars: int = 0,
    prompt: Any = None,
) -> float | None:
    """1.0 if every final answer stated in the completion matches ``gold``, else 0.0.

    ``None`` when the gold answer cannot be parsed (the row is not scored). With
    ``min_derivation_chars > 0`` a completion whose reasoning before the answer is shorter
    (or only a copy of the prompt) scores 0.
    """
    g = extract_gold(gold)
    if g is None or not gold_is_parseable(g):
        return None
    cands = extract_answers(completion_text, think_tag=think_tag, answer_tag=answer_tag, prefilled_think=prefilled_think)
    if not cands:
        return 0.0
    if min_derivation_chars > 0 and derivation_chars(completion_text, prompt, think_tag=think_tag) < min_derivation_chars:
        return 0.0
    for c in dict.fromkeys(cands):
        if not answers_match(c, g):
            return 0.0
    return 1.0


class MathAnswerReward(Reward):
    """Math answer correctness against the ``answer`` column (math-verify + fast numeric path).

    Scoring rule: 1.0 when the completion's final answer(s) - ``<answer>`` block, else
    ``\\boxed{}``, else GSM8K ``#### n``, searched only after the reasoning (``</think>``) - all
    equal the gold answer; 0.0 when the answer is missing, wrong, found only inside the
    reasoning, or when several different final answers are stated; ``None`` when the row's
    gold answer is missing or cannot be parsed (counted in ``stats`` and logged via TRL's
    ``log_metric`` as ``math_answer/unparseable_gold``, never scored 0).

    Params: ``prefilled_think`` (the chat template already opened ``<think>``: the answer must
    follow a ``</think>``), ``think_tag``, ``answer_tag``, ``min_derivation_chars`` (0 = off;
    else require that much reasoning before the answer, not copied from the prompt),
    ``answer_column``.
    """

    name = "math_answer_reward"
    FAMILIES = ("math",)
    COLUMNS = ("answer_column",)
    PARAMS = {
        "prefilled_think": False,
        "think_tag": "think",
        "answer_tag": "answer",
        "min_derivation_chars": 0,
        "answer_column": "answer",
    }

    def _validate(self) -> None:
        if self.params["min_derivation_chars"] < 0:
            self._fail("min_derivation_chars must be >= 0")
        for k in ("think_tag", "answer_tag"):
            if not re.fullmatch(r"[A-Za-z_][\w\-]*", self.params[k]):
                self._fail(f"{k} must be a bare tag name like 'think', got {self.params[k]!r}")
        self.stats = {"scored": 0, "unparseable_gold": 0}

    def score_batch(self, texts, prompts, kwargs):
        golds = column(kwargs, self.params["answer_column"], len(texts))
        prompts = prompts if prompts is not None else [None] * len(texts)
        out: list[float | None] = []
        bad = 0
        p = self.params
        for text, gold, prompt in zip(texts, golds, prompts):
            r = score_math_answer(
                text, gold, prefilled_think=p["prefilled_think"], think_tag=p["think_tag"],
                answer_tag=p["answer_tag"], min_derivation_chars=p["min_derivation_chars"], prompt=prompt,
            )
            if r is None:
                bad += 1
                _warn_gold(gold)
            out.append(r)
        self.stats["scored"] += len(texts) - bad
        self.stats["unparseable_gold"] += bad
        if bad:
            log_metric(kwargs, "math_answer/unparseable_gold", bad)
        return out


_warned: set = set()


def _warn_gold(gold: Any) -> None:
    key = repr(gold)[:200]
    if key not in _warned and len(_warned) < 1000:
        _warned.add(key)
        logger.warning("math_answer_reward: gold answer cannot be parsed, row not scored: %s", key)
