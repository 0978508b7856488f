"""Check the checker: re-check a sample of a verifier's verdicts by slower, stronger means.

    items = audit_batch(reward, texts, prompts, columns, settings, rng)   # AuditItem per re-checked completion
    tally = AuditTally(); tally.add(items); tally.summary()               # rates, Wilson intervals, sizes

A verifier's 0 is a *false negative* when the completion's final answer is in fact right; its 1
is a *false positive* when the answer is in fact wrong. The re-check (``recheck``) is
independent of the verifier's own code path:

* an exact re-parse of the answer region (the text after the last ``</think>``; none while a
  reasoning block is open): every ``<answer>`` block (its ``\\boxed{}`` if it holds one), else
  every ``\\boxed{}``/``\\fbox{}`` (brace-matched), else every ``#### n`` line, else the last
  "the answer is X" / "Answer: X" phrase, else a region that is one short bare answer;
* equivalence by exact rational arithmetic for numbers, normalised text for text answers, and
  for expressions an evaluation at ``POINTS`` seeded rational points (the verifier uses 3);
* math-verify's full path (parse + verify, in its bounded worker processes) for everything the
  above leaves open, and to confirm every disagreement: when it contradicts the re-check the
  item is *undecided*, never a disagreement;
* optionally an LLM judge (``audit_judge.Judge``, TinyV-style) at an OpenAI-compatible endpoint,
  asked about disagreements and undecided items only; its verdict is final when it gives one.

As in the verifiers, every final answer stated must be right, so several different answers are
wrong. Only correctness verifiers with a gold answer are audited (``AUDITABLE``; for
``family_reward`` its rows of those verifiers' families). Budget: each item's math-verify call
is killed after ``mv_pool.TIMEOUT_S``; a batch stops re-checking after ``max_seconds`` (the rest
are counted as ``skipped``).
"""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

from tasks.verifiers._base import column, prompt_text
from tasks.verifiers.answer_norm import is_text_answer, norm_text, parse_number, split_unit
from tasks.verifiers.latex_fast import _eval as eval_node
from tasks.verifiers.latex_parse import Unsupported, parse_latex
from tasks.verifiers.mv_pool import TIMED_OUT
from tasks.verifiers.mv_pool import get_pool as get_mv_pool

__all__ = ["AUDITABLE", "AuditItem", "AuditTally", "audit_batch", "auditable", "recheck", "wilson"]

#: verifiers whose 0/1 says "the final answer equals the gold"
AUDITABLE = ("math_answer_reward", "exact_match_reward", "numeric_match_reward")
POINTS = 16
MAX_CHARS = 512
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASH = re.compile(r"^[ \t]*####[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_PHRASE = re.compile(r"(?:the\s+(?:final\s+)?answer\s+is|answer\s*[:=])\s*:?\s*([^\n]+)", re.IGNORECASE)
_BARE = re.compile(r"^[-+\w\\{}^/.,()\[\] *$%]{1,40}$")
_WORD = re.compile(r"[A-Za-z]{2,}")
_TAG = re.compile(r"</?[A-Za-z]\w*>")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a rate k/n ((0, 1) when n == 0): honest at small n and at 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n))


# ---------------------------------------------------------------- re-parse of the answer region
def _braced(text: str, start: int) -> str:
    depth, i = 1, start
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start:i - 1] if depth == 0 else text[start:]


def _clean(s: str) -> str:
    s = s.strip().strip("*").strip().rstrip(".").strip()
    s = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", s).strip()
    while len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s[1:-1].strip()
    return s.rstrip(".").strip()


def answer_candidates(text: str, think_tag: str = "think", answer_tag: str = "answer",
                      prefilled_think: bool = False) -> tuple[list[str], str]:
    """(final answers stated after the reasoning, the form they were found in)."""
    close = f"</{think_tag}>"
    if close in text:
        region = text[text.rfind(close) + len(close):]
    elif prefilled_think or f"<{think_tag}>" in text:
        return [], "none"
    else:
        region = text
    blocks = re.findall(rf"<{re.escape(answer_tag)}>(.*?)</{re.escape(answer_tag)}>", region, re.DOTALL)
    if blocks:
        out = []
        for b in blocks:
            boxes = [_braced(b, m.end()) for m in _BOX.finditer(b)]
            out += boxes or [b]
        return [_clean(c) for c in out], "answer_tag"
    if boxes := [_braced(region, m.end()) for m in _BOX.finditer(region)]:
        return [_clean(c) for c in boxes], "boxed"
    if hashes := _HASH.findall(region):
        return [_clean(c) for c in hashes], "hash"
    if phrases := _PHRASE.findall(region):
        return [_clean(phrases[-1])], "phrase"
    bare = region.strip()
    is_bare = bare and _BARE.match(bare) and not _WORD.search(re.sub(r"\\[A-Za-z]+", "", bare))
    return ([_clean(bare)], "bare") if is_bare else ([], "none")


def gold_answer(gold: Any) -> str | None:
    """The gold's final answer: the last ``\\boxed{}`` or ``#### n`` of a worked solution, else the text."""
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    if not isinstance(gold, str) or not gold.strip():
        return None
    if boxes := [_braced(gold, m.end()) for m in _BOX.finditer(gold)]:
        return _clean(boxes[-1])
    if hashes := _HASH.findall(gold):
        return _clean(hashes[-1])
    return _clean(gold)


# ---------------------------------------------------------------- equivalence
def _number(s: str) -> Fraction | None:
    s = s.strip()
    pct = s.endswith("%")
    s = s.rstrip("%").rstrip("\\").strip() if pct else s
    parsed = parse_number(s)
    if parsed is None and (unit := split_unit(s)) is not None and unit[1]:  # "18 dollars"; not "5 million"
        parsed = parse_number(unit[0])
    return None if parsed is None else parsed[0]


def _points_equal(p: str, g: str) -> bool | None:
    """Both answers evaluated at POINTS seeded rational points; None unless the result is clear."""
    pp, gp = parse_latex(p), parse_latex(g)
    if pp is None or gp is None or pp[1] != gp[1] or "box" in (pp[0][0], gp[0][0]):
        return None
    names, rng = sorted(gp[1]), random.Random(0)
    for _ in range(POINTS if names else 1):
        env = {v: Fraction(rng.randint(-97, 97) or 1, rng.randint(1, 13)) for v in names}
        try:
            a, b = eval_node(pp[0], env), eval_node(gp[0], env)
        except (Unsupported, OverflowError, ValueError, ZeroDivisionError, TypeError, RecursionError):
            return None
        if isinstance(a, Fraction) and isinstance(b, Fraction):
            if a != b:
                return False
            continue
        scale = max(1.0, abs(float(a)), abs(float(b)))
        diff = abs(float(a) - float(b)) / scale
        if diff > 1e-6:
            return False
        if diff > 1e-12:
            return None
    return True


def strong_equal(p: str, g: str) -> tuple[bool | None, str]:
    """(verdict, method) of one candidate against the gold; None when no method is sure."""
    if not p or len(p) > MAX_CHARS:
        return False, "empty_or_long"
    if _TAG.search(p):  # a stray tag inside the answer: never read a value out of it
        return False, "malformed"
    gn = _number(g)
    if gn is not None and (pn := _number(p)) is not None:
        return pn == gn or abs(pn - gn) <= Fraction(1, 10**6) * max(1, abs(gn)), "exact_number"
    if is_text_answer(g):
        return norm_text(p) == norm_text(g), "text"
    if (r := _points_equal(p, g)) is not None:
        return r, f"{POINTS}_points"
    return _math_verify(p, g), "math_verify"


def _math_verify(p: str, g: str) -> bool | None:
    r = get_mv_pool().ask(["eq", p, g])
    return None if r == TIMED_OUT or r is None else bool(r)


@dataclass
class Recheck:
    correct: bool | None
    form: str
    method: str
    answers: list[str] = field(default_factory=list)


def recheck(text: str, gold: Any, opts: dict | None = None) -> Recheck:
    """The audit's own verdict on one completion (see the module docstring)."""
    opts = opts or {}
    golds = [x for x in (gold if isinstance(gold, (list, tuple)) else [gold]) if gold_answer(x)]
    cands, form = answer_candidates(text or "", opts.get("think_tag", "think"), opts.get("answer_tag", "answer"),
                                    opts.get("prefilled_think", False))
    if not golds:
        return Recheck(None, form, "no_gold", cands)
    if not cands:
        return Recheck(False, form, "no_answer", cands)
    methods, verdicts = [], []
    for c in dict.fromkeys(cands):
        best: bool | None = False
        for g in golds:
            r, how = strong_equal(c, gold_answer(g))
            methods.append(how)
            if r:
                best = True
                break
            best = None if r is None else best
        verdicts.append(best)
    correct = False if False in verdicts else (None if None in verdicts else True)
    return Recheck(correct, form, "+".join(dict.fromkeys(methods)), cands)


# ---------------------------------------------------------------- one batch
@dataclass
class AuditItem:
    verifier: str
    verdict: int  # the verifier's: 1 or 0
    audit: bool | None  # the re-check's: correct, wrong, or undecided
    form: str
    method: str
    answer: str
    gold: str
    completion: str
    question: str = ""
    judge: bool | None = None
    index: int = -1  # position in the batch

    @property
    def disagrees(self) -> bool:
        return self.audit is not None and self.audit != bool(self.verdict)


def auditable(reward) -> dict[str | None, dict] | None:
    """family (None: any row) -> the extraction params of an auditable verifier; None when not auditable."""
    name, params = getattr(reward, "__name__", ""), getattr(reward, "params", {}) or {}
    if name in AUDITABLE:
        return {None: params}
    if name == "family_reward":
        by = {f: r for f, r in getattr(reward, "by_family", {}).items() if r.name in AUDITABLE}
        return {f: r.params for f, r in by.items()} or None
    return None


def _pick(indices: list[int], rate: float, cap: int, rng: random.Random) -> list[int]:
    chosen = [i for i in indices if rng.random() < rate]
    return chosen[:cap]


def audit_batch(reward, texts: list[str], scores: list, prompts: list | None, columns: dict, *,
                sample_rate: float, max_per_batch: int, max_seconds: float, rng: random.Random,
                judge=None, negatives: list[int] | None = None) -> tuple[list[AuditItem], int]:
    """Re-check a sample of the verifier's 0s and of its 1s (each side at ``sample_rate``, at most
    ``max_per_batch`` per side; ``negatives``: these 0s in full instead). Returns (items, skipped)."""
    fams = auditable(reward)
    if not fams:
        return [], 0
    n = len(texts)
    families = column(columns, "family", n)
    ok = [i for i in range(n) if (None in fams or families[i] in fams) and scores[i] in (0.0, 1.0)]
    zeros, ones = [i for i in ok if scores[i] == 0.0], [i for i in ok if scores[i] == 1.0]
    if negatives is not None:  # these 0s in full (the recheck reward), only where the verifier is audited
        wanted = set(negatives)
        zeros = [i for i in zeros if i in wanted]
    else:
        zeros = _pick(zeros, sample_rate, max_per_batch, rng)
    chosen = zeros + _pick(ones, sample_rate, max_per_batch, rng)
    t0, items = time.perf_counter(), []
    for k, i in enumerate(chosen):
        if time.perf_counter() - t0 > max_seconds:
            return items, len(chosen) - k
        opts = fams.get(families[i], fams.get(None)) or {}
        gold = column(columns, opts.get("answer_column", "answer"), n)[i]
        r = recheck(texts[i], gold, opts)
        item = AuditItem(reward.__name__, int(scores[i]), r.correct, r.form, r.method, " | ".join(r.answers)[:300],
                         str(gold)[:300], texts[i][-2000:], prompt_text(prompts[i])[-500:] if prompts else "", index=i)
        if r.correct is not None and bool(r.correct) != bool(scores[i]) and \
                _math_verify_contradicts(r, gold):
            item.audit, item.method = None, item.method + "+math_verify_contradicts"
        if judge is not None and (item.audit is None or item.disagrees):
            item.judge = judge.judge(item.question, item.gold, item.answer or item.completion[-500:])
            if item.judge is not None:
                item.audit, item.method = item.judge, item.method + "+judge"
        items.append(item)
    return items, 0


def _math_verify_contradicts(r: Recheck, gold: Any) -> bool:
    """A disagreement stands only when math-verify's full path does not say otherwise."""
    if "math_verify" in r.method or r.method in ("no_answer", "empty_or_long", "malformed"):
        return False
    g = gold_answer(gold[0] if isinstance(gold, (list, tuple)) else gold)
    verdicts = [_math_verify(c, g) for c in dict.fromkeys(r.answers)] if g else []
    mv = None if not verdicts or None in verdicts else all(verdicts)
    return mv is not None and mv != r.correct


# ---------------------------------------------------------------- totals
@dataclass
class AuditTally:
    """Counts over a stage (or an evaluation): the source of the audit/* metrics."""

    negatives: int = 0
    false_negatives: int = 0
    positives: int = 0
    false_positives: int = 0
    undecided: int = 0
    skipped: int = 0
    seconds: float = 0.0
    disagreements: list[dict] = field(default_factory=list)
    max_examples: int = 200

    def add(self, items: list[AuditItem], skipped: int = 0, seconds: float = 0.0) -> None:
        self.skipped += skipped
        self.seconds += seconds
        for it in items:
            if it.audit is None:
                self.undecided += 1
                continue
            if it.verdict == 0:
                self.negatives += 1
                self.false_negatives += bool(it.audit)
            else:
                self.positives += 1
                self.false_positives += not it.audit
            if it.disagrees and len(self.disagreements) < self.max_examples:
                kind = "false_negative" if it.verdict == 0 else "false_positive"
                self.disagreements.append({"kind": kind, **asdict(it)})

    def summary(self) -> dict[str, float]:
        """``audit/false_{negative,positive}_rate`` with ``_low``/``_high`` (95% Wilson), sizes and
        counts: the same completions give the same numbers (the re-checks' wall time, which does not,
        is ``seconds``, reported beside them)."""
        out: dict[str, float] = {}
        for side, k, n in (("negative", self.false_negatives, self.negatives),
                           ("positive", self.false_positives, self.positives)):
            lo, hi = wilson(k, n)
            out.update({f"audit/false_{side}_rate": k / n if n else 0.0, f"audit/false_{side}_rate_low": lo,
                        f"audit/false_{side}_rate_high": hi, f"audit/{side}s_checked": float(n),
                        f"audit/false_{side}s": float(k)})
        out.update({"audit/undecided": float(self.undecided), "audit/skipped": float(self.skipped)})
        return out
