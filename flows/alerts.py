"""Health warnings that leave the stage: a Prefect event per pipeline whose stages raised monitor
warnings, and (where the recipe names a notification block in `tracking.warnings_notify`) an
automation that sends it there; a person re-routes it in the UI (Automations) to email or Slack.

    ensure_warnings_automation(recipe)      # created or updated; its id
    emit_warnings_event(recipe, run_id, "grpo-stage-1: zero_variance")
"""

from __future__ import annotations

from uuid import UUID

from prefect.events import emit_event

from tasks.recipe import Recipe, RecipeError

WARNINGS_EVENT = "rlvr.pipeline.monitor-warnings"


def automation_name(recipe: Recipe) -> str:
    return f"rlvr {recipe.tracking.experiment}: monitor warnings"


def ensure_warnings_automation(recipe: Recipe) -> UUID | None:
    """The automation that sends this experiment's warning events to the recipe's block (created,
    or updated to the recipe's block); None when the recipe names no block."""
    from prefect.client.orchestration import get_client
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.exceptions import ObjectNotFound

    ref = recipe.tracking.warnings_notify
    if not ref:
        return None
    block_type, _, block_name = ref.partition("/")
    with get_client(sync_client=True) as client:
        try:
            block = client.read_block_document_by_name(name=block_name, block_type_slug=block_type)
        except ObjectNotFound:
            raise RecipeError(f"tracking.warnings_notify: no Prefect block {ref!r} (create it in the UI: "
                              "Blocks -> + , e.g. Slack Webhook or Email)") from None
        automation = AutomationCore(
            name=automation_name(recipe),
            description=f"Messages {ref} when a pipeline of MLflow experiment {recipe.tracking.experiment!r} "
                        "ends with monitor warnings (tasks/train/monitors.py).",
            trigger=EventTrigger(expect={WARNINGS_EVENT}, posture=Posture.Reactive, threshold=1,
                                 match={"prefect.resource.id": "rlvr.pipeline.*",
                                        "rlvr.experiment": recipe.tracking.experiment}),
            actions=[SendNotification(
                block_document_id=block.id, subject="rlvr: {{ event.resource['rlvr.recipe'] }} has monitor warnings",
                body="{{ event.payload.warnings }}\nMLflow run: {{ event.payload.mlflow_run }}")])
        existing = client.read_automations_by_name(automation.name)
        if existing:
            client.update_automation(existing[0].id, automation)
            return existing[0].id
        return client.create_automation(automation)


def emit_warnings_event(recipe: Recipe, run_id: str, warnings: str, link: str) -> None:
    """The event the automation listens for (emitted whether or not one exists: it is on the
    Event feed, and any automation a person builds can match it)."""
    emit_event(WARNINGS_EVENT, resource={"prefect.resource.id": f"rlvr.pipeline.{run_id}",
                                         "prefect.resource.name": recipe.name, "rlvr.recipe": recipe.name,
                                         "rlvr.experiment": recipe.tracking.experiment},
               payload={"warnings": warnings, "mlflow_run": link})
