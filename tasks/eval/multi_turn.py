"""Held-out evaluation of a tool-use family: the multi-turn loop GRPO trains with, same tools.

    metrics, samples = evaluate_in_environment(model_dir, rows, spec, cfg, bench, system_prompt)

Each held-out row is answered `samples` times; every answer is a rollout in a fresh
environment reset from the row (tasks.environments.rollout.run_episodes: TRL's loop), scored by
the recipe's verifier with that environment (`environments=`), as in training. Metrics, under
the benchmark's name (`heldout/...`):

- `pass_at_1` and `<family>/pass_at_1`: the mean score, as for a single-turn benchmark;
- `tool_calls_mean`: tool calls per rollout; `called_rate`: the share of rollouts with a call;
- `with_call/pass_at_1`, `without_call/pass_at_1`: the accuracy of the rollouts that called a
  tool and of those that did not (NaN when there are none);
- `tool_errors_mean`: calls per rollout the environment answered with an error; `docs`.

The first `traces` rollouts become MLflow traces with one span per tool call (tasks.lineage).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tasks.data.sources import prompt_messages
from tasks.environments import environment_factory
from tasks.environments.chat import enable_tool_calls
from tasks.environments.rollout import run_episodes
from tasks.verifiers import build_reward, completion_text
from tasks.verifiers.rows import reward_columns, row_fields

#: rollout traces an evaluation logs (a GRPO stage logs at most 200; an evaluation is one step)
EVAL_TRACES = 16


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def evaluate_in_environment(model_path: str | Path, rows: list[dict], spec: dict, samples: int, temperature: float,
                            max_new_tokens: int, batch_size: int, system_prompt: str | None,
                            prefix: str = "heldout") -> tuple[dict[str, float], list[dict]]:
    """(metrics, one sample row per rollout) of `rows` answered in `spec`'s environment
    (`{"name", "params", "verifier"}`)."""
    from tasks.modeling import load_model

    model, tok = load_model(model_path)
    model.eval()
    enable_tool_calls(tok)
    factory = environment_factory(spec["name"], spec.get("params"))
    verifier = build_reward(spec["verifier"])
    jobs = [(row, k) for row in rows for k in range(samples)]
    out = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        envs = [factory() for _ in chunk]
        for env, (row, _) in zip(envs, chunk):
            env.reset(**row_fields(row))
        prompts = [prompt_messages(row, system_prompt) for row, _ in chunk]
        episodes = run_episodes(model, tok, prompts, envs, max_new_tokens, temperature,
                                max_turns=int(envs[0].params["max_calls"]))
        columns = reward_columns([row for row, _ in chunk])
        scores = verifier(prompts=prompts, completions=[e.messages for e in episodes], environments=envs, **columns)
        for (row, k), env, ep, score, prompt in zip(chunk, envs, episodes, scores, prompts):
            out.append({"benchmark": prefix, "doc_id": row.get("id"), "sample": k, "family": row.get("family"),
                        "prompt": prompt[-1]["content"], "target": str(row.get("answer")),
                        "completion": completion_text(ep.messages), "messages": json.dumps(ep.messages, default=str),
                        "pass_at_1": float(score or 0.0), "tool_calls": env.calls,
                        "tool_errors": sum(c["error"] is not None for c in env.calls)})
    return environment_metrics(out, prefix), out


def environment_metrics(samples: list[dict], prefix: str) -> dict[str, float]:
    called = [s for s in samples if s["tool_calls"]]
    uncalled = [s for s in samples if not s["tool_calls"]]
    metrics = {f"{prefix}/pass_at_1": _mean([s["pass_at_1"] for s in samples]),
               f"{prefix}/docs": float(len({s["doc_id"] for s in samples})),
               f"{prefix}/tool_calls_mean": _mean([len(s["tool_calls"]) for s in samples]),
               f"{prefix}/tool_errors_mean": _mean([s["tool_errors"] for s in samples]),
               f"{prefix}/called_rate": len(called) / max(len(samples), 1),
               f"{prefix}/with_call/pass_at_1": _mean([s["pass_at_1"] for s in called]),
               f"{prefix}/without_call/pass_at_1": _mean([s["pass_at_1"] for s in uncalled])}
    for family in sorted({str(s["family"]) for s in samples if s["family"]}):
        metrics[f"{prefix}/{family}/pass_at_1"] = _mean([s["pass_at_1"] for s in samples if s["family"] == family])
    return metrics


def trace_samples(samples: list[dict]) -> list[dict]:
    """The first `EVAL_TRACES` rollouts in the shape `tasks.lineage.log_rollouts` takes."""
    return [{"prompt": s["prompt"], "completion": s["messages"], "reward/pass_at_1": s["pass_at_1"],
             "tool_calls": s["tool_calls"]} for s in samples[:EVAL_TRACES]]
