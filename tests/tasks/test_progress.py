"""Progress lines with step/total, rate and ETA, and the trainer callback that reports them."""

from __future__ import annotations

import logging

from transformers import TrainerState

from tasks.progress import StepClock, trainer_progress


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_eta_comes_from_the_steps_done_since_the_first_report():
    clock = FakeClock()
    steps = StepClock("grpo-stage-1", clock=clock)
    assert steps.line(200, 1000) == "grpo-stage-1: step 200/1000 (20%), ETA after the first step"  # resumed at 200
    clock.now += 50.0
    assert steps.line(300, 1000) == "grpo-stage-1: step 300/1000 (30%), 0.50 s/step, ETA 0:05:50"
    clock.now += 350.0
    assert steps.line(1000, 1000) == "grpo-stage-1: step 1000/1000 (100%), 0.50 s/step, ETA 0:00:00"


def test_reports_are_due_first_last_and_then_at_most_every_interval():
    clock = FakeClock()
    steps = StepClock("sft", every_s=10, clock=clock)
    due = []
    for step in range(0, 11):
        steps.line(step, 10)
        due.append(steps.due(step, 10))
        clock.now += 3.0
    assert [s for s, d in enumerate(due) if d] == [0, 4, 8, 10]


def test_trainer_callback_reports_each_step_to_the_hook_or_logs_eta_lines(caplog):
    seen = []
    hooked = trainer_progress("sft", lambda step, total: seen.append((step, total)))
    state = TrainerState(global_step=0, max_steps=3)
    hooked.on_train_begin(None, state, None)
    for state.global_step in (1, 2, 3):
        hooked.on_step_end(None, state, None)
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]

    logged = trainer_progress("sft", every_s=3600)  # no hook: INFO lines, the first and the last
    with caplog.at_level(logging.INFO, logger="tasks.progress"):
        for state.global_step in (0, 1, 2, 3):
            logged.on_step_end(None, state, None)
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["sft: step 0/3 (0%)", "sft: step 3/3 (100%)"]
