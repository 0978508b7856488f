"""TRL's GRPOTrainer plus what the pipeline needs from inside it.

    trainer = PipelineGRPOTrainer(model=path, reward_funcs=rewards, args=config, train_dataset=ds,
                                  dynamic_sampling=DynamicSampling(max_resamples=4))

- Rewards run concurrently: each synchronous verifier runs in a worker thread and TRL gathers
  them with asyncio; each one's seconds per step are logged as `timing/reward/<name>_s`.
- At each logging step: `timing/{step,generation,reward,canary,update,other}_s` (seconds per optimizer
  step; update = forward + loss, backward and optimizer step, each timed; other = the rest of the step),
  `timing/reward_share`, `perf/throughput` (verl's definition: prompt + completion tokens per
  second per device) and `perf/generated_tokens_per_s` (completion tokens per second of generation).
- DAPO dynamic sampling (TRL 1.16 only logs `frac_reward_zero_std`): groups whose rewards have
  zero variance are replaced by groups from fresh generation rounds, up to `max_resamples`
  rounds per batch; `dynamic_sampling/{dropped_groups,resampled,unfilled_groups}` are logged.
- `greedy_completions` and `completion_samples` serve the monitors (canary, sample tables).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer
from trl.trainer.utils import nanstd

from tasks.verifiers import completion_text
from tasks.verifiers._base import prompt_text
from tasks.verifiers.rows import family_means

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


_TIMED_PHASES = ("generation_s", "reward_s", "canary_s", "loss_s", "backward_s", "optimizer_s")


class _OptimizerClock(TrainerCallback):
    """Seconds of each optimizer step (between transformers' pre- and post-optimizer events)."""

    def __init__(self, phase: Counter):
        self.phase, self.t0 = phase, 0.0

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.t0 = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.phase["optimizer_s"] += time.perf_counter() - self.t0


class PipelineGRPOTrainer(GRPOTrainer):
    def __init__(self, *args, dynamic_sampling=None, **kwargs):
        self.reward_seconds: Counter = Counter()
        kwargs["reward_funcs"] = [ConcurrentReward(f, self.reward_seconds, self.add_metric)
                                  for f in kwargs["reward_funcs"]]
        super().__init__(*args, **kwargs)
        if dynamic_sampling is not None and (self.tools or self.rollout_func is not None):
            raise ValueError("dynamic_sampling works with plain generation only (no tools or rollout_func)")
        self.dynamic_sampling = dynamic_sampling
        self._phase = Counter()  # seconds and tokens since the last log
        self._last_log: tuple[float, int] | None = None  # (time, global step); set at the first generation
        self._last_rewards: torch.Tensor | None = None
        self.metric_sources: list = []  # step -> dict merged into each training log (e.g. the verifier audit)
        # The update's parts, each timed where it runs: forward + loss, backward, optimizer step.
        self.compute_loss = self._timed(self.compute_loss, "loss_s")
        self.accelerator.backward = self._timed(self.accelerator.backward, "backward_s")
        self.add_callback(_OptimizerClock(self._phase))

    # ---------------------------------------------------------------- time split and throughput
    def _start_clock(self) -> float:
        now = time.perf_counter()
        if self._last_log is None:  # the first interval starts with the first generation or canary
            self._last_log = (now, self.state.global_step)
        return now

    def _generate(self, prompts):
        t0 = self._start_clock()
        out = super()._generate(prompts)
        prompt_ids, completion_ids = out[0], out[1]
        self._phase["generation_s"] += time.perf_counter() - t0
        self._phase["prompt_tokens"] += sum(len(p) for p in prompt_ids)
        self._phase["completion_tokens"] += sum(len(c) for c in completion_ids)
        return out

    def _timed(self, fn, phase: str):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._phase[phase] += time.perf_counter() - t0
        return timed

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        t0 = time.perf_counter()
        # __wrapped__ skips TRL's per-call profiling metric, a synchronous MLflow write that would
        # count as reward time; the per-step timing metrics above replace it.
        rewards = GRPOTrainer._calculate_rewards.__wrapped__(self, inputs, prompts, completions, completion_ids_list)
        self._phase["reward_s"] += time.perf_counter() - t0
        self._last_rewards = rewards  # gathered over processes: the dynamic-sampling decision
        return rewards

    def add_metric(self, name: str, value: float) -> None:
        """A scalar averaged into the next logging step (e.g. the canary accuracy)."""
        self._metrics["train"][name].append(float(value))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training and self._last_log and self.state.global_step > self._last_log[1]:
            logs.update(self._timing_metrics())
        if self.model.training:  # TRL adds `reward` itself, below
            for source in self.metric_sources:
                logs.update(source(self.state.global_step))
        super().log(logs, start_time)

    def _timing_metrics(self) -> dict[str, float]:
        now, step = time.perf_counter(), self.state.global_step
        steps, wall = step - self._last_log[1], now - self._last_log[0]
        p = self._phase
        m = {"timing/step_s": wall / steps,
             "timing/generation_s": p["generation_s"] / steps,
             "timing/reward_s": p["reward_s"] / steps,
             "timing/canary_s": p["canary_s"] / steps,
             # Measured, not a remainder: forward + loss, backward, optimizer step.
             "timing/update_s": (p["loss_s"] + p["backward_s"] + p["optimizer_s"]) / steps,
             "timing/other_s": (wall - sum(p[k] for k in _TIMED_PHASES)) / steps,
             "timing/reward_share": p["reward_s"] / wall,
             "perf/throughput": (p["prompt_tokens"] + p["completion_tokens"]) / wall,
             "perf/generated_tokens_per_s": p["completion_tokens"] / max(p["generation_s"], 1e-9)}
        m.update({f"timing/reward/{name}_s": s / steps for name, s in self.reward_seconds.items()})
        self._phase.clear()
        self.reward_seconds.clear()
        self._last_log = (now, step)
        return m

    # ---------------------------------------------------------------- dynamic sampling
    def _generate_and_score_completions(self, inputs):
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

        t0, tok = self._start_clock(), self.processing_class
        texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        enc = tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        enc = enc.to(self.accelerator.device)
        with (unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                          gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                                          gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs)
              as model, torch.no_grad(), self._dist.summon_full_params(self.model_wrapped, recurse=False)):
            was_training = model.training
            model.eval()
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=self.eos_token_ids, pad_token_id=tok.pad_token_id)
            model.train(was_training)
        self._phase["canary_s"] += time.perf_counter() - t0
        return tok.batch_decode(out[:, enc["input_ids"].size(1):], skip_special_tokens=True)

    def completion_samples(self, n: int) -> list[dict]:
        """The first `n` completions of the latest generation batch: prompt, completion, each
        reward, advantage (what TRL keeps for its own completion log)."""
        logs = self._logs
        rows = []
        for i, (prompt, completion) in enumerate(zip(list(logs["prompt"])[:n], list(logs["completion"])[:n])):
            row = {"step": self.state.global_step, "prompt": prompt_text(prompt), "completion": completion_text(completion)}
            row.update({f"reward/{name}": float(v[i]) for name, v in logs["rewards"].items() if i < len(v)})
            row["advantage"] = float(logs["advantages"][i]) if i < len(logs["advantages"]) else float("nan")
            rows.append(row)
        return rows
