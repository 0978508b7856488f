"""How tools and tool calls look to the embedded model, and how its replies are parsed back.

    <|im_start|>system
    Tools: price(item) stock(item)<|im_end|>
    <|im_start|>user
    Shop 12: cost of 3 "fig"?<|im_end|>
    <|im_start|>assistant
    <tool_call>{"name": "price", "arguments": {"item": "fig"}}</tool_call><|im_end|>
    <|im_start|>tool
    4<|im_end|>
    <|im_start|>assistant
    <think>
    3*4=12
    </think>
    <answer>12</answer><|im_end|>

`TOOL_CHAT_TEMPLATE` (in tasks.modeling, beside the embedded tokenizer it belongs to) renders
exactly ChatML (`CHAT_TEMPLATE`) when no tools and no tool calls are present, so it can serve
every family; the tool list is one short line (name and
argument names) because every prompt character is a token for the tiny model. It is
prefix-preserving, which TRL's multi-turn loop needs (`is_chat_template_prefix_preserving`).

`enable_tool_calls(tok)` sets, on the embedded tokenizer, the template and TRL's
`response_template` (the parser TRL and our evaluation loop both use: `<tool_call>` JSON
blocks, Qwen3's layout without `<think>` as a separate field, so completions keep their
reasoning text), and on any tokenizer a lenient wrapper: a `<tool_call>` block that is not a
JSON object becomes a call whose arguments are `{UNPARSED: text}`, which the environment answers
with an error the model sees, instead of TRL's fallback (the whole reply as plain text, the call
silently dropped).
"""

from __future__ import annotations

import json
import re
from typing import Any

from tasks.environments._base import UNPARSED
from tasks.modeling import CHAT_TEMPLATE, TOOL_CHAT_TEMPLATE

RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "tool_calls": {"open": "<tool_call>", "close_pattern": r"</tool_call>\s*", "repeats": True,
                       "content": "json", "transform": {"type": "function", "function": "{content}"}},
        "content": {"close_pattern": r"<\|im_end\|>\s*", "content": "text"},
    },
}

_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)
_NAME = re.compile(r'"name"\s*:\s*"([^"]{1,64})"')


def lenient_calls(text: str) -> tuple[str, list[dict]]:
    """(content before the first call, the calls) of a reply whose `<tool_call>` blocks the
    strict parser refused: a block that is a JSON object with a string `name` and an object
    `arguments` is kept as is; any other block becomes a call to the name it seems to give
    (`"?"` if none) with arguments `{UNPARSED: block}`."""
    content = text.split("<tool_call>", 1)[0].strip()
    calls = []
    for block in _BLOCK.findall(text):
        try:
            call = json.loads(block)
            ok = isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("arguments"), dict)
        except ValueError:
            ok = False
        if not ok:
            name = _NAME.search(block)
            call = {"name": name.group(1) if name else "?", "arguments": {UNPARSED: block.strip()[:200]}}
        calls.append({"type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}})
    return content, calls


def enable_tool_calls(tok):
    """Make `tok` render tools and parse tool calls (see the module doc); returns `tok`. The
    embedded tokenizer gets `TOOL_CHAT_TEMPLATE`; a pretrained model's tokenizer keeps its own
    template, with the response parser TRL knows for it (`add_response_schema`, which refuses
    a template it does not know)."""
    if tok.chat_template in (CHAT_TEMPLATE, TOOL_CHAT_TEMPLATE):
        tok.chat_template = TOOL_CHAT_TEMPLATE
        tok.response_template = RESPONSE_TEMPLATE
    elif getattr(tok, "response_template", None) is None:
        from trl.chat_template_utils import add_response_schema

        add_response_schema(tok)
    strict = tok.parse_response

    def parse_response(response, schema=None, **kwargs) -> Any:
        try:
            return strict(response, schema, **kwargs)
        except (ValueError, TypeError, KeyError):
            text = response if isinstance(response, str) else tok.decode(response, skip_special_tokens=False)
            text = text.split(tok.eos_token)[0]
            content, calls = lenient_calls(text)
            if not calls:
                raise
            return {"role": "assistant", "content": content, "tool_calls": calls}

    tok.parse_response = parse_response
    return tok


def tool_line(names_args: list[tuple[str, list[str]]]) -> str:
    """The tools line as the template writes it (for the tokenizer's training corpus)."""
    return "Tools:" + "".join(f" {name}({', '.join(args)})" for name, args in names_args)


def call_text(name: str, arguments: dict) -> str:
    """One tool call as the template writes it."""
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"
