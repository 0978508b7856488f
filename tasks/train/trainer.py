"""TRL's GRPOTrainer plus what the pipeline needs from inside it.

    trainer = PipelineGRPOTrainer(model=path, reward_funcs=rewards, args=config, train_dataset=ds,
                                  dynamic_sampling=DynamicSampling(max_resamples=4))

- Rewards run concurrently: each synchronous verifier runs in a worker thread and TRL gathers
  them with asyncio; each one's seconds per step are logged as `time/reward/<name>`.
- One phase timer (verl's `marked_timer` habit): `generation`, `reward`, `logprobs` (old and
  reference log-probs, no gradient), `scoring` (the rest of building a batch: decoding, gathering,
  advantages), `update` (the loss's forward and backward, and the optimizer step) and `canary`
  are each measured by `PhaseTimer` and logged as `time/<phase>` (seconds per optimizer step),
  with `time/step` (wall), `time/reward_share`, `perf/throughput` (verl's definition: prompt +
  completion tokens per second per device) and `perf/generated_tokens_per_s`.
- DAPO dynamic sampling (TRL 1.16 only logs `frac_reward_zero_std`): groups whose rewards have
  zero variance are replaced by groups from fresh generation rounds, up to `max_resamples`
  rounds per batch; `dynamic_sampling/{dropped_groups,resampled,unfilled_groups}` are logged.
- `greedy_completions` and `completion_samples` serve the monitors (canary, sample tables).

The contract with TRL: the private members of GRPOTrainer this module relies on, and why (each
is exercised by a named test in tests/tasks/train/test_trl_contract.py on the pinned TRL):
- `_generate(prompts)` -> (prompt_ids, completion_ids, ...): timed as `generation`, tokens counted.
- `_calculate_rewards.__wrapped__`: the reward step without TRL's per-call profiling write
  (a synchronous MLflow call that would count as reward time); timed as `reward`.
- `_get_per_token_logps_and_entropies`: called without gradient for old/reference log-probs
  (timed as `logprobs`); with gradient inside the loss (part of `update`).
- `_generate_and_score_completions(inputs)` -> the batch dict: timed as `scoring`, and called
  again for fresh rounds by dynamic sampling, which splices rows of its tensors.
- `_metrics["train"]`: where `add_metric` appends values TRL averages into the next log.
- `_tokenizer.pad_token_id`: padding when splicing fresh rows into a batch.
- `_dist.summon_full_params`: gathers sharded (FSDP) parameters for the canary's greedy generation.
- `_logs` (prompt, completion, rewards, advantages): the latest batch, read by `completion_samples`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer
from trl.trainer.utils import nanstd

from tasks.verifiers import completion_text
from tasks.verifiers._base import prompt_text
from tasks.verifiers.rows import family_means

#: What `time/<phase>` reports, each measured by `PhaseTimer` (seconds per optimizer step).
PHASES = ("generation", "reward", "logprobs", "scoring", "update", "canary")

# Keys of the generated batch that hold one row per completion, by padding side.
_LEFT_PADDED = ("prompt_ids", "prompt_mask")
_RIGHT_PADDED = ("completion_ids", "completion_mask", "old_per_token_logps", "sampling_per_token_logps",
                 "ref_per_token_logps", "importance_sampling_ratio", "tool_mask")


class ConcurrentReward:
    """A synchronous reward run in a worker thread, so TRL awaits all rewards together.

    Per batch it also reports, through `metric(name, value)`, the reward's mean per task family
    (`rewards/<name>/<family>/mean`) and the share of the rows it applies to that it scored
    (`rewards/<name>/scored`; 0 means None for the whole batch, which the monitors flag)."""

    def __init__(self, fn, seconds: Counter, metric=None):
        self.fn, self.seconds, self.metric = fn, seconds, metric
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)  # TRL logs rewards/<name>/mean

    async def __call__(self, **kwargs):
        return await asyncio.to_thread(self._timed, kwargs)

    def _timed(self, kwargs):
        t0 = time.perf_counter()
        try:
            scores = self.fn(**kwargs)
        finally:
            self.seconds[self.__name__] += time.perf_counter() - t0
        if self.metric is not None:
            self._report(scores, kwargs.get("family") or [None] * len(scores))
        return scores

    def _report(self, scores: list, families: list) -> None:
        applies = getattr(self.fn, "applies", lambda family: True)
        mine = [s for s, f in zip(scores, families) if applies(f)]
        if mine:
            self.metric(f"rewards/{self.__name__}/scored", sum(s is not None for s in mine) / len(mine))
        for family, value in family_means(scores, families).items():
            self.metric(f"rewards/{self.__name__}/{family}/mean", value)


def zero_variance_groups(rewards_per_func: torch.Tensor, weights: torch.Tensor, group: int) -> torch.Tensor:
    """One bool per group of `group` completions: its weighted rewards are all equal (TRL's
    `frac_reward_zero_std` rule), so every advantage in it is zero."""
    unscorable = torch.isnan(rewards_per_func).all(dim=1)
    rewards = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    rewards[unscorable] = torch.nan
    std = torch.nan_to_num(nanstd(rewards.view(-1, group), dim=1), nan=0.0)
    return torch.isclose(std, torch.zeros_like(std))


def local_rows_of_groups(groups: torch.Tensor, group: int, rank: int, local_size: int) -> list[int]:
    """Indices, in this process's slice of the global batch, of the completions of `groups`
    (a bool per global group). A group may straddle processes; each takes its own part."""
    start = rank * local_size
    return [i for i in range(local_size) if groups[(start + i) // group]]


def _pad_to(t: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
    if t.dim() < 2 or t.size(1) >= width:
        return t
    pad = t.new_full((t.size(0), width - t.size(1)), value)
    return torch.cat([pad, t] if left else [t, pad], dim=1)


def splice_rows(batch: dict[str, Any], fresh: dict[str, Any], rows: list[int], pad_token_id: int) -> dict[str, Any]:
    """`batch` with the completions at `rows` replaced by the same rows of `fresh` (both are
    outputs of `_generate_and_score_completions`; widths are re-padded to match)."""
    if not rows:
        return batch
    out = dict(batch)
    idx = torch.tensor(rows, device=batch["advantages"].device)
    for key in ("advantages", *_LEFT_PADDED, *_RIGHT_PADDED):
        if key not in batch:
            continue
        a, b = batch[key], fresh[key]
        if a.dim() >= 2:
            left, value = key in _LEFT_PADDED, (pad_token_id if key.endswith("_ids") else 0)
            width = max(a.size(1), b.size(1))
            a, b = _pad_to(a, width, value, left), _pad_to(b, width, value, left)
        a = a.clone()
        a[idx] = b[idx]
        out[key] = a
    return out


class PhaseTimer:
    """Seconds per named phase since the last `take()`: `with timer("generation"): ...`.

    Phases nest; each counts only its own time (a nested phase's seconds are taken out of the
    phase around it), so `update` around a training step that also generates counts the update alone."""

    def __init__(self):
        self.seconds: Counter = Counter()
        self._inner: list[float] = []  # per open phase: seconds spent in phases nested in it

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            total, inner = time.perf_counter() - t0, self._inner.pop()
            self.seconds[name] += total - inner
            if self._inner:
                self._inner[-1] += total

    def take(self) -> Counter:
        seconds, self.seconds = self.seconds, Counter()
        return seconds


class _OptimizerStepClock(TrainerCallback):
    """The optimizer step (outside `training_step`) is part of the `update` phase."""

    def __init__(self, timer: PhaseTimer):
        self.timer, self._open = timer, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._open = self.timer("update")
        self._open.__enter__()

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self._open is not None:
            self._open.__exit__(None, None, None)
            self._open = None


class PipelineGRPOTrainer(GRPOTrainer):
    def __init__(self, *args, dynamic_sampling=None, **kwargs):
        self.reward_seconds: Counter = Counter()
        kwargs["reward_funcs"] = [ConcurrentReward(f, self.reward_seconds, self.add_metric)
                                  for f in kwargs["reward_funcs"]]
        super().__init__(*args, **kwargs)
        if dynamic_sampling is not None and (self.tools or self.rollout_func is not None):
            raise ValueError("dynamic_sampling works with plain generation only (no tools or rollout_func)")
        self.dynamic_sampling = dynamic_sampling
        self.timer = PhaseTimer()
        self.add_callback(_OptimizerStepClock(self.timer))
        self._tokens = Counter()  # prompt and completion tokens since the last log
        self._last_log: tuple[float, int] | None = None  # (time, global step); set at the first generation
        self._last_rewards: torch.Tensor | None = None
        self.metric_sources: list = []  # step -> dict merged into each training log (e.g. the verifier audit)

    # ---------------------------------------------------------------- phases and throughput
    def _start_clock(self) -> None:
        if self._last_log is None:  # the first interval starts with the first generation or canary
            self._last_log = (time.perf_counter(), self.state.global_step)

    def training_step(self, model, inputs, num_items_in_batch=None):
        self._start_clock()
        with self.timer("update"):  # less the generation, rewards and log-probs nested in it
            return super().training_step(model, inputs, num_items_in_batch)

    def _generate(self, prompts):
        self._start_clock()
        with self.timer("generation"):
            out = super()._generate(prompts)
        prompt_ids, completion_ids = out[0], out[1]
        self._tokens["prompt"] += sum(len(p) for p in prompt_ids)
        self._tokens["completion"] += sum(len(c) for c in completion_ids)
        return out

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # __wrapped__ skips TRL's per-call profiling metric, a synchronous MLflow write that would
        # count as reward time; the per-step time metrics replace it.
        with self.timer("reward"):
            rewards = GRPOTrainer._calculate_rewards.__wrapped__(self, inputs, prompts, completions, completion_ids_list)
        self._last_rewards = rewards  # gathered over processes: the dynamic-sampling decision
        return rewards

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        if torch.is_grad_enabled():  # the loss's forward: part of `update`
            return super()._get_per_token_logps_and_entropies(*args, **kwargs)
        with self.timer("logprobs"):  # old-policy and reference log-probs of a fresh batch
            return super()._get_per_token_logps_and_entropies(*args, **kwargs)

    def add_metric(self, name: str, value: float) -> None:
        """A scalar averaged into the next logging step (e.g. the canary accuracy)."""
        self._metrics["train"][name].append(float(value))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training and self._last_log and self.state.global_step > self._last_log[1]:
            logs.update(self._time_metrics())
        if self.model.training:  # TRL adds `reward` itself, below
            for source in self.metric_sources:
                logs.update(source(self.state.global_step))
        super().log(logs, start_time)

    def _time_metrics(self) -> dict[str, float]:
        now, step = time.perf_counter(), self.state.global_step
        steps, wall = step - self._last_log[1], now - self._last_log[0]
        seconds, tokens = self.timer.take(), self._tokens
        m = {"time/step": wall / steps, "time/reward_share": seconds["reward"] / wall,
             **{f"time/{phase}": seconds[phase] / steps for phase in PHASES},
             "perf/throughput": (tokens["prompt"] + tokens["completion"]) / wall,
             "perf/generated_tokens_per_s": tokens["completion"] / max(seconds["generation"], 1e-9)}
        m.update({f"time/reward/{name}": s / steps for name, s in self.reward_seconds.items()})
        self._tokens = Counter()
        self.reward_seconds.clear()
        self._last_log = (now, step)
        return m

    # ---------------------------------------------------------------- dynamic sampling
    def _generate_and_score_completions(self, inputs):
        with self.timer("scoring"):  # less the generation, rewards and log-probs nested in it
            return self._sample_batch(inputs)

    def _sample_batch(self, inputs):
        batch = super()._generate_and_score_completions(inputs)
        if self.dynamic_sampling is None or not self.model.training:
            return batch
        G, rank = self.num_generations, self.accelerator.process_index
        zero = zero_variance_groups(self._last_rewards, self.reward_weights, G)
        replaced = rounds = 0
        # `zero` comes from rewards gathered over all processes, so every process runs the same
        # number of rounds (each round's generation and scoring hold collective operations).
        while zero.any() and rounds < self.dynamic_sampling.max_resamples:
            rounds += 1
            fresh = super()._generate_and_score_completions(self._fresh_inputs(len(inputs), rounds))
            take = zero & ~zero_variance_groups(self._last_rewards, self.reward_weights, G)
            batch = splice_rows(batch, fresh, local_rows_of_groups(take, G, rank, len(inputs)),
                                self._tokenizer.pad_token_id)
            zero &= ~take
            replaced += int(take.sum())
        if rounds:
            mask = batch["completion_mask"] * batch.get("tool_mask", 1)
            batch["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        self.add_metric("dynamic_sampling/dropped_groups", replaced)
        self.add_metric("dynamic_sampling/resampled", rounds)
        self.add_metric("dynamic_sampling/unfilled_groups", int(zero.sum()))
        return batch

    def _fresh_inputs(self, local_size: int, round_: int) -> list[dict]:
        """This process's share of a freshly drawn global batch: the same prompts on every
        process (seeded by seed, step and round), each repeated num_generations times."""
        G, n = self.num_generations, self.accelerator.num_processes
        rng = random.Random(hash((self.args.seed, self.state.global_step, round_)))
        prompts = [rng.randrange(len(self.train_dataset)) for _ in range(local_size * n // G)]
        rows = [i for i in prompts for _ in range(G)]
        start = self.accelerator.process_index * local_size
        return [self.train_dataset[i] for i in rows[start:start + local_size]]

    # ---------------------------------------------------------------- for the monitors
    def greedy_completions(self, prompts: list[list[dict]], max_new_tokens: int) -> list[str]:
        """Greedy completions of chat prompts with the current policy (all processes call this)."""
        from trl.models.utils import unwrap_model_for_generation

        self._start_clock()
        tok = self.processing_class
        texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        enc = tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        enc = enc.to(self.accelerator.device)
        with (self.timer("canary"), unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                          gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                                          gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs)
              as model, torch.no_grad(), self._dist.summon_full_params(self.model_wrapped, recurse=False)):
            was_training = model.training
            model.eval()
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=self.eos_token_ids, pad_token_id=tok.pad_token_id)
            model.train(was_training)
        return tok.batch_decode(out[:, enc["input_ids"].size(1):], skip_special_tokens=True)

    def completion_samples(self, n: int) -> list[dict]:
        """The first `n` completions of the latest generation batch: prompt, completion, each
        reward, advantage (what TRL keeps for its own completion log) and, in multi-turn
        rollouts, the environment's `tool_calls` (name, arguments, result, error)."""
        logs = self._logs
        rows = []
        for i, (prompt, completion) in enumerate(zip(list(logs["prompt"])[:n], list(logs["completion"])[:n])):
            row = {"step": self.state.global_step, "prompt": prompt_text(prompt), "completion": completion_text(completion)}
            row.update({f"reward/{name}": float(v[i]) for name, v in logs["rewards"].items() if i < len(v)})
            row["advantage"] = float(logs["advantages"][i]) if i < len(logs["advantages"]) else float("nan")
            if self.environments and i < len(self.environments):  # this process's rollouts come first
                row["tool_calls"] = list(getattr(self.environments[i], "calls", []))
            rows.append(row)
        return rows
