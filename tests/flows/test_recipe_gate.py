"""One gate: every way into the pipeline runs the full recipe check (`rlvr validate`'s) before
anything is computed or written. A recipe the schema accepts but the full check refuses (a
misspelled TRL field in a stage's `trainer:` map, a source file that does not exist) fails
each entry with the CLI's message listing both problems, and leaves no runs directory."""

from __future__ import annotations

import pytest
import yaml
from prefect import flow

from flows.curate import curate_flow
from flows.evaluate import evaluate_flow
from flows.evaluate_training import evaluate_training_flow
from flows.grpo import grpo_flow
from flows.pipeline import pipeline_flow
from flows.sft import sft_flow
from tasks.recipe import Recipe, RecipeError
from tasks.recipe_checks import validate_recipe
from tests.conftest import REPO

pytestmark = pytest.mark.integration

PROBLEMS = ("grpo.stages.0.trainer.learning_rat: not a field of TRL GRPOConfig; did you mean 'learning_rate'?",
            "data.sources.1.name: file not found: ")


@pytest.fixture
def bad(tiny_recipe) -> dict:
    """The tiny recipe with two problems only the full check sees; its runs dir does not exist."""
    raw = tiny_recipe.model_dump(mode="json")
    raw["grpo"]["stages"][0]["trainer"]["learning_rat"] = 1e-5
    raw["data"]["sources"].append({"kind": "jsonl", "name": raw["tracking"]["runs_dir"] + "-missing.jsonl"})
    Recipe.model_validate(raw)  # the schema alone lets it through
    return raw


def _cli_message(raw: dict) -> str:
    with pytest.raises(RecipeError) as e:
        validate_recipe(raw)
    message = str(e.value)
    assert all(p in message for p in PROBLEMS), message
    return message


@pytest.mark.parametrize("entry", [pipeline_flow, curate_flow, sft_flow, grpo_flow, evaluate_flow],
                         ids=lambda f: f.name)
def test_each_flow_called_from_python_fails_first_with_the_cli_message(prefect_server, bad, entry):
    with pytest.raises(RecipeError) as e:
        entry(Recipe.model_validate(bad))
    assert str(e.value) == _cli_message(bad)
    assert not (REPO / bad["tracking"]["runs_dir"]).exists()


def test_each_deployment_and_the_schedule_leave_a_failed_run_listing_every_problem(prefect_server, bad):
    """What a worker runs for a deployment (the form, a schedule): the entrypoint with the
    deployment's parameters; the flow run ends FAILED and its message lists every problem."""
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    with_recipe = [d for d in spec["deployments"] if not d.get("triggers")]
    assert any(d.get("schedules") for d in with_recipe)  # the weekly retraining runs through here
    for d in with_recipe:
        entry = load_flow_from_entrypoint(str(REPO / d["entrypoint"]))
        state = entry(**{**d.get("parameters", {}), "recipe": bad}, return_state=True)
        assert state.is_failed(), (d["name"], state)
        assert all(p in state.message for p in PROBLEMS), state.message
    assert not (REPO / bad["tracking"]["runs_dir"]).exists()


@flow(name="sft", persist_result=True)
def _finished_training(recipe: dict) -> list:
    return []


def test_the_evaluation_trigger_checks_the_recipe_of_the_training_run(prefect_server, bad):
    done = _finished_training(bad, return_state=True)
    state = evaluate_training_flow(f"prefect.flow-run.{done.state_details.flow_run_id}", return_state=True)
    assert state.is_failed()
    assert _cli_message(bad) in state.message
