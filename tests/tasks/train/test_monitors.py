"""Health monitors on synthetic log dicts (pure), and the stage-end plots."""

import pytest

from tasks.recipe import Monitors
from tasks.train.monitors import HealthMonitor, hacking_signal
from tasks.train.plots import PANELS, plot_training_curves, series


def _monitors(**kw) -> Monitors:
    return Monitors.model_validate(kw)


def test_a_threshold_trips_after_patience_consecutive_steps_and_only_once():
    health = HealthMonitor(_monitors(patience=2))
    assert health.check({"reward": 0.1, "frac_reward_zero_std": 0.95}, 10) == []
    assert health.check({"reward": 0.1, "frac_reward_zero_std": 0.5}, 20) == []  # streak broken
    assert health.check({"reward": 0.1, "frac_reward_zero_std": 0.95}, 30) == []
    trips = health.check({"reward": 0.1, "frac_reward_zero_std": 0.97}, 40)
    assert [(t.monitor, t.step, t.threshold, t.policy) for t in trips] == [("zero_variance", 40, 0.9, "warn")]
    assert "97% of groups" in trips[0].message and "dynamic_sampling" in trips[0].message
    assert health.check({"frac_reward_zero_std": 1.0}, 50) == []  # a monitor trips once per stage


def test_each_monitor_reads_its_metric_and_direction():
    health = HealthMonitor(_monitors(patience=1, kl_blowup={"threshold": 0.5, "policy": "stop"}))
    trips = health.check({"completions/clipped_ratio": 0.8, "entropy": 0.002, "completions/mean_length": 30,
                          "kl": 2.0, "frac_reward_zero_std": 0.1}, 5)
    assert {t.monitor: t.policy for t in trips} == {"truncation": "warn", "entropy_collapse": "warn", "kl_blowup": "stop"}
    assert all("Change:" in t.message for t in trips)
    healthy = HealthMonitor(_monitors(patience=1))
    assert healthy.check({"completions/clipped_ratio": 0.1, "entropy": 1.2, "kl": 0.01}, 5) == []


def test_entropy_collapse_reads_entropy_per_completion_not_per_token():
    """0.01 nats/token over 30 tokens is 0.3 nats per completion: a confident policy on a short,
    determined answer, still exploring; 0.002 x 30 = 0.06 nats is one completion per group."""
    health = HealthMonitor(_monitors(patience=1))
    assert health.check({"entropy": 0.01, "completions/mean_length": 30}, 1) == []
    [trip] = health.check({"entropy": 0.002, "completions/mean_length": 30}, 2)
    assert trip.monitor == "entropy_collapse" and trip.value == pytest.approx(0.06)
    assert "per completion" in trip.message


def test_off_and_earlier_trips_are_not_checked():
    health = HealthMonitor(_monitors(patience=1, truncation={"policy": "off"}), already_tripped={"entropy_collapse"})
    assert health.check({"completions/clipped_ratio": 1.0, "entropy": 0.0}, 1) == []


def test_a_reward_unscored_for_a_whole_batch_trips_at_once_naming_it():
    health = HealthMonitor(_monitors())
    assert health.check({"reward": 0.5, "rewards/math_answer_reward/scored": 0.25}, 1) == []
    trips = health.check({"reward": 0.5, "rewards/code_reward/scored": 0.0,
                          "rewards/math_answer_reward/scored": 1.0}, 2)
    assert [(t.monitor, t.policy) for t in trips] == [("unscored_reward", "warn")]
    assert "code_reward" in trips[0].message and "math_answer_reward" not in trips[0].message
    quiet = HealthMonitor(_monitors(unscored_reward={"policy": "off"}))
    assert quiet.check({"rewards/code_reward/scored": 0.0}, 1) == []


def test_hacking_signal_needs_falling_canary_and_rising_reward():
    rewards = [(10, 0.2), (20, 0.3), (30, 0.6), (40, 0.7)]
    assert hacking_signal([(0, 0.5), (20, 0.6), (40, 0.4)], rewards, 0.15) == pytest.approx((0.6, 0.4, 0.25, 0.65, 20))
    assert hacking_signal([(0, 0.5), (20, 0.6), (40, 0.5)], rewards, 0.15) is None  # drop too small
    falling = [(10, 0.7), (20, 0.6), (30, 0.3), (40, 0.2)]
    assert hacking_signal([(0, 0.5), (20, 0.6), (40, 0.4)], falling, 0.15) is None  # reward fell too
    assert hacking_signal([(0, 0.5)], rewards, 0.15) is None


def test_reward_hacking_trips_from_logged_canary_points():
    health = HealthMonitor(_monitors(patience=1, reward_hacking={"max_drop": 0.2, "policy": "stop"}))
    assert health.add_canary(0, 0.5) == []
    health.check({"reward": 0.2}, 10)
    assert health.check({"reward": 0.3, "canary/accuracy": 0.6}, 20) == []
    health.check({"reward": 0.8}, 30)
    trips = health.check({"reward": 0.9, "canary/accuracy": 0.3}, 40)
    assert [(t.monitor, t.policy, t.value) for t in trips] == [("reward_hacking", "stop", 0.3)]
    assert "0.6 -> 0.3" in trips[0].message and "best at step 20" in trips[0].message


def test_plots_one_png_per_panel_even_when_a_metric_is_missing(tmp_path):
    history = [{"step": s, "reward": s / 10, "rewards/math_answer_reward/mean": s / 10,
                "rewards/format_reward/mean": 0.5, "entropy": 1.0, "completions/mean_length": 20,
                "clip_ratio/region_mean": 0.0} for s in range(1, 6)] + [{"step": 5, "train_loss": 0.1}]
    assert set(series(history, ["rewards/"])) == {"rewards/math_answer_reward/mean", "rewards/format_reward/mean"}
    paths = plot_training_curves(history, tmp_path)
    assert [p.stem for p in paths] == list(PANELS) and all(p.stat().st_size > 1000 for p in paths)


def test_advice_names_the_stage_field_to_change():
    trips = HealthMonitor(_monitors(patience=1), stage_path="grpo.stages.1").check({"completions/clipped_ratio": 0.9}, 3)
    assert "grpo.stages.1.max_completion_length" in trips[0].message
    assert "trainer.max_completion_length" not in trips[0].message
