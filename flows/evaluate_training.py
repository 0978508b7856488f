"""Evaluation started by an event: a deployment run of the sft or grpo flow completed.

deployments/prefect.yaml attaches this flow to a trigger on `prefect.flow-run.Completed`; the
trigger passes the finished run as `training_run` ("prefect.flow-run.<id>", or a bare id).
"""

from __future__ import annotations

from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.exceptions import MissingResult

from flows.evaluate import evaluate_flow
from tasks.recipe import Recipe
from tasks.recipe_checks import form_recipe
from tasks.stages import StageOutput, stage_kind


def training_outputs(training_run: str) -> tuple[Recipe, str | None, list[StageOutput]]:
    """The recipe, data reference and stage outputs of a completed training flow run."""
    run_id = UUID(training_run.removeprefix("prefect.flow-run."))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    if run.state is None or not run.state.is_completed():
        raise ValueError(f"flow run {run_id} ({run.name}) is not completed: {run.state and run.state.name}")
    try:
        outputs = run.state.result()
    except MissingResult:
        raise ValueError(
            f"flow run {run_id} ({run.name}) kept no result, so its checkpoints are unknown: run training "
            "with PREFECT_RESULTS_PERSIST_BY_DEFAULT=true (deployments/prefect.yaml sets it)") from None
    typed = run.parameters.get("recipe")
    recipe, _ = form_recipe(Recipe.model_validate(typed) if typed else None, run.parameters.get("base") or "default",
                            run.parameters.get("overrides"))
    return recipe, run.parameters.get("data"), list(outputs)


@flow(name="evaluate-training")
def evaluate_training_flow(training_run: str) -> list[dict]:
    """Steps: read the completed training run (its recipe and data parameters, and the stage
    outputs it returned, trained or reused from the cache); evaluate the checkpoints the
    recipe's `evaluation.checkpoints` selects with evaluate_flow, under the same recipe."""
    recipe, data, outputs = training_outputs(training_run)
    wanted = [o.path for o in outputs if stage_kind(o.stage) in recipe.evaluation.checkpoints]
    get_run_logger().info("evaluating %d checkpoint(s) of %s: %s", len(wanted), training_run, wanted)
    return evaluate_flow(recipe, wanted, data)
