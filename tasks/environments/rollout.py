"""Multi-turn rollouts outside the trainer: cold-start traces and evaluation.

    messages = trace_messages(row, env, final)     # SFT: the row's calls replayed through env
    episodes = run_episodes(model, tok, prompts, envs, max_new_tokens=64, temperature=1.0)

`run_episodes` is TRL 1.16's `GRPOTrainer._tool_call_loop` for evaluation, step for step: the
prompt is rendered with the environment's tools, each reply is parsed by the tokenizer's
response parser (`trl.chat_template_utils.parse_response`, the one TRL calls), every call goes
to the same environment method (an unknown name gets TRL's `Tool <name> not found.` error), the
result is appended as a `tool` message whose tokens come from the chat template (TRL's
`_get_tool_suffix_ids`), and generation goes on from the raw ids, so the model is scored on
exactly the rollouts it is trained on. Budget: `max_new_tokens` generated tokens over all turns
(TRL's `max_completion_length`), at most `max_turns` tool rounds, and the environment's own
per-rollout caps on calls and seconds.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field

from tasks.environments._base import Environment


def tools_of(env: Environment) -> list:
    """The environment's tools as bound methods (what TRL lists: public functions of the class)."""
    return [getattr(env, n) for n, _ in inspect.getmembers(type(env), inspect.isfunction)
            if not n.startswith("_") and n not in ("reset", "get_reward")]


def call_tool(env: Environment, call: dict) -> tuple[str, object]:
    """(name, result) of one parsed call, as TRL's loop computes it (errors as results)."""
    fn = call.get("function") or {}
    name = fn.get("name", "unknown")
    tools = {t.__name__: t for t in tools_of(env)}
    if call.get("type") != "function":
        return name, {"error": f"Unsupported tool call type: {call.get('type')}"}
    try:
        if name not in tools:
            raise ValueError(f"Tool {name} not found.")
        return name, tools[name](**fn.get("arguments", {}))
    except Exception as exc:  # noqa: BLE001 - TRL's loop turns any failure into the result too
        return name, {"error": str(exc)}


def trace_messages(row: dict, env: Environment, final: str) -> list[dict]:
    """The completion of a cold-start trace: one assistant turn with the row's `calls`, their
    results from `env` (reset from the row), then the `final` answer turn."""
    calls = [{"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
             for c in row.get("calls") or []]
    if not calls:
        return [{"role": "assistant", "content": final}]
    results = [call_tool(env, c) for c in calls]
    return [{"role": "assistant", "content": "", "tool_calls": calls},
            *({"role": "tool", "name": n, "content": str(r)} for n, r in results),
            {"role": "assistant", "content": final}]


def tool_suffix_ids(tok, tool_messages: list[dict]) -> list[int]:
    """Token ids that close an assistant tool-call turn and present `tool_messages`, up to the
    next assistant header (TRL's `_get_tool_suffix_ids`)."""
    calls = [{"type": "function", "function": {"name": tool_messages[0]["name"], "arguments": {}}}]
    dummy = [{"role": "user", "content": "dummy"}, {"role": "assistant", "content": "", "tool_calls": calls}]
    prefix = tok.apply_chat_template(dummy, tokenize=True, return_dict=False)
    full = tok.apply_chat_template(dummy + tool_messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    eos = [i for i, t in enumerate(prefix) if t == tok.eos_token_id]
    prefix = prefix[: eos[-1] + 1] if eos else prefix
    return full[len(prefix):]


@dataclass
class Episode:
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    done: bool = False


def _generate(model, tok, batch: list[list[int]], max_new: list[int], temperature: float) -> list[list[int]]:
    import torch

    width = max(map(len, batch))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(b)) + b for b in batch])
    mask = torch.tensor([[0] * (width - len(b)) + [1] * len(b) for b in batch])
    sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0} if temperature > 0 else {"do_sample": False}
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                             max_new_tokens=max(max_new), eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id, **sampling)
    new = []
    for row, budget in zip(out[:, width:].tolist(), max_new):
        row = row[:budget]
        if tok.eos_token_id in row:
            row = row[: row.index(tok.eos_token_id) + 1]
        new.append(row)
    return new


def run_episodes(model, tok, prompts: list[list[dict]], envs: list[Environment], max_new_tokens: int,
                 temperature: float, max_turns: int = 4) -> list[Episode]:
    """One multi-turn rollout per prompt, each with its own (already reset) environment."""
    from trl.chat_template_utils import parse_response

    eps = []
    for prompt, env in zip(prompts, envs):
        ids = tok.apply_chat_template(prompt, tools=tools_of(env), add_generation_prompt=True, tokenize=True,
                                      return_dict=True)["input_ids"]
        eps.append(Episode(prompt_ids=list(ids)))
    for turn in range(max_turns + 1):
        live = [e for e in eps if not e.done and len(e.completion_ids) < max_new_tokens]
        if not live:
            break
        replies = _generate(model, tok, [e.prompt_ids + e.completion_ids for e in live],
                            [max_new_tokens - len(e.completion_ids) for e in live], temperature)
        for e, reply in zip(live, replies):
            env = envs[eps.index(e)]
            message = parse_response(tok, reply, prefix=e.prompt_ids + e.completion_ids, tools=tools_of(env))
            e.completion_ids += reply
            e.messages.append(message)
            calls = message.get("tool_calls")
            if not calls or turn == max_turns:
                e.done = True
                continue
            results = [{"role": "tool", "name": n, "content": r if isinstance(r, list) else str(r)}
                       for n, r in (call_tool(env, c) for c in calls)]
            suffix = tool_suffix_ids(tok, results)
            if len(e.completion_ids) + len(suffix) > max_new_tokens:  # TRL drops an overlong tool result
                e.done = True
                continue
            e.completion_ids += suffix
            e.messages += results
    return eps


def tool_schemas(env: Environment) -> list[dict]:
    """The JSON schemas of the environment's tools (what the chat template renders)."""
    from transformers.utils import get_json_schema

    return [get_json_schema(t) for t in tools_of(env)]


def cold_start_example(fields: dict, env: Environment, final: str) -> tuple[list[dict], list[dict]]:
    """(completion messages, tool schemas) of one cold-start row: `fields` are the row's reward
    columns (`tasks.verifiers.rows.row_fields`), `final` its formatted answer turn."""
    env.reset(**fields)
    calls = fields.get("calls")
    calls = json.loads(calls) if isinstance(calls, str) else calls
    return trace_messages({"calls": calls}, env, final), tool_schemas(env)


def corpus_text(fields: dict, env: Environment) -> str:
    """The tool-call text of a row for the tokenizer's training corpus (its calls, its tools)."""
    from tasks.environments.chat import call_text, tool_line

    calls = fields.get("calls")
    calls = json.loads(calls) if isinstance(calls, str) else calls or []
    schemas = tool_schemas(env)
    line = tool_line([(s["function"]["name"], list(s["function"]["parameters"]["properties"])) for s in schemas])
    return "\n".join([line, *(call_text(c["name"], c["arguments"]) for c in calls)])
