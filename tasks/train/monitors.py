"""Health monitors of a GRPO stage, and what it shows users at each logging step.

    health = HealthMonitor(stage.monitors)
    trips = health.check(logs, step)        # pure: a trip per monitor whose threshold held `patience` times
    trainer.add_callback(StageMonitor(trainer, stage, run_id, out_dir, canary_rows))

Monitors (thresholds and policies in the recipe, `grpo.stages[i].monitors`): the fraction of
zero-variance groups, the truncation ratio, entropy collapse, KL blow-up, and a reward-hacking
canary (training reward rising while greedy accuracy on held-back rows falls), and the verifier
audit's false-negative rate (tasks.train.audit; its interval's lower end). Each monitor
trips at most once per stage; a trip becomes an MLflow tag `monitor.<name>`, a log line that
says what to change, and a record in `<stage dir>/monitor_trips.json` that the flow posts as a
Prefect artifact. Policy `stop` also ends the stage cleanly (the model is still saved).

Entropy collapse reads the entropy *per completion* (TRL's token-mean `entropy` times
`completions/mean_length`, nats), not per token: by the chain rule that is the entropy of the
whole sampled completion, the quantity that decides whether a group's samples still differ.
Per token, a healthy policy on a task with short, fully determined answers (arithmetic, a
Countdown equation, a one-line function) sits far below any family-free floor; the default
recipe fell under the former 0.05 nats/token at step 20-30 while its held-out accuracy rose.
The default floor, 0.1 nats per completion, is the entropy of a policy that samples one
completion 98% of the time; its groups of 8 are then identical about 85% of the time:
exploration has stopped, whatever the family.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import mean

import pandas as pd
from transformers import TrainerCallback

from tasks.data.curate import prompt_messages
from tasks.layout import TRIPS_FILE
from tasks.lineage import BACKGROUND, log_rollouts
from tasks.verifiers import build_reward
from tasks.verifiers.rows import reward_columns

log = logging.getLogger(__name__)

#: monitor -> (logged metric, direction that is bad, what the number means, what to change)
CHECKS: dict[str, tuple[str, str, str, str]] = {
    "zero_variance": (
        "frac_reward_zero_std", ">", "of groups got identical rewards for every completion (no learning signal)",
        "turn on dynamic_sampling (or preset: dapo), select rows the policy solves sometimes (data.where), "
        "or raise num_generations / temperature"),
    "truncation": (
        "completions/clipped_ratio", ">", "of completions hit max_completion_length",
        "raise trainer.max_completion_length, add soft_overlong_reward, or set mask_truncated_completions: true"),
    "entropy_collapse": (
        "entropy/completion", "<", "nats of entropy per completion: the policy is collapsing onto one completion",
        "lower learning_rate, use clip-higher (epsilon_high: 0.28 or preset: dapo), raise temperature, or add KL (beta)"),
    "kl_blowup": (
        "kl", ">", "KL to the reference model: the policy is drifting fast",
        "lower learning_rate, raise beta, or lower epsilon"),
    "false_negatives": (
        "audit/false_negative_rate_low", ">", "is the lower end of the 95% interval of the verifier's false-negative "
        "rate (audited 0s whose answer a careful re-check found right)",
        "read the audit/disagreements.json table, widen the verifier to the answer forms it misses, or set "
        "audit.reward_false_negatives: true (TinyV's recheck)"),
}


FRACTIONS = {"frac_reward_zero_std", "completions/clipped_ratio", "audit/false_negative_rate_low"}


def derived_metrics(logs: dict) -> dict:
    """The logs plus `entropy/completion` (token-mean entropy x mean completion length) when
    both are logged: the entropy of a sampled completion, which the entropy monitor reads."""
    if logs.get("entropy") is None or logs.get("completions/mean_length") is None:
        return logs
    return {**logs, "entropy/completion": float(logs["entropy"]) * float(logs["completions/mean_length"])}


@dataclass
class Trip:
    monitor: str
    step: int
    value: float
    threshold: float
    policy: str
    message: str


def hacking_signal(canary: list[tuple[int, float]], rewards: list[tuple[int, float]],
                   max_drop: float) -> tuple[float, float, float, float, int] | None:
    """(best accuracy, accuracy now, reward then, reward now, best step) when the latest canary
    accuracy is at least `max_drop` below its best while the mean training reward logged since
    the previous canary point exceeds the mean logged up to the best point; else None."""
    if len(canary) < 2 or not rewards:
        return None
    best_step, best = max(canary, key=lambda c: c[1])
    step, acc = canary[-1]
    if best - acc < max_drop:
        return None
    then = [r for s, r in rewards if s <= best_step] or [rewards[0][1]]
    now = [r for s, r in rewards if s > canary[-2][0]] or [rewards[-1][1]]
    if mean(now) <= mean(then):
        return None
    return best, acc, mean(then), mean(now), best_step


class HealthMonitor:
    """Checks each logging step's metrics against the recipe's thresholds (pure; no I/O)."""

    def __init__(self, cfg, already_tripped: set[str] | frozenset = frozenset()):
        self.cfg = cfg
        self.tripped = set(already_tripped)
        self.streak: dict[str, int] = {}
        self.rewards: list[tuple[int, float]] = []
        self.canary: list[tuple[int, float]] = []

    def _armed(self, name: str):
        spec = getattr(self.cfg, name)
        return spec if spec.policy != "off" and name not in self.tripped else None

    def check(self, logs: dict, step: int) -> list[Trip]:
        trips, logs = [], derived_metrics(logs)
        for name, (key, bad, meaning, advice) in CHECKS.items():
            spec = self._armed(name)
            if spec is None or logs.get(key) is None:
                continue
            value = float(logs[key])
            crossed = value > spec.threshold if bad == ">" else value < spec.threshold
            self.streak[name] = self.streak.get(name, 0) + 1 if crossed else 0
            if self.streak[name] >= self.cfg.patience:
                shown = f"{value:.0%}" if key in FRACTIONS else f"{value:.3g}"
                trips.append(self._trip(name, step, value, spec, (
                    f"{name} at step {step}: {shown} {meaning} ({bad} {spec.threshold:g} for "
                    f"{self.cfg.patience} logging steps). Change: {advice}.")))
        trips += self._check_unscored(logs, step)
        if logs.get("reward") is not None:
            self.rewards.append((step, float(logs["reward"])))
        if logs.get("canary/accuracy") is not None:
            self.canary.append((step, float(logs["canary/accuracy"])))
            trips += self._check_canary(step)
        return trips

    def _check_unscored(self, logs: dict, step: int) -> list[Trip]:
        """A reward that scored none of the rows it applies to (`rewards/<name>/scored` == 0)."""
        spec = self._armed("unscored_reward")
        dead = [k.split("/")[1] for k, v in logs.items()
                if k.startswith("rewards/") and k.endswith("/scored") and v is not None and float(v) == 0.0]
        if spec is None or not dead:
            return []
        return [self._trip("unscored_reward", step, 0.0, spec, (
            f"unscored_reward at step {step}: {', '.join(dead)} returned None for every row it applies to, "
            "so it gives no learning signal. Change: check that the rows carry the columns the reward reads "
            "(docs/curation.md), map them with data.sources[].columns, or drop the reward from the stage."))]

    def add_canary(self, step: int, accuracy: float) -> list[Trip]:
        """A canary point measured outside the logs (the baseline before training)."""
        self.canary.append((step, accuracy))
        return self._check_canary(step)

    def _check_canary(self, step: int) -> list[Trip]:
        spec = self._armed("reward_hacking")
        signal = spec and hacking_signal(self.canary, self.rewards, spec.max_drop)
        if not signal:
            return []
        best, acc, then, now, best_step = signal
        return [self._trip("reward_hacking", step, acc, spec, (
            f"reward_hacking at step {step}: training reward rose ({then:.3g} -> {now:.3g}) while greedy "
            f"accuracy on the held-back canary rows fell {best:.3g} -> {acc:.3g} (best at step {best_step}). "
            "The policy may be exploiting a verifier. Change: read the sample tables (samples/ in MLflow), "
            "tighten the verifiers or lower shaping weights, or keep the checkpoint nearest the best step."))]

    def _trip(self, name, step, value, spec, message) -> Trip:
        self.tripped.add(name)
        threshold = spec.max_drop if name == "reward_hacking" else getattr(spec, "threshold", 0.0)
        return Trip(name, step, value, threshold, spec.policy, message)


def read_trips(stage_dir: str | Path) -> list[dict]:
    path = Path(stage_dir) / TRIPS_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def score_canary(trainer, rows: list[dict], prompts: list, reward, max_new_tokens: int) -> float:
    """Greedy accuracy of the policy on the canary rows, scored by `reward` (None counts as 0)."""
    texts = trainer.greedy_completions(prompts, max_new_tokens)
    scores = reward(prompts=prompts, completions=texts, **reward_columns(rows))
    return sum(float(s or 0.0) for s in scores) / max(len(scores), 1)


class StageMonitor(TrainerCallback):
    """Runs the health monitors, the canary and the sample tables inside a GRPO training loop.

    Every process evaluates the monitors on the same gathered metrics (so a `stop` ends all
    ranks together) and decodes the canary (ZeRO-3 gathers need every rank); only the main
    process writes to MLflow and the trips file.
    """

    def __init__(self, trainer, stage, run_id: str | None, out_dir: Path, canary_rows: list[dict],
                 system_prompt: str | None = None, traces=None):
        self.trainer, self.stage, self.run_id = trainer, stage, run_id
        self.trips_path = Path(out_dir) / TRIPS_FILE
        self.trips = read_trips(out_dir)  # a resumed stage keeps what an earlier attempt found
        self.health = HealthMonitor(stage.monitors, {t["monitor"] for t in self.trips})
        canary = stage.monitors.reward_hacking
        self.canary_rows = canary_rows if canary.policy != "off" else []
        self.canary_prompts = [prompt_messages(r, system_prompt) for r in self.canary_rows]
        self.canary_reward = build_reward(canary.reward) if self.canary_rows else None
        self.max_new_tokens = trainer.args.max_completion_length
        self.traces, self.traced = traces, 0  # tracking.rollout_traces, and how many this stage logged

    def _canary(self) -> float:
        return score_canary(self.trainer, self.canary_rows, self.canary_prompts, self.canary_reward,
                            self.max_new_tokens)

    def on_train_begin(self, args, state, control, **kwargs):
        if self.canary_rows:  # the baseline every later canary point is compared with
            acc = self._canary()
            if state.global_step == 0:  # a resumed stage logged this step's point before
                self._mlflow(lambda c: c.log_metric(self.run_id, "canary/accuracy", acc, step=0), state)
            self._handle(self.health.add_canary(state.global_step, acc), state, control)

    def on_step_end(self, args, state, control, **kwargs):
        every = self.stage.monitors.reward_hacking.every
        if self.canary_rows and state.global_step % every == 0:
            self.trainer.add_metric("canary/accuracy", self._canary())  # logged at the next logging step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "reward" not in logs and "canary/accuracy" not in logs:
            return
        self._handle(self.health.check(logs, state.global_step), state, control)
        if "reward" in logs and self.run_id and state.is_world_process_zero:
            self._log_samples(state.global_step)

    def _log_samples(self, step: int) -> None:
        """This step's sample table and rollout traces, queued for the background thread."""
        tables = self.stage.log_samples
        traces = min(self.traces.per_step, self.traces.per_stage - self.traced) if self.traces else 0
        samples = self.trainer.completion_samples(max(tables, traces)) if tables or traces > 0 else []
        if tables and samples:
            BACKGROUND.submit(f"sample table of step {step}", lambda c: c.log_table(
                self.run_id, pd.DataFrame(samples[:tables]), f"samples/step_{step:05d}.json"))
        if traces > 0:
            log_rollouts(self.run_id, f"grpo-{self.stage.name}", step, samples[:traces])
            self.traced += len(samples[:traces])

    def _handle(self, trips: list[Trip], state, control) -> None:
        for trip in trips:
            if trip.policy == "stop":
                control.should_training_stop = True
            if not state.is_world_process_zero:
                continue
            log.warning("monitor %s", trip.message)
            self.trips.append(asdict(trip))
            self.trips_path.write_text(json.dumps(self.trips, indent=2))
            tags = {f"monitor.{trip.monitor}": trip.message[:5000]}
            if trip.policy == "stop":
                tags["monitor.stopped_by"] = trip.monitor
            self._mlflow(lambda c, tags=tags: [c.set_tag(self.run_id, k, v) for k, v in tags.items()], state)

    def _mlflow(self, fn, state) -> None:
        if self.run_id and state.is_world_process_zero:
            from mlflow import MlflowClient

            fn(MlflowClient())
