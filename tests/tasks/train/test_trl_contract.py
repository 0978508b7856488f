"""The contract between PipelineGRPOTrainer and the pinned TRL: each override, and each private
member of GRPOTrainer it relies on (listed in tasks/train/trainer.py), exercised by a named test
on a few-second run of the tiny model, so a TRL upgrade that changes one fails here by name
instead of inside a slow pipeline run."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from tasks.recipe import DynamicSampling
from tasks.train.trainer import PHASES, PhaseTimer, PipelineGRPOTrainer

PROMPTS = [[{"role": "user", "content": f"Compute {a}+{b}."}] for a, b in ((1, 2), (3, 4), (2, 5), (6, 1))]


def constant_reward(completions, **kwargs):
    """Every completion scores 1: every group has zero variance, so dynamic sampling resamples."""
    return [1.0] * len(completions)


def length_reward(completions, **kwargs):
    return [float(len(c[0]["content"])) for c in completions]


class _Logs(TrainerCallback):
    def __init__(self):
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """Two optimizer steps with a reference model (beta > 0, so reference log-probs are
    computed), dynamic sampling, and a constant reward beside a varying one."""
    from datasets import Dataset

    torch.manual_seed(0)
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("trl-contract")), report_to="none", use_cpu=True,
                      per_device_train_batch_size=4, num_generations=2, max_completion_length=4, max_steps=2,
                      logging_steps=1, beta=0.04, save_strategy="no", disable_tqdm=True, seed=0,
                      reward_weights=[1.0, 0.0])
    logs = _Logs()
    trainer = PipelineGRPOTrainer(model=str(tiny_model_dir), reward_funcs=[constant_reward, length_reward], args=args,
                                  train_dataset=Dataset.from_dict({"prompt": PROMPTS * 2}), callbacks=[logs],
                                  dynamic_sampling=DynamicSampling(max_resamples=1))
    trainer.train()
    train_logs = [entry for entry in logs.logs if "time/step" in entry]
    assert len(train_logs) == 2, logs.logs
    return trainer, train_logs


# ---------------------------------------------------------------- what TRL must still provide
@pytest.mark.parametrize("member", ["_generate", "_calculate_rewards", "_get_per_token_logps_and_entropies",
                                    "_generate_and_score_completions", "training_step"])
def test_trl_still_has_the_method_we_override(member):
    assert callable(getattr(GRPOTrainer, member, None)), f"TRL's GRPOTrainer has no {member} any more"


def test_trl_calculate_rewards_is_still_wrapped_by_its_profiler():
    assert callable(getattr(GRPOTrainer._calculate_rewards, "__wrapped__", None))


@pytest.mark.parametrize("member", ["_metrics", "_tokenizer", "_dist", "_logs"])
def test_trl_still_keeps_the_attribute_we_read(trained, member):
    trainer, _ = trained
    assert hasattr(trainer, member), f"TRL's GRPOTrainer no longer sets self.{member}"


# ---------------------------------------------------------------- each override, exercised
def test_generate_override_times_generation_and_counts_tokens(trained):
    _, logs = trained
    assert all(entry["time/generation"] > 0 and entry["perf/generated_tokens_per_s"] > 0 for entry in logs)
    assert all(entry["perf/throughput"] > 0 for entry in logs)


def test_calculate_rewards_override_keeps_the_gathered_rewards_and_times_them(trained):
    trainer, logs = trained
    assert trainer._last_rewards.shape == (4, 2)  # one row per completion, one column per reward
    assert all(entry["time/reward"] > 0 and 0 < entry["time/reward_share"] < 1 for entry in logs)
    assert all(entry["time/reward/constant_reward"] > 0 for entry in logs)


def test_logprobs_override_times_the_reference_logprobs(trained):
    _, logs = trained
    assert all(entry["time/logprobs"] > 0 for entry in logs)


def test_training_step_override_measures_the_update_apart_from_the_rollout(trained):
    _, logs = trained
    for entry in logs:
        assert entry["time/update"] > 0 and entry["time/scoring"] > 0
        assert sum(entry[f"time/{p}"] for p in PHASES) <= entry["time/step"] * 1.01  # nested phases count once


def test_add_metric_reaches_the_next_log_through_trl_metrics(trained):
    _, logs = trained
    assert all(entry["rewards/constant_reward/scored"] == 1.0 for entry in logs)


def test_generate_and_score_override_resamples_zero_variance_groups(trained):
    _, logs = trained
    assert all(entry["dynamic_sampling/resampled"] == 1 for entry in logs)  # the constant reward: always
    assert all(entry["dynamic_sampling/unfilled_groups"] == 2 for entry in logs)


def test_greedy_completions_generate_with_the_current_policy(trained):
    trainer, _ = trained
    texts = trainer.greedy_completions(PROMPTS[:2], max_new_tokens=3)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert trainer.model.training  # given back in training mode


def test_completion_samples_read_trl_completion_log(trained):
    trainer, _ = trained
    rows = trainer.completion_samples(2)
    assert len(rows) == 2
    assert {"step", "prompt", "completion", "reward/constant_reward", "reward/length_reward", "advantage"} <= set(rows[0])
    assert rows[0]["reward/constant_reward"] == 1.0 and "Compute" in rows[0]["prompt"]


# ---------------------------------------------------------------- the timer itself
def test_phase_timer_counts_a_nested_phase_once():
    timer = PhaseTimer()
    with timer("update"):
        with timer("generation"):
            torch.ones(1)
    seconds = timer.take()
    assert set(seconds) == {"update", "generation"} and all(v >= 0 for v in seconds.values())
    assert timer.take() == {}
