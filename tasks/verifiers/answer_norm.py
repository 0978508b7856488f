"""Answer normalisation without math-verify: plain numbers (exact) and text answers."""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["TEXT_UNITS_RE", "is_text_answer", "norm_text", "numbers_equal", "parse_number"]

# ---------------------------------------------------------------- fast numeric path
_NUM_RE = re.compile(r"^([-+]?)(\d{1,3}(?:,\d{3})+|\d+)?(?:\.(\d+))?$")
_FRAC_RE = re.compile(r"^([-+]?)\\[dt]?frac\s*\{\s*([-+]?\d+)\s*\}\s*\{\s*([-+]?\d+)\s*\}$")
_SLASH_RE = re.compile(r"^([-+]?\d+)\s*/\s*([-+]?\d+)$")
_CURRENCY_RE = re.compile(r"^(?:\\\$|\$|\\\\\$)\s*")
TEXT_UNITS_RE = re.compile(r"\s*(?:\\(?:text|mbox|mathrm)\{\s*[A-Za-z .]*\}|[A-Za-z]+)$")


def parse_number(s: str) -> tuple[Fraction, bool] | None:
    """``(value, is_decimal)`` for a plain number string, else ``None`` (no math-verify needed)."""
    s = s.strip()
    if not s or len(s) > 60:
        return None
    s = _CURRENCY_RE.sub("", s)
    s = s.replace("{,}", ",").replace("\\!", "").replace("\\,", "").replace(" ", "") if "\\" in s or "{" in s else s
    m = _NUM_RE.match(s)
    if m and (m.group(2) or m.group(3)):
        sign, whole, dec = m.groups()
        whole = (whole or "0").replace(",", "")
        if dec:
            value = Fraction(int(whole + dec), 10 ** len(dec))
        else:
            value = Fraction(int(whole))
        return (-value if sign == "-" else value), bool(dec)
    m = _FRAC_RE.match(s) or None
    if m:
        sign, a, b = m.groups()
        if int(b) == 0:
            return None
        value = Fraction(int(a), int(b))
        return (-value if sign == "-" else value), False
    m = _SLASH_RE.match(s)
    if m and int(m.group(2)) != 0:
        return Fraction(int(m.group(1)), int(m.group(2))), False
    return None


def numbers_equal(a: tuple[Fraction, bool], b: tuple[Fraction, bool]) -> bool:
    (x, xdec), (y, ydec) = a, b
    if x == y:
        return True
    if xdec != ydec:  # a decimal approximating a fraction, e.g. 0.333333 vs 1/3
        return abs(x - y) <= Fraction(1, 10**6) * max(1, abs(y))
    return False


# ---------------------------------------------------------------- text answers
_TEXT_GOLD_RE = re.compile(r"^\(?[A-Za-z][A-Za-z .,'()\-]*$")
_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|mathbf|textit)\s*\{([^{}]*)\}")


def _strip_text_cmds(s: str) -> str:
    prev = None
    while prev != s:
        prev, s = s, _TEXT_CMD_RE.sub(r"\1", s)
    return s


def norm_text(s: str) -> str:
    s = _strip_text_cmds(s).lower()
    s = re.sub(r"[^a-z0-9 ]+", " ", s)
    s = re.sub(r"^(?:the|a|an) ", "", s.strip())
    return " ".join(s.split())


def is_text_answer(gold: str) -> bool:
    """Whether a gold answer is text (``Paris``, ``\\text{yes}``, a choice letter ``B`` / ``(C)`` / ``\\text{(C)}``).

    A single lowercase letter (``x``) is left to the math path, where it is a variable."""
    g = _strip_text_cmds(gold).strip()
    if not _TEXT_GOLD_RE.match(g):
        return False
    letters = g.replace("(", "").replace(")", "").strip()
    return len(letters) > 1 or g != gold or letters.isupper()
