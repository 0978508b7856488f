"""Format rewards: the think/answer layout and tag counts (configurable tags, prefilled ``<think>``).

A chat template that already writes ``<think>`` into the prompt (DeepSeek-R1 distills, Qwen3)
makes the completion start inside the reasoning; with ``prefilled_think=True`` both rewards
accept a completion that lacks the opening tag (the classic "format reward stuck at 0" bug).
"""

from __future__ import annotations

import re

from tasks.verifiers._base import Reward

__all__ = ["FormatReward", "TagCountReward", "format_ok"]

_TAG_NAME = re.compile(r"[A-Za-z_][\w\-]*")


def _check_tag(reward: Reward, key: str, allow_empty: bool = False) -> None:
    v = reward.params[key]
    if allow_empty and v == "":
        return
    if not _TAG_NAME.fullmatch(v):
        reward._fail(f"{key} must be a bare tag name like 'think', got {v!r}")


def format_ok(text: str, *, think_tag: str = "think", answer_tag: str = "answer", prefilled_think: bool = False) -> bool:
    """Whether ``text`` is exactly: reasoning block, then answer block, each once, nothing after.

    Shape: ``<think>R</think>`` (opening tag optional with ``prefilled_think``) followed by
    ``<answer>A</answer>`` and only whitespace after; R and A non-blank; no other think/answer
    tags anywhere. With ``answer_tag == ""`` the answer is any non-blank text after ``</think>``.
    """
    t_open, t_close = f"<{think_tag}>", f"</{think_tag}>"
    body = text.lstrip()
    if body.startswith(t_open):
        body = body[len(t_open):]
    elif not prefilled_think:
        return False
    if body.count(t_close) != 1 or t_open in body:
        return False
    reasoning, _, rest = body.partition(t_close)
    if not reasoning.strip():
        return False
    rest = rest.strip()
    if not answer_tag:
        return bool(rest)
    a_open, a_close = f"<{answer_tag}>", f"</{answer_tag}>"
    if not (rest.startswith(a_open) and rest.endswith(a_close)):
        return False
    answer = rest[len(a_open):-len(a_close)]
    if a_open in answer or a_close in answer or a_open in reasoning or a_close in reasoning:
        return False
    return bool(answer.strip())


class FormatReward(Reward):
    """Layout check: 1.0 for ``<think>...</think>`` then ``<answer>...</answer>``, else 0.0.

    Scoring rule: 1.0 when the completion is exactly one non-blank reasoning block followed by
    one non-blank answer block with only whitespace after it and no stray think/answer tags;
    0.0 otherwise. Params: ``think_tag`` ("think"), ``answer_tag`` ("answer"; "" = any non-blank
    text after the reasoning), ``prefilled_think`` (False; True also accepts a completion that
    starts inside the reasoning, without the opening tag).
    """

    name = "format_reward"
    PARAMS = {"think_tag": "think", "answer_tag": "answer", "prefilled_think": False}

    def _validate(self) -> None:
        _check_tag(self, "think_tag")
        _check_tag(self, "answer_tag", allow_empty=True)

    def score_batch(self, texts, prompts, kwargs):
        p = self.params
        return [
            1.0 if format_ok(t, think_tag=p["think_tag"], answer_tag=p["answer_tag"], prefilled_think=p["prefilled_think"]) else 0.0
            for t in texts
        ]


class TagCountReward(Reward):
    """Partial credit per tag: each expected tag that appears exactly once earns an equal share.

    Scoring rule: with tags T (default ``["think", "answer"]``) the markers are ``<t>`` and
    ``</t>`` for each t; the reward is (number of markers appearing exactly once) / (number of
    markers), so 0.25 each by default (open-r1's ``tag_count``). With ``prefilled_think`` the
    opening marker of ``think_tag`` counts as present when it appears zero times or once.
    Params: ``tags``, ``think_tag``, ``prefilled_think``.
    """

    name = "tag_count_reward"
    PARAMS = {"tags": ["think", "answer"], "think_tag": "think", "prefilled_think": False}

    def _validate(self) -> None:
        tags = self.params["tags"]
        if not tags or not all(isinstance(t, str) and _TAG_NAME.fullmatch(t) for t in tags):
            self._fail(f"tags must be a non-empty list of bare tag names, got {tags!r}")
        self.params["tags"] = list(tags)
        _check_tag(self, "think_tag")

    def score_batch(self, texts, prompts, kwargs):
        p = self.params
        markers = [m for t in p["tags"] for m in (f"<{t}>", f"</{t}>")]
        prefilled_open = f"<{p['think_tag']}>" if p["prefilled_think"] else None
        out = []
        for text in texts:
            ok = 0
            for m in markers:
                n = text.count(m)
                if n == 1 or (m == prefilled_open and n == 0):
                    ok += 1
            out.append(ok / len(markers))
        return out
