"""Length shaping: DAPO soft overlong punishment, cosine length-scaled correctness, n-gram
repetition penalty."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from tasks.verifiers._base import Reward, column, logger
from tasks.verifiers.math import score_math_answers

__all__ = ["CosineLengthReward", "RepetitionPenaltyReward", "SoftOverlongReward"]

_warned_no_ids = [False]


def _lengths(texts: list[str], kwargs: dict, unit: str) -> list[int]:
    """Completion lengths in tokens (TRL's ``completion_ids``) or characters."""
    if unit == "chars":
        return [len(t) for t in texts]
    ids = kwargs.get("completion_ids")
    if ids is not None and len(ids) == len(texts):
        return [len(x) for x in ids]
    if not _warned_no_ids[0]:
        _warned_no_ids[0] = True
        logger.warning("length rewards: no completion_ids passed; approximating tokens as chars / 4")
    return [math.ceil(len(t) / 4) for t in texts]


def _check_unit(reward: Reward) -> None:
    if reward.params["length_unit"] not in ("tokens", "chars"):
        reward._fail("length_unit must be 'tokens' or 'chars'")


class SoftOverlongReward(Reward):
    """DAPO soft overlong punishment (Eq. 13): 0 up to ``max_completion_len - soft_punish_cache``,
    then falling linearly to -1 at ``max_completion_len``, and -1 beyond.

    Scoring rule with L = length, L_max = ``max_completion_len``, C = ``soft_punish_cache``:
    0 if L <= L_max - C; (L_max - C - L) / C if L_max - C < L <= L_max; -1 if L > L_max.
    Params: ``max_completion_len`` (4096), ``soft_punish_cache`` (1024), ``length_unit``
    ("tokens": TRL's ``completion_ids``; "chars").
    """

    name = "soft_overlong_reward"
    PARAMS = {"max_completion_len": 4096, "soft_punish_cache": 1024, "length_unit": "tokens"}

    def _validate(self) -> None:
        p = self.params
        if p["max_completion_len"] <= 0 or not 0 <= p["soft_punish_cache"] <= p["max_completion_len"]:
            self._fail("need max_completion_len > 0 and 0 <= soft_punish_cache <= max_completion_len")
        _check_unit(self)

    def score_batch(self, texts, prompts, kwargs):
        lmax, cache = self.params["max_completion_len"], self.params["soft_punish_cache"]
        out = []
        for n in _lengths(texts, kwargs, self.params["length_unit"]):
            if n <= lmax - cache:
                out.append(0.0)
            elif n <= lmax:
                out.append((lmax - cache - n) / cache)
            else:
                out.append(-1.0)
        return out


class CosineLengthReward(Reward):
    """Cosine length-scaled correctness (Demystifying Long CoT; open-r1 ``cosine``).

    Scoring rule with p = min(L / ``max_len``, 1) and c = cos(pi * p): a correct answer
    (``math_answer_reward``'s check) scores ``min_value_correct + 0.5 * (max_value_correct -
    min_value_correct) * (1 + c)`` (short correct is best); a wrong one scores
    ``max_value_wrong + 0.5 * (min_value_wrong - max_value_wrong) * (1 + c)`` (long wrong is
    penalised least); ``None`` when the gold cannot be parsed. Params: ``min_value_wrong``
    (-0.5), ``max_value_wrong`` (0.0), ``min_value_correct`` (0.5), ``max_value_correct`` (1.0),
    ``max_len`` (1000), ``length_unit`` ("chars" | "tokens"), ``prefilled_think``,
    ``answer_column``.
    """

    name = "cosine_length_reward"
    FAMILIES = ("math",)
    COLUMNS = ("answer_column",)
    PARAMS = {"min_value_wrong": -0.5, "max_value_wrong": 0.0, "min_value_correct": 0.5,
              "max_value_correct": 1.0, "max_len": 1000, "length_unit": "chars", "prefilled_think": False,
              "answer_column": "answer"}

    def _validate(self) -> None:
        p = self.params
        if p["max_len"] <= 0:
            self._fail("max_len must be > 0")
        if p["min_value_wrong"] > p["max_value_wrong"] or p["min_value_correct"] > p["max_value_correct"]:
            self._fail("need min_value_wrong <= max_value_wrong and min_value_correct <= max_value_correct")
        _check_unit(self)

    def score_batch(self, texts, prompts, kwargs):
        p = self.params
        golds = column(kwargs, p["answer_column"], len(texts))
        out: list[float | None] = []
        verdicts = score_math_answers(texts, golds, prefilled_think=p["prefilled_think"])  # one batch: its budgets
        for correct, n in zip(verdicts, _lengths(texts, kwargs, p["length_unit"])):
            if correct is None:
                out.append(None)
                continue
            cosine = math.cos(math.pi * min(n / p["max_len"], 1.0))
            if correct:
                lo, hi = p["min_value_correct"], p["max_value_correct"]
            else:
                lo, hi = p["max_value_wrong"], p["min_value_wrong"]
            out.append(lo + 0.5 * (hi - lo) * (1.0 + cosine))
        return out


_TOKEN = re.compile(r"\w+|[^\w\s]")
CHUNK = 8  # a word longer than 2 x CHUNK is counted in CHUNK-letter pieces ("waitwaitwait...")


def _tokens(text: str) -> list[str]:
    """Words and punctuation marks as separate tokens (``wait,wait,wait`` is six), over-long
    words cut into ``CHUNK``-letter pieces, so no separator (or its absence) hides a repeat."""
    out: list[str] = []
    for tok in _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold()):  # ｗａｉｔ and 𝐰𝐚𝐢𝐭 are wait
        if len(tok) > 2 * CHUNK:
            out.extend(tok[i:i + CHUNK] for i in range(0, len(tok), CHUNK))
        else:
            out.append(tok)
    return out


def _ngrams(text: str, n: int, unit: str) -> list[Any]:
    if unit == "chars":
        items: list[str] = [c for c in text if not c.isspace()]
    else:
        items = _tokens(text)
    return [tuple(items[i:i + n]) for i in range(len(items) - n + 1)]


class RepetitionPenaltyReward(Reward):
    """N-gram repetition penalty: ``(1 - unique n-grams / total n-grams) * max_penalty``.

    Scoring rule: 0.0 for text with fewer than ``ngram_size`` units, else the share of
    repeated n-grams times ``max_penalty`` (<= 0), so a fully repetitive text scores close to
    ``max_penalty``. Words are ``_tokens``: punctuation marks are tokens of their own and words
    over 16 letters are cut into 8-letter pieces, so ``wait,wait,wait`` or ``waitwaitwait``
    repeat as much as ``wait wait wait``. Params: ``ngram_size`` (3), ``max_penalty`` (-1.0),
    ``unit`` ("words" | "chars" - use chars for Chinese/Japanese text without spaces).
    """

    name = "repetition_penalty_reward"
    PARAMS = {"ngram_size": 3, "max_penalty": -1.0, "unit": "words"}

    def _validate(self) -> None:
        if self.params["max_penalty"] > 0:
            self._fail("max_penalty must be <= 0")
        if self.params["ngram_size"] < 1:
            self._fail("ngram_size must be >= 1")
        if self.params["unit"] not in ("words", "chars"):
            self._fail("unit must be 'words' or 'chars'")

    def score_batch(self, texts, prompts, kwargs):
        n, penalty, unit = self.params["ngram_size"], self.params["max_penalty"], self.params["unit"]
        out = []
        for text in texts:
            grams = _ngrams(text, n, unit)
            if not grams:
                out.append(0.0)
                continue
            out.append((1.0 - len(set(grams)) / len(grams)) * penalty + 0.0)
        return out
