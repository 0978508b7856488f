"""The one Prefect task that runs any stage: its spec (tasks/stages.py), with the output lines of
launched workers and the stage's progress streaming into this task run, tagged with the flow run."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.progress import progress_hook
from flows.reporting import prefect_tags
from tasks.recipe import Recipe
from tasks.stages import StageHooks, StageOutput, StageSpec, run_stage


# No Prefect cache: a stage caches by its content key in its own directory (tasks.stages).
@task(name="stage", task_run_name="{spec.name}", cache_policy=NO_CACHE)
def stage_task(recipe: Recipe, spec: StageSpec, parent_run_id: str | None) -> StageOutput:
    hooks = StageHooks(on_line=get_run_logger().info, progress=progress_hook(recipe.name, spec.name))
    return run_stage(recipe, spec, hooks, parent_run_id=parent_run_id, tags=prefect_tags())
