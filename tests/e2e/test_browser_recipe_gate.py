"""A bad recipe submitted from the Prefect form, in a real browser: the schema lets it through
(a misspelled field inside a stage's free-form `trainer:` map, a source file that does not
exist), the worker's flow run checks it first and ends FAILED with `rlvr validate`'s message
listing both problems, which the flow run's page shows; nothing is written to its runs dir.

The stack, browser and page fixtures are tests/e2e/test_browser.py's (Debian's chromium,
Playwright's Python API, screenshots in test-artifacts/browser/)."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser import (  # noqa: F401  (fixtures: pytest finds them by name here)
    _client,
    _pipeline_runs,
    _wait_for_final_state,
    _wait_for_new_run,
    browser,
    page,
    shot,
    stack,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

TYPO = "grpo.stages.0.trainer.learning_rat: not a field of TRL GRPOConfig; did you mean 'learning_rate'?"


def test_a_bad_recipe_from_the_form_fails_first_with_every_problem(stack, page):  # noqa: F811
    runs_dir = stack["runs"].parent / "bad-runs"
    missing = stack["runs"].parent / "missing.jsonl"
    recipe = json.loads(json.dumps(stack["recipe"]))
    recipe.update(name="tiny-bad", tracking={**recipe["tracking"], "runs_dir": str(runs_dir)})
    recipe["grpo"]["stages"][0]["trainer"]["learning_rat"] = 1e-5
    recipe["data"]["sources"].append({"kind": "jsonl", "name": str(missing)})

    page.goto(f"{stack['prefect']}/deployments")
    page.locator("tr", has_text="pipeline").get_by_role("link", name="local").click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    page.get_by_text("A whole pipeline run").wait_for()
    page.locator("button.p-button--outline").first.click()
    page.get_by_text("Use JSON input").click()
    editor = page.locator("textarea.p-code-input__textarea")
    text = json.dumps({"recipe": recipe}, indent=2)
    editor.fill(text)
    page.wait_for_function("t => document.querySelector('textarea.p-code-input__textarea').value === t", arg=text)
    before = {r.id for r in _pipeline_runs(stack, "tiny-bad")}
    submit = page.get_by_role("button", name="Submit")
    expect(submit).to_be_enabled()  # the form's schema accepts it: only the full check can refuse it
    submit.click()
    flow_run = _wait_for_new_run(stack, "tiny-bad", before, timeout_s=180)

    assert _wait_for_final_state(stack, flow_run.id, timeout_s=300) == "Failed"
    with _client(stack) as client:
        message = client.read_flow_run(flow_run.id).state.message
    assert TYPO in message and f"data.sources.1.name: file not found: {missing}" in message, message

    page.goto(f"{stack['prefect']}/runs/flow-run/{flow_run.id}")
    page.get_by_text("Failed").first.wait_for()
    page.get_by_text(TYPO).first.wait_for()  # the run's log shows the CLI's message
    shot(page, "10-bad-recipe-failed-with-every-problem")
    assert not runs_dir.exists()
