"""Language consistency (DeepSeek-R1): the share of the reasoning written in the target language.

Words are classified by Unicode script, with no model or download: Latin letters count as
``en`` (and any other Latin-script language code), Han characters as ``zh`` (each character
is one word, since Chinese has no spaces), kana as ``ja`` (Han characters also count for
``ja``), Hangul as ``ko``, Cyrillic as ``ru``/``uk``/``bg``, Arabic as ``ar``/``fa``/``ur``,
Greek as ``el``, Hebrew as ``he``, Devanagari as ``hi``/``mr``/``ne``, Thai as ``th``.
Numbers, code blocks, LaTeX commands, single-letter variables and punctuation are not words
and are ignored; words inside math (``$\\text{...}$`` or any run of three or more letters) count. Script-level
detection cannot tell English from French; it catches the mixing R1 reports (e.g. Chinese
drifting into English reasoning).
"""

from __future__ import annotations

import re
import unicodedata

from tasks.verifiers._base import Reward, column
from tasks.verifiers.math_extract import spans

__all__ = ["LanguageConsistencyReward", "language_share", "script_of"]

_LATIN = {"en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "fi", "pl", "cs", "tr", "id", "vi", "ro", "hu"}
_SCRIPT_LANGS = {
    "LATIN": _LATIN, "CJK": {"zh", "ja"}, "HIRAGANA": {"ja"}, "KATAKANA": {"ja"}, "HANGUL": {"ko"},
    "CYRILLIC": {"ru", "uk", "bg", "sr", "kk"}, "ARABIC": {"ar", "fa", "ur"}, "GREEK": {"el"},
    "HEBREW": {"he"}, "DEVANAGARI": {"hi", "mr", "ne"}, "THAI": {"th"},
}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_CODE_BLOCK = re.compile(r"```.*?```", re.DOTALL)
_DOLLARS = re.compile(r"\$[^$]*\$")
_COMMAND = re.compile(r"\\[A-Za-z]+")


def _math_words(span: str) -> str:
    """The words of a math span: LaTeX commands dropped, ``\\text{}`` contents and any run of 3+
    letters kept (reasoning written inside ``$...$`` is still reasoning), single variables not."""
    words = _WORD.findall(_COMMAND.sub(" ", span))
    return " " + " ".join(w for w in words if len(w) >= 3 or not w.isascii()) + " "


def script_of(ch: str) -> str | None:
    """The script bucket of one letter (``LATIN``, ``CJK``, ...), ``None`` if unknown."""
    if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff":
        return "CJK"
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    head = name.split(" ", 1)[0]
    if head == "CJK":
        return "CJK"
    return head if head in _SCRIPT_LANGS else None


def _words(text: str) -> list[str]:
    """Script of every word; CJK/kana characters count one word each."""
    out: list[str] = []
    for tok in _WORD.findall(text):
        run = None
        for ch in tok:
            s = script_of(ch)
            if s in ("CJK", "HIRAGANA", "KATAKANA"):
                out.append(s)
                run = None
            elif s != run:
                if s is not None:
                    out.append(s)
                run = s
    return out


def language_share(text: str, language: str) -> float | None:
    """Share of words in ``text`` written in ``language``'s script; ``None`` when there are none."""
    text = _CODE_BLOCK.sub(" ", unicodedata.normalize("NFKC", text))  # fullwidth / math-bold letters are letters
    for open_, close in (("\\(", "\\)"), ("\\[", "\\]")):  # linear scans, not lazy regexes
        parts, last = [], 0
        for a, b in spans(text, open_, close):
            parts += [text[last:a], _math_words(text[a:b])]
            last = b
        text = "".join(parts) + text[last:]
    text = _COMMAND.sub(" ", _DOLLARS.sub(lambda m: _math_words(m.group()), text))
    words = _words(text)
    if not words:
        return None
    lang = language.lower().split("-")[0].split("_")[0]
    hits = sum(1 for s in words if lang in _SCRIPT_LANGS.get(s, ()))
    return hits / len(words)


def _reasoning(text: str, tag: str) -> str:
    open_, close = f"<{tag}>", f"</{tag}>"
    if close in text:
        return text[: text.rfind(close)].replace(open_, "")
    if open_ in text:
        return text.split(open_, 1)[1]
    return text


class LanguageConsistencyReward(Reward):
    """DeepSeek-R1 language consistency: share of reasoning words in the target language.

    Scoring rule: (words in the target language's script) / (all words) within the reasoning
    (``<think>`` block, or the text before ``</think>``; the whole completion with
    ``scope="all"``), ignoring numbers, LaTeX commands, single-letter variables, code blocks and
    punctuation (words inside ``$...$`` count); ``None`` when that
    text has no words (pure arithmetic). The language is the row's ``language_column`` value
    when present, else ``language``. Params: ``language`` ("en"), ``language_column``
    ("language"), ``scope`` ("reasoning" | "all"), ``think_tag``.
    """

    name = "language_consistency_reward"
    PARAMS = {"language": "en", "language_column": "language", "scope": "reasoning", "think_tag": "think"}

    def _validate(self) -> None:
        known = set().union(*_SCRIPT_LANGS.values())
        if self.params["language"].lower().split("-")[0] not in known:
            self._fail(f"unknown language {self.params['language']!r}; known: {', '.join(sorted(known))}")
        if self.params["scope"] not in ("reasoning", "all"):
            self._fail("scope must be 'reasoning' or 'all'")

    def score_batch(self, texts, prompts, kwargs):
        p = self.params
        langs = column(kwargs, p["language_column"], len(texts))
        out: list[float | None] = []
        for text, lang in zip(texts, langs):
            part = text if p["scope"] == "all" else _reasoning(text, p["think_tag"])
            out.append(language_share(part, lang if isinstance(lang, str) and lang else p["language"]))
        return out
