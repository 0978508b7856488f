"""Progress of a long step as `step/total` with a rate and an ETA, for people watching a run.

    clock = StepClock("sft")
    clock.line(30, 100)            # "sft: step 30/100 (30%), 0.52 s/step, ETA 0:00:36"
    trainer_progress("sft", hook)  # a transformers TrainerCallback calling hook(step, total)

No Prefect here: the flow layer passes a hook that shows the numbers (flows/progress.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

log = logging.getLogger(__name__)

ProgressHook = Callable[[int, int], None]


class StepClock:
    """Rate and ETA from the steps done since the first report (a resumed run starts mid-way),
    and when the next report is due (the first, the last, and at most one per `every_s`)."""

    def __init__(self, label: str, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.label, self.every_s, self._clock = label, every_s, clock
        self._first: tuple[int, float] | None = None
        self._last_report = float("-inf")

    def due(self, step: int, total: int) -> bool:
        now = self._clock()
        if self._first is None or step >= total or now - self._last_report >= self.every_s:
            self._last_report = now
            return True
        return False

    def line(self, step: int, total: int) -> str:
        now = self._clock()
        if self._first is None:
            self._first = (step, now)
        first_step, start = self._first
        head = f"{self.label}: step {step}/{total} ({100 * step / max(total, 1):.0f}%)"
        if step <= first_step:
            return f"{head}, ETA after the first step"
        per_step = (now - start) / (step - first_step)
        eta = timedelta(seconds=round(per_step * max(total - step, 0)))
        return f"{head}, {per_step:.2f} s/step, ETA {eta}"


def trainer_progress(label: str, hook: ProgressHook | None = None, every_s: float = 10.0):
    """A transformers TrainerCallback reporting (global_step, max_steps) at the start and after
    every optimizer step: to `hook` when given (it decides how to show it), else as an INFO
    line with the ETA at most every `every_s` seconds."""
    from transformers import TrainerCallback

    clock = StepClock(label, every_s)

    def report(state) -> None:
        if not state.is_world_process_zero:
            return
        step, total = state.global_step, state.max_steps
        if hook:
            hook(step, total)
            return
        line = clock.line(step, total)
        if clock.due(step, total):
            log.info(line)

    class TrainerProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            report(state)

        def on_step_end(self, args, state, control, **kwargs):
            report(state)

    return TrainerProgress()
