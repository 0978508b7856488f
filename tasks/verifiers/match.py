"""Exact and numeric match of the final answer against the ``answer`` column."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from tasks.verifiers._base import Reward, column
from tasks.verifiers.answer_norm import numbers_equal, parse_number, split_unit
from tasks.verifiers.math import answer_region, extract_answers, extract_gold

__all__ = ["ExactMatchReward", "NumericMatchReward", "normalize_text"]

_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
# sentence punctuation only (not between digits): signs, relations, brackets, slashes keep meaning
_SENTENCE_PUNCT = re.compile(r"(?<!\d)[.,](?!\d)|[.,](?=\s|$)|[;:!?'\"`\u2018\u2019\u201c\u201d]")
_CHOICE = re.compile(r"^\((\w+)\)$")  # "(C)" is the choice C


def normalize_text(s: str, *, case_sensitive: bool = False, strip_punctuation: bool = True) -> str:
    """NFKC, ``\\text{}`` unwrapped, ``$`` removed, whitespace collapsed; optionally lowercased and
    stripped of sentence punctuation (``. , ; : ! ?`` and quotes, never between digits; a
    bracketed choice ``(C)`` is ``C``). Signs, relations, brackets and operators are kept:
    ``-5`` is not ``5`` and ``x>3`` is not ``x<3``."""
    s = unicodedata.normalize("NFKC", s)
    s = _TEXT_CMD.sub(r"\1", s).replace("$", "")
    if not case_sensitive:
        s = s.casefold()
    if strip_punctuation:
        s = _CHOICE.sub(r"\1", _SENTENCE_PUNCT.sub(" ", s).strip())
    return " ".join(s.split())


def _candidates(text: str, extract: str, prefilled_think: bool) -> list[str]:
    if extract == "none":
        region = answer_region(text, prefilled_think=prefilled_think)
        return [region.strip()] if region and region.strip() else []
    return extract_answers(text, prefilled_think=prefilled_think)


def _golds(gold: Any) -> list[str] | None:
    if gold is None:
        return None
    items = list(gold) if isinstance(gold, (list, tuple)) else [gold]
    out = [g for g in (extract_gold(x) for x in items) if g]
    return out or None


class _MatchBase(Reward):
    PARAMS = {"answer_column": "answer", "extract": "final", "prefilled_think": False}
    COLUMNS = ("answer_column",)

    def _validate(self) -> None:
        if self.params["extract"] not in ("final", "none"):
            self._fail("extract must be 'final' (answer tags / boxed / ####) or 'none' (whole answer text)")

    def match(self, cand: str, gold: str) -> bool | None:
        raise NotImplementedError

    def score_batch(self, texts, prompts, kwargs):
        p = self.params
        out: list[float | None] = []
        for text, gold in zip(texts, column(kwargs, p["answer_column"], len(texts))):
            golds = [g for g in (_golds(gold) or []) if self.match(g, g) is not None]
            if not golds:
                out.append(None)  # no usable gold answer: not applicable
                continue
            cands = _candidates(text, p["extract"], p["prefilled_think"])
            ok = bool(cands) and all(any(self.match(c, g) for g in golds) for c in cands)
            out.append(1.0 if ok else 0.0)
        return out


class ExactMatchReward(_MatchBase):
    """Normalised string equality of the final answer with the gold (or any of a list of golds).

    Scoring rule: 1.0 when every final answer stated (``<answer>``, else ``\\boxed{}``, else
    ``#### n``; or the whole text after the reasoning with ``extract="none"``) equals a gold
    answer after normalisation (NFKC, ``\\text{}``/``$`` removed, whitespace collapsed, and by
    default case-folded and stripped of sentence punctuation; signs, relations and brackets kept); else 0.0; ``None`` without a gold answer.
    Params: ``answer_column``, ``extract``, ``prefilled_think``, ``case_sensitive``,
    ``strip_punctuation``.
    """

    name = "exact_match_reward"
    PARAMS = {**_MatchBase.PARAMS, "case_sensitive": False, "strip_punctuation": True}

    def match(self, cand: str, gold: str) -> bool | None:
        kw = {"case_sensitive": self.params["case_sensitive"], "strip_punctuation": self.params["strip_punctuation"]}
        g = normalize_text(gold, **kw)
        return normalize_text(cand, **kw) == g if g else None


def _parse(s: str):
    """``parse_number`` of ``s``, or of its number when it carries an allowed unit (``18 dollars``)."""
    parsed = parse_number(s)
    if parsed is None and (unit := split_unit(s)) is not None and unit[1]:
        parsed = parse_number(unit[0])
    return parsed


def to_number(s: str) -> float | None:
    """A float from a plain numeric answer: ``1,234.5``, ``-3/4``, ``\\frac{1}{2}``, ``$5``, ``40%``,
    ``18 dollars``; ``None`` otherwise."""
    s = s.strip()
    pct = s.endswith("%")
    if pct:
        s = s.rstrip("%").rstrip("\\").strip()
    parsed = _parse(s)
    if parsed is None:
        return None
    value = float(parsed[0])
    return value / 100 if pct else value


class NumericMatchReward(_MatchBase):
    """Numeric equality of the final answer with the gold within a tolerance.

    Scoring rule: 1.0 when every final answer stated is a number with
    ``|x - gold| <= max(abs_tol, rel_tol * |gold|)`` (``math.isclose``), except that with
    ``exact_integers`` (default) a gold written as an integer or fraction is matched exactly
    (a decimal only within 1e-6 of a fraction like 1/3 whose expansion does not terminate:
    ``123456700.0`` is not ``123456789``); units only from ``answer_norm.UNITS``; percentages are divided
    by 100 only when ``percent_as_fraction`` is true, else ``40%`` reads as 40; 0.0 otherwise
    (including non-numeric answers); ``None`` when the gold is missing or not a number.
    Params: ``answer_column``, ``extract``, ``prefilled_think``, ``rel_tol`` (1e-6),
    ``abs_tol`` (1e-9), ``percent_as_fraction`` (False), ``exact_integers`` (True).
    """

    name = "numeric_match_reward"
    PARAMS = {**_MatchBase.PARAMS, "rel_tol": 1e-6, "abs_tol": 1e-9, "percent_as_fraction": False,
              "exact_integers": True}

    def _validate(self) -> None:
        super()._validate()
        if self.params["rel_tol"] < 0 or self.params["abs_tol"] < 0:
            self._fail("rel_tol and abs_tol must be >= 0")

    def _num(self, s: str) -> float | None:
        if not self.params["percent_as_fraction"]:
            s = s.strip()
            s = s[:-1].rstrip("\\") if s.endswith("%") else s
        return to_number(s)

    def match(self, cand: str, gold: str) -> bool | None:
        g = self._num(gold)
        if g is None or not math.isfinite(g):
            return None
        c = self._num(cand)
        if c is None:
            return False
        exact_gold, exact_cand = _parse(self._bare(gold)), _parse(self._bare(cand))
        if self.params["exact_integers"] and exact_gold is not None and exact_cand is not None and not exact_gold[1]:
            return numbers_equal(exact_cand, exact_gold)  # an exact gold: tolerance only for 1/3-like golds
        return math.isclose(c, g, rel_tol=self.params["rel_tol"], abs_tol=self.params["abs_tol"])

    def _bare(self, s: str) -> str:
        s = s.strip()
        return s[:-1].rstrip("\\") if s.endswith("%") and not self.params["percent_as_fraction"] else s
