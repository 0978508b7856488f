"""Math answer extraction and checking, shared by the GRPO reward and evaluation.

Extraction (``extract_answers`` / ``extract_final_answer``, in ``math_extract``, linear in the text):

* Only the *answer region* is searched: the text after the last ``</think>`` when the
  completion has one; nothing when a ``<think>`` block is left open (or, with
  ``prefilled_think``, when ``</think>`` never appears); otherwise the whole text.
  An answer that appears only inside the reasoning is therefore never found.
* In the region, in order of preference: ``<answer>...</answer>`` blocks (the ``\\boxed{}``
  contents inside a block if it has any, else the block text); else every ``\\boxed{}`` /
  ``\\fbox{}``; else every GSM8K ``#### n`` line.
* Every candidate found must match the gold answer: a completion that states several
  different final answers scores 0.

Checking (``answers_match`` / ``answers_match_many``), every step bounded:

* in this process: an exact path for plain numbers (integers, decimals, thousands separators,
  ``a/b`` and ``\\frac{a}{b}``, leading ``$``, a unit from ``answer_norm.UNITS``; tolerance only
  for a decimal against a non-terminating fraction), normalised string comparison for text
  answers (words are never a number or an expression),
  and the fast LaTeX evaluator (``latex_forms`` over ``latex_fast``: expressions, tuples,
  intervals, sets, lists, degrees, percentages, bases, equations, matrices), which answers only
  when the comparison is clear and bounds its input sizes, exponents and integers;
* else math-verify, only ever in worker processes (``mv_pool``): each comparison is killed
  after ``mv_pool.TIMEOUT_S`` and scores 0, so sympy never holds this process's GIL; risky
  shapes (exponent towers, huge integers and factorials, integrals, very long answers) score 0
  before reaching it. Both kinds are counted (``notes``; the reward logs them).

Budgets per completion (``score_math_answers``): at most ``MAX_CANDIDATES`` distinct answers
and ``MAX_VERIFY_PER_COMPLETION`` math-verify comparisons, and none at all once an in-process
check found one of its answers wrong; per batch, ``budget_s`` for math-verify; callers share
its workers in turn (``mv_pool``).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from tasks.verifiers._base import Reward, column, log_metric, logger
from tasks.verifiers.answer_norm import is_text_answer, norm_text, numbers_equal, parse_number, split_unit
from tasks.verifiers.latex_forms import forms_equal
from tasks.verifiers.latex_parse import parse_latex
from tasks.verifiers.math_extract import (
    UNBALANCED,
    answer_region,
    clean_answer,
    derivation_chars,
    extract_answers,
    extract_final_answer,
    extract_gold,
)
from tasks.verifiers.mv_pool import TIMED_OUT
from tasks.verifiers.mv_pool import get_pool as get_mv_pool

__all__ = [
    "MathAnswerReward",
    "answer_region",
    "derivation_chars",
    "answers_match",
    "answers_match_many",
    "extract_answers",
    "extract_final_answer",
    "extract_gold",
    "parse_number",
    "score_math_answer",
    "score_math_answers",
]

MAX_ANSWER_CHARS = 512
MAX_CANDIDATES = 4  # distinct final answers a completion may state before it scores 0 unread
MAX_VERIFY_PER_COMPLETION = 1  # of them, at most this many may need math-verify (a hostile one costs one TIMEOUT_S)
BATCH_BUDGET_S = 60.0  # math-verify comparisons of one batch not started by then score 0

# ---------------------------------------------------------------- checking
_RISKY_RE = re.compile(
    r"\^\s*\{[^{}]*\^|\^\s*\(?[^{}\s]*\^|\d{40,}|\^\s*\{?\s*\d{5,}|\d{4,}\s*!|\\(?:int|sum|prod|lim)"
)
_CURRENCY_RE = re.compile(r"^(?:\\\\)?\\\$\s*|^\$\s*")
_EXPONENT_RE = re.compile(r"\^\s*\{?\s*\(?\s*-?(\d+)")


def _risky(p: str) -> bool:
    """Shapes that can make sympy slow (towers, huge integers and factorials, integrals, ...)."""
    if _RISKY_RE.search(p):
        return True
    big = [int(e) for e in _EXPONENT_RE.findall(p) if int(e) >= 100]
    return len(big) >= 2 or bool(big and p.count("^") >= 2)


def _fast(p: str, g: str) -> bool | None:
    """The in-process, bounded checks: exact numbers, text answers, identical strings, LaTeX forms."""
    gnum = parse_number(g)
    if gnum is not None:
        pnum = parse_number(p)
        if pnum is not None:
            return numbers_equal(pnum, gnum)
        unit = split_unit(p)  # "18 dollars", "18 \\text{ cm}"; "5x", "5 \\text{ million}" are wrong
        if unit is not None and (pnum := parse_number(unit[0])) is not None:
            return unit[1] and numbers_equal(pnum, gnum)
    if is_text_answer(g):
        return bool(p) and norm_text(p) == norm_text(g)
    if p == g:
        return True
    if is_text_answer(p):
        return False  # words (\\text{yes}) are never a number or an expression
    pnum = parse_number(p)
    if pnum is not None:  # "19,619" is a number, not the list 19, 619; "\\$5.10" is 5.10
        p = str(pnum[0]) if not pnum[1] else _CURRENCY_RE.sub("", p).replace(",", "").replace("{,}", "")
    return forms_equal(p, _CURRENCY_RE.sub("", g))


@functools.lru_cache(maxsize=16384)
def _gold_ok(g: str) -> bool:
    if parse_number(g) is not None or is_text_answer(g) or parse_latex(g) is not None or forms_equal(g, g):
        return True
    return get_mv_pool().ask(["gold", g]) is True


def gold_is_parseable(gold: Any) -> bool:
    """Whether ``gold`` can be checked at all (numbers, text, or something math-verify parses)."""
    g = extract_gold(gold)
    return g is not None and _gold_ok(g)


def _note(notes: dict | None, key: str) -> None:
    if notes is not None:
        notes[key] = notes.get(key, 0) + 1


def _fast_verdicts(pairs: list[tuple[str | None, Any]], notes: dict | None) -> tuple[list, dict]:
    """In-process verdicts of ``pairs``, and ``{(pred, gold): [indices]}`` of those left to math-verify."""
    out: list[bool | None] = [None] * len(pairs)
    pending: dict[tuple[str, str], list[int]] = {}
    for i, (pred, gold) in enumerate(pairs):
        g = extract_gold(gold)
        if g is None:
            continue
        if pred is None:
            out[i] = False if _gold_ok(g) else None
            continue
        p = clean_answer(pred)
        if len(p) > max(MAX_ANSWER_CHARS, 4 * len(g)):  # before any check: none has to scale with it
            _note(notes, "refused")
            out[i] = False
            continue
        out[i] = False if p == UNBALANCED else _fast(p, g)
        if out[i] is not None:
            continue
        if not _gold_ok(g):
            continue
        if not p or _risky(p):
            _note(notes, "refused")
            out[i] = False
            continue
        pending.setdefault((p, g), []).append(i)
    return out, pending


def _verify(out: list, pending: dict, notes: dict | None, budget_s: float | None) -> list:
    """Settle ``pending`` with math-verify (parallel, fair, killed at ``TIMEOUT_S``) into ``out``."""
    if pending:
        results = get_mv_pool().ask_many([["eq", p, g] for p, g in pending], budget_s)
        for idx, r in zip(pending.values(), results):
            if r == TIMED_OUT:
                _note(notes, "timeouts")
                r = False
            for i in idx:
                out[i] = r
    return out


def answers_match_many(pairs: list[tuple[str | None, Any]], notes: dict | None = None,
                       budget_s: float | None = None) -> list[bool | None]:
    """``answers_match`` for many pairs; the math-verify ones run in parallel worker processes.

    ``notes`` (a dict) counts ``refused`` (risky answers scored 0 before sympy) and ``timeouts``
    (comparisons killed after ``mv_pool.TIMEOUT_S`` or not started within ``budget_s``)."""
    out, pending = _fast_verdicts(pairs, notes)
    return _verify(out, pending, notes, budget_s)


def answers_match(pred: str | None, gold: Any, notes: dict | None = None) -> bool | None:
    """Whether the extracted answer ``pred`` equals ``gold``; ``None`` if gold cannot be parsed.

    Bounded: the fast checks run here; anything else goes to math-verify in a worker process
    that is killed after ``mv_pool.TIMEOUT_S``; risky shapes score False without reaching it."""
    return answers_match_many([(pred, gold)], notes)[0]


def _candidates(text: str, gold: Any, opts: dict, prompt: Any,
                notes: dict | None = None) -> tuple[str | None, list[str] | None]:
    """(gold, distinct candidates) of one completion; candidates None when it scores 0 outright
    (no answer, too little derivation, or more than ``MAX_CANDIDATES`` different answers)."""
    g = extract_gold(gold)
    if g is None or not gold_is_parseable(g):
        return None, None
    cands = extract_answers(text, think_tag=opts.get("think_tag", "think"), answer_tag=opts.get("answer_tag", "answer"),
                            prefilled_think=opts.get("prefilled_think", False))
    need = opts.get("min_derivation_chars", 0)
    if not cands or (need > 0 and derivation_chars(text, prompt, think_tag=opts.get("think_tag", "think")) < need):
        return g, None
    distinct = list(dict.fromkeys(cands))
    if len(distinct) > MAX_CANDIDATES:
        _note(notes, "refused")
        return g, None
    return g, distinct


def score_math_answers(texts: list[str], golds: list, prompts: list | None = None, notes: dict | None = None,
                       budget_s: float = BATCH_BUDGET_S, **opts: Any) -> list[float | None]:
    """``score_math_answer`` for many completions at once.

    The in-process checks run first; a completion with a wrong answer among them scores 0 with
    no math-verify call, and one that needs more than ``MAX_VERIFY_PER_COMPLETION`` of them
    scores 0 (counted as refused); the rest go to math-verify together (within ``budget_s``)."""
    prompts = prompts if prompts is not None else [None] * len(texts)
    rows = [_candidates(t, g, opts, pr, notes) for t, g, pr in zip(texts, golds, prompts)]
    pairs = [(c, g) for g, cands in rows if cands for c in cands]
    fast, pending = _fast_verdicts(pairs, notes)
    owner = [r for r, (g, cands) in enumerate(rows) for _ in cands or []]
    waiting: dict[int, int] = {}
    for idx in pending.values():
        for i in idx:
            waiting[owner[i]] = waiting.get(owner[i], 0) + 1
    doomed = {owner[i] for i, v in enumerate(fast) if v is False}
    for r, n in waiting.items():
        if n > MAX_VERIFY_PER_COMPLETION and r not in doomed:
            _note(notes, "refused")
            doomed.add(r)
    pending = {k: kept for k, idx in pending.items() if (kept := [i for i in idx if owner[i] not in doomed])}
    verdicts = iter(_verify(fast, pending, notes, budget_s))
    out: list[float | None] = []
    for r, (g, cands) in enumerate(rows):
        if g is None:
            out.append(None)
        else:
            ok = [next(verdicts) for _ in cands or []]
            out.append(1.0 if cands and r not in doomed and all(ok) else 0.0)
    return out


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
    return score_math_answers([completion_text], [gold], [prompt], prefilled_think=prefilled_think, think_tag=think_tag,
                              answer_tag=answer_tag, min_derivation_chars=min_derivation_chars)[0]


class MathAnswerReward(Reward):
    """Math answer correctness against the ``answer`` column (math-verify + fast numeric path).

    Scoring rule: 1.0 when the completion's final answer(s) - ``<answer>`` block, else
    ``\\boxed{}``, else GSM8K ``#### n``, searched only after the reasoning (``</think>``) - all
    equal the gold answer; 0.0 when the answer is missing, wrong, found only inside the
    reasoning, or when several different final answers are stated; ``None`` when the row's
    gold answer is missing or cannot be parsed (counted in ``stats`` and logged via TRL's
    ``log_metric`` as ``math_answer/unparseable_gold``, never scored 0). Hostile answers (refused
    risky shapes, comparisons killed at the time limit) score 0 and are counted as
    ``math_answer/hostile_answers``.

    Params: ``prefilled_think`` (the chat template already opened ``<think>``: the answer must
    follow a ``</think>``), ``think_tag``, ``answer_tag``, ``min_derivation_chars`` (0 = off;
    else require that much reasoning before the answer, not copied from the prompt: see
    ``derivation_chars``), ``answer_column``, ``batch_budget_s`` (math-verify comparisons not
    started within it score 0). Budget: at most ``MAX_CANDIDATES`` distinct answers and
    ``MAX_VERIFY_PER_COMPLETION`` math-verify comparisons (each killed at ``mv_pool.TIMEOUT_S``)
    per completion, else 0 (counted as hostile); extraction is linear in the text.
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
        "batch_budget_s": BATCH_BUDGET_S,
    }

    def _validate(self) -> None:
        if self.params["min_derivation_chars"] < 0:
            self._fail("min_derivation_chars must be >= 0")
        if self.params["batch_budget_s"] <= 0:
            self._fail("batch_budget_s must be > 0")
        for k in ("think_tag", "answer_tag"):
            if not re.fullmatch(r"[A-Za-z_][\w\-]*", self.params[k]):
                self._fail(f"{k} must be a bare tag name like 'think', got {self.params[k]!r}")
        self.stats = {"scored": 0, "unparseable_gold": 0, "hostile_answers": 0}

    def score_batch(self, texts, prompts, kwargs):
        p = self.params
        golds = column(kwargs, p["answer_column"], len(texts))
        notes: dict = {}
        out = score_math_answers(texts, golds, prompts, notes, p["batch_budget_s"], prefilled_think=p["prefilled_think"],
                                 think_tag=p["think_tag"], answer_tag=p["answer_tag"],
                                 min_derivation_chars=p["min_derivation_chars"])
        bad = 0
        for r, gold in zip(out, golds):
            if r is None:
                bad += 1
                _warn_gold(gold)
        self.stats["scored"] += len(texts) - bad
        self.stats["unparseable_gold"] += bad
        hostile = notes.get("refused", 0) + notes.get("timeouts", 0)
        self.stats["hostile_answers"] += hostile
        if bad:
            log_metric(kwargs, "math_answer/unparseable_gold", bad)
        if hostile:
            log_metric(kwargs, "math_answer/hostile_answers", hostile)
        return out


_warned: set = set()


def _warn_gold(gold: Any) -> None:
    key = repr(gold)[:200]
    if key not in _warned and len(_warned) < 1000:
        _warned.add(key)
        logger.warning("math_answer_reward: gold answer cannot be parsed, row not scored: %s", key)
