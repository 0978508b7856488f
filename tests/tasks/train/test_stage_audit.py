"""The verifier audit inside a GRPO stage: the wrapped reward, its metrics, the TinyV recheck
switch, the false-negative monitor and the stage's audit.json."""

import pytest

from tasks.recipe import GRPOStage, Monitors
from tasks.train.audit import AuditedReward, StageAudit
from tasks.train.monitors import HealthMonitor
from tasks.verifiers import build_reward
from tasks.verifiers.audit_report import audit_markdown, read_audit
from tests.tasks.verifiers.test_audit import ThousandsBlindMath, _blind_spot_batch


def _call(reward, texts, golds, logged=None):
    log = (lambda name, value: logged.append((name, value))) if logged is not None else None
    return reward(prompts=["q"] * len(texts), completions=[[{"role": "assistant", "content": t}] for t in texts],
                  answer=golds, family=["math"] * len(texts), log_metric=log, trainer_state=object())


def _stage_audit(**audit):
    return StageAudit(GRPOStage.model_validate({"audit": audit}).audit, seed=0)


def test_only_correctness_verifiers_are_wrapped_and_scores_pass_through():
    audit = _stage_audit(sample_rate=1.0, max_per_batch=1000, max_seconds_per_batch=60.0)
    math, fmt = audit.wrap([ThousandsBlindMath(), build_reward("format_reward")])
    assert isinstance(math, AuditedReward) and not isinstance(fmt, AuditedReward)
    assert math.__name__ == "math_answer_reward" and math.applies("math") and not math.applies("code")
    texts, golds = _blind_spot_batch()
    scores = _call(math, texts, golds)
    assert scores == ThousandsBlindMath()(completions=texts, answer=golds)
    m = audit.metrics(step=10)
    assert m["audit/false_negative_rate"] == pytest.approx(0.4) and m["audit/negatives_checked"] == 100
    assert m["audit/false_positive_rate"] == 0.0 and m["timing/audit_s"] > 0


def test_default_settings_audit_a_small_bounded_sample():
    audit = _stage_audit()
    [math] = audit.wrap([ThousandsBlindMath()])
    texts, golds = _blind_spot_batch()
    for _ in range(5):
        _call(math, texts, golds)
    m = audit.metrics(step=5)
    checked = m["audit/negatives_checked"] + m["audit/positives_checked"] + m["audit/undecided"]
    assert 5 <= checked <= 5 * 2 * 8  # 2% of each side, at most max_per_batch (8) a side per call


def test_recheck_switch_pays_confirmed_false_negatives_and_logs_both_rewards_apart():
    audit = _stage_audit(reward_false_negatives=True, sample_rate=0.0, max_seconds_per_batch=60.0)
    [math] = audit.wrap([ThousandsBlindMath()])
    texts, golds = _blind_spot_batch()
    logged = []
    scores = _call(math, texts, golds, logged)
    assert scores.count(1.0) == 140 and scores.count(0.0) == 60  # the 40 separators are paid, wrong ones not
    assert dict(logged) == {"audit/verifier_reward": 0.5, "audit/recheck_reward": 0.2}


def test_disabled_audit_wraps_nothing():
    rewards = [ThousandsBlindMath()]
    assert _stage_audit(enabled=False).wrap(rewards) == rewards


def test_false_negative_monitor_reads_the_interval_lower_end():
    health = HealthMonitor(Monitors.model_validate({"patience": 1, "false_negatives": {"threshold": 0.1}}))
    # 3 of 10 is 30%, but its interval reaches down to 11%: trips; 2 of 10 (lower end 6%) does not
    assert health.check({"reward": 0.5, "audit/false_negative_rate": 0.2, "audit/false_negative_rate_low": 0.057}, 10) == []
    [trip] = health.check({"reward": 0.5, "audit/false_negative_rate_low": 0.108}, 20)
    assert trip.monitor == "false_negatives" and trip.policy == "warn"
    assert "audit.reward_false_negatives" in trip.message


def test_finish_writes_the_report_the_flow_posts(tmp_path):
    audit = _stage_audit(sample_rate=1.0, max_per_batch=1000, max_seconds_per_batch=60.0)
    [math] = audit.wrap([ThousandsBlindMath()])
    _call(math, *_blind_spot_batch())
    audit.finish(tmp_path, run_id=None)
    report = read_audit(tmp_path)
    assert report["summary"]["audit/false_negatives"] == 40 and len(report["disagreements"]) == 40
    text = "\n".join(audit_markdown(report))
    assert "## Verifier audit" in text and "| false negatives | 40.0% |" in text


def test_recheck_pays_only_rows_of_an_audited_family():
    audit = _stage_audit(reward_false_negatives=True, sample_rate=0.0, max_seconds_per_batch=60.0)
    [mix] = audit.wrap([build_reward("family_reward", {"by_family": {"math": "math_answer_reward",
                                                                      "countdown": "equation_reward"}})])
    # a countdown completion whose answer equals the target is still wrong (numbers unused): never re-checked as math
    texts = ["<think>x</think> The answer is 1,000.", "<think>x</think><answer>10</answer>"]
    scores = mix(prompts=["q", "q"], completions=texts, answer=["1000", "10"], family=["math", "countdown"],
                 numbers=[None, [2, 5]], target=[None, 10])
    assert scores == [1.0, 0.0]
    assert audit.metrics(step=1)["audit/negatives_checked"] == 1
