"""Monitor warnings leave the stage: the recipe's notification block gets a Prefect automation."""

import pytest

from flows.alerts import WARNINGS_EVENT, automation_name, ensure_warnings_automation
from tasks.recipe import RecipeError

pytestmark = pytest.mark.integration


def test_the_recipe_block_gets_one_automation_listening_for_warning_events(prefect_server, tiny_recipe):
    from prefect.blocks.notifications import SlackWebhook
    from prefect.client.orchestration import get_client

    assert ensure_warnings_automation(tiny_recipe) is None  # no block named: no automation
    recipe = tiny_recipe.model_copy(deep=True)
    recipe.tracking.warnings_notify = "slack-webhook/rlvr-test-alerts"
    with pytest.raises(RecipeError, match="no Prefect block 'slack-webhook/rlvr-test-alerts'"):
        ensure_warnings_automation(recipe)
    block_id = SlackWebhook(url="https://hooks.slack.com/services/T0/B0/x").save(
        "rlvr-test-alerts", overwrite=True)
    first = ensure_warnings_automation(recipe)
    assert ensure_warnings_automation(recipe) == first  # updated in place, not duplicated
    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name(automation_name(recipe))
    assert automation.id == first and automation.enabled
    assert automation.trigger.expect == {WARNINGS_EVENT}
    (action,) = automation.actions
    assert action.type == "send-notification" and action.block_document_id == block_id
