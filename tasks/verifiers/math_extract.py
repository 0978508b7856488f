"""Final-answer extraction for the math verifiers (rules: ``tasks.verifiers.math``'s docstring),
and how much derivation a completion wrote that it did not copy from the prompt.

Every scan here is linear in the text (brace matching is one pass), whatever the completion."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from tasks.verifiers._base import prompt_text

__all__ = ["UNBALANCED", "answer_region", "spans", "clean_answer", "derivation_chars", "extract_answers", "extract_final_answer",
           "extract_gold"]

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_SPACE_RE = re.compile(r"\\boxed +([^\s$]+)")
_BRACE_RE = re.compile(r"[{}]")
UNBALANCED = "\\boxed{"  # what an unclosed box stands for: never equal to a gold answer
_HASH_RE = re.compile(r"^[ \t]*####[ \t]*(.*?)[ \t]*$", re.MULTILINE)


def spans(text: str, open_: str, close: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each non-overlapping ``open_ ... close`` span, left to right, in one
    linear pass (a lazy regex rescans to the end for every unclosed opener: quadratic)."""
    out: list[tuple[int, int]] = []
    i = 0
    while (a := text.find(open_, i)) >= 0:
        b = text.find(close, a + len(open_))
        if b < 0:
            break
        i = b + len(close)
        out.append((a, i))
    return out


def _boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` / ``\\fbox{...}`` (brace-matched) and ``\\boxed x``.

    One linear pass matches all braces (thousands of unbalanced ``\\boxed{`` cannot make it
    quadratic); an unbalanced box is an unparseable answer (``UNBALANCED``), so it cannot be
    ignored, and it scores 0."""
    first = _BOX_RE.search(text)
    if first is None:
        return [m.group(1) for m in _BOX_SPACE_RE.finditer(text)]
    close: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_RE.finditer(text, first.start()):  # braces before the first box cannot close one
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            close[stack.pop()] = m.start()
    out: list[str] = []
    for m in _BOX_RE.finditer(text):
        end = close.get(m.end() - 1)
        out.append(text[m.end():end] if end is not None else UNBALANCED)
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
    open_, close = f"<{answer_tag}>", f"</{answer_tag}>"
    blocks = [region[a + len(open_):b - len(close)] for a, b in spans(region, open_, close)]
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
    return [clean_answer(c) for c in cands]


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
    gold = clean_answer(gold)
    return gold or None


_WRAPPERS = re.compile(r"^\\\(|\\\)$|^\\\[|\\\]$")


def clean_answer(s: str) -> str:
    s = s.strip()
    s = _WRAPPERS.sub("", s).strip()
    while len(s) >= 2 and s[0] == "$" and s[-1] == "$" and not s.startswith("\\$"):
        s = s[1:-1].strip()
    s = s.rstrip(".").strip()
    return s


COPY_SPAN = 16  # non-space characters: a run this long that is also in the prompt counts as copied


def derivation_chars(text: str, prompt: Any = None, *, think_tag: str = "think") -> int:
    """Non-space characters of reasoning before the final answer that are not copied from the
    prompt: every character covered by a ``COPY_SPAN``-long run that also appears in the prompt
    is left out, wherever the copy sits (an echoed prompt with a few words added counts only
    those words)."""
    close = f"</{think_tag}>"
    if close in text:
        reasoning = text[: text.rfind(close)].replace(f"<{think_tag}>", "")
    else:
        cut = [i for i in (text.find("<answer>"), text.find("\\boxed"), text.find("####")) if i >= 0]
        reasoning = text[: min(cut)] if cut else text
    compact = "".join(reasoning.split())
    source = "".join(prompt_text(prompt).split()) if prompt is not None else ""
    if len(compact) < COPY_SPAN or len(source) < COPY_SPAN:
        return 0 if compact and compact in source else len(compact)
    spans = {source[i:i + COPY_SPAN] for i in range(len(source) - COPY_SPAN + 1)}
    copied = bytearray(len(compact))
    for i in range(len(compact) - COPY_SPAN + 1):
        if compact[i:i + COPY_SPAN] in spans:
            copied[i:i + COPY_SPAN] = b"\x01" * COPY_SPAN
    return len(compact) - sum(copied)
