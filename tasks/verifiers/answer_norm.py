"""Answer normalisation without math-verify: plain numbers (exact) and text answers."""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["UNITS", "is_text_answer", "norm_text", "numbers_equal", "parse_number", "split_unit"]

# ---------------------------------------------------------------- fast numeric path
_NUM_RE = re.compile(r"^([-+]?)(\d{1,3}(?:,\d{3})+|\d+)?(?:\.(\d+))?$")
_FRAC_RE = re.compile(r"^([-+]?)\\[dt]?frac\s*\{\s*([-+]?\d+)\s*\}\s*\{\s*([-+]?\d+)\s*\}$")
_SLASH_RE = re.compile(r"^([-+]?\d+)\s*/\s*([-+]?\d+)$")
_CURRENCY_RE = re.compile(r"^(?:\\\$|\$|\\\\\$)\s*")
_UNIT_TAIL_RE = re.compile(r"^(.*?\d\.?)\s*(?:\\(?:text|mbox|mathrm)\s*\{\s*([A-Za-z .]*?)\s*\}|([A-Za-z]+))\s*\.?$")
# units an answer may carry after its number: whole words anywhere, and single letters
# (m, s, g, ...) only inside \text{} where they cannot be a variable (5x, 5e, 5 million are wrong)
UNITS = frozenset("""
dollar dollars cent cents euro euros pound pounds yen yuan rupee rupees usd
meter meters metre metres cm mm km kilometer kilometers kilometre kilometres inch inches foot feet ft
yard yards yd mile miles mph kph
gram grams kg kilogram kilograms lb lbs ounce ounces oz ton tons tonne tonnes
liter liters litre litres ml milliliter milliliters gallon gallons cup cups
second seconds sec secs minute minutes min mins hour hours hr hrs day days week weeks month months
year years degree degrees percent unit units square sq cubic per
""".split())
_TEXT_ONLY_UNITS = frozenset({"m", "g", "s", "h", "l", "L"})


def split_unit(s: str) -> tuple[str, bool] | None:
    """``(number part, unit allowed)`` when ``s`` is a number followed by a word or ``\\text{}``
    (``18 dollars``, ``5 \\text{ cm}``, ``5x``), else None. Only ``UNITS`` are allowed."""
    if len(s) > 100:  # a number and a unit are short; the regex must not see a long text
        return None
    m = _UNIT_TAIL_RE.match(s.strip())
    if not m:
        return None
    number, text, word = m.groups()
    words = (text if text is not None else word).split()
    allowed = bool(words) and all(w.lower() in UNITS or (text is not None and w in _TEXT_ONLY_UNITS)
                                  for w in words)
    return number, allowed


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


def _terminates(x: Fraction) -> bool:
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def numbers_equal(a: tuple[Fraction, bool], b: tuple[Fraction, bool]) -> bool:
    """Exact equality, except a decimal against a fraction whose decimal expansion does not
    terminate (``0.333333`` for ``1/3``, either side), which may differ by 1e-6 relative: an
    integer or terminating gold is never matched by a rounded decimal (``123456700.0`` is not
    ``123456789``)."""
    (x, xdec), (y, ydec) = a, b
    if x == y:
        return True
    exact = y if xdec and not ydec else x if ydec and not xdec else None
    if exact is None or _terminates(exact):
        return False
    return abs(x - y) <= Fraction(1, 10**6) * max(1, abs(y))


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
    if g != gold:
        return True
    # a word, or a choice letter; "a-b" / "x, y" (single letters with operators) are math
    return bool(re.search(r"[A-Za-z]{2}", letters)) or (len(letters) == 1 and letters.isupper())
