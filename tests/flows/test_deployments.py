"""deployments/prefect.yaml: every deployment loads and takes the typed recipe, the retraining
schedule is valid and off, the training-completion trigger fires evaluation, `prefect deploy`
registers all of it on a real server, and the Kubernetes GPU job template is a valid work pool."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import yaml
from prefect import flow

from tasks.recipe import Recipe
from tasks.stages import StageOutput
from tests.conftest import CONFIGS, REPO

PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
GPU_TEMPLATE = REPO / "deployments" / "k8s" / "gpu-job-template.yaml"
STAGE_FLOWS = {"pipeline", "curate", "sft", "grpo", "evaluate"}


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(PREFECT_YAML.read_text())


def _flow(entrypoint: str):
    from prefect.flows import load_flow_from_entrypoint

    return load_flow_from_entrypoint(str(REPO / entrypoint))


def test_every_flow_is_deployed_on_the_local_process_pool(spec):
    names = {_flow(d["entrypoint"]).name: d for d in spec["deployments"]}
    assert set(names) == STAGE_FLOWS | {"evaluate-training"}
    assert {d["work_pool"]["name"] for d in spec["deployments"]} == {"rlvr-local"}
    env = spec["deployments"][0]["work_pool"]["job_variables"]["env"]
    assert env["HF_HUB_OFFLINE"] == "1" and env["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] == "true"


def test_every_deployment_is_named_after_what_it_runs(spec):
    names = {_flow(d["entrypoint"]).name: d["name"] for d in spec["deployments"]}
    assert names == {"pipeline": "train-and-promote", "curate": "curate-data", "sft": "cold-start-sft",
                     "grpo": "grpo-stages", "evaluate": "evaluate-checkpoints",
                     "evaluate-training": "on-training-completed"}


def test_stage_deployments_take_a_base_recipe_with_overrides_or_the_typed_recipe(spec, tiny_recipe):
    from prefect.exceptions import ParameterTypeError
    from prefect.utilities.callables import parameter_schema

    from tasks.recipe import Recipe

    for d in spec["deployments"]:
        flow = _flow(d["entrypoint"])
        if flow.name not in STAGE_FLOWS:
            continue
        schema = parameter_schema(flow).model_dump()
        props = schema["properties"]
        assert props["base"]["default"] == "default" and props["overrides"]["anyOf"][0]["type"] == "array"
        assert "key.path=value" in props["overrides"]["description"]  # the form's help text
        assert props["recipe"]["default"] is None
        assert any(a.get("$ref", "").endswith("/Recipe") for a in props["recipe"]["anyOf"])
        assert {"data", "sft", "grpo", "evaluation", "tracking"} <= set(schema["definitions"]["Recipe"]["properties"])
        params = flow.validate_parameters({**d.get("parameters", {}), "recipe": tiny_recipe.model_dump(mode="json")})
        assert isinstance(params["recipe"], Recipe) and params["recipe"] == tiny_recipe
        with pytest.raises(ParameterTypeError, match="learning_rat"):  # a typo in the form is refused
            flow.validate_parameters({"recipe": {"sft": {"enabled": True, "learning_rat": 1}}})


def test_retraining_schedule_is_weekly_cron_and_off_by_default(spec):
    from prefect.schedules import Cron

    scheduled = [d for d in spec["deployments"] if d.get("schedules")]
    assert [d["entrypoint"] for d in scheduled] == ["flows/pipeline.py:pipeline_flow"]
    (s,) = scheduled[0]["schedules"]
    Cron(s["cron"], timezone=s["timezone"])  # raises on a bad cron string
    assert s["active"] is False
    with pytest.raises(ValueError):
        Cron("0 3 * *", timezone="UTC")


def test_evaluation_trigger_listens_for_completed_training_deployment_runs(spec):
    from prefect.events import DeploymentEventTrigger

    (d,) = [d for d in spec["deployments"] if d.get("triggers")]
    assert _flow(d["entrypoint"]).name == "evaluate-training"
    (t,) = d["triggers"]
    trigger = DeploymentEventTrigger(**{k: v for k, v in t.items() if k != "type"})
    assert trigger.expect == {"prefect.flow-run.Completed"}
    flow_spec, deployment_spec = trigger.match_related
    assert set(flow_spec["prefect.resource.name"]) == {"sft", "grpo"}
    assert deployment_spec["prefect.resource.role"] == ["deployment"]  # not the pipeline's own subflows
    assert trigger.parameters == {"training_run": "{{ event.resource.id }}"}


@pytest.mark.integration
def test_prefect_deploy_registers_everything_and_a_completed_training_run_fires_evaluation(prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Completed

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    for cmd in (["work-pool", "create", "rlvr-local", "--type", "process", "--overwrite"],
                ["--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"]):
        done = subprocess.run([sys.executable, "-m", "prefect", *cmd], cwd=REPO, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr

    with get_client(sync_client=True) as client:
        pipeline = client.read_deployment_by_name("pipeline/train-and-promote")
        (schedule,) = pipeline.schedules
        assert not schedule.active and schedule.schedule.cron == "0 3 * * 1"
        assert "Recipe" in pipeline.parameter_openapi_schema["definitions"]
        assert pipeline.pull_steps[0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(REPO)
        evaluate = client.read_deployment_by_name("evaluate-training/on-training-completed")

        # A run of the sft deployment reaches Completed (no worker: we set the state, as the
        # engine would); the automation must then schedule the evaluation with that run's id.
        sft = client.read_deployment_by_name("sft/cold-start-sft")
        run = client.create_flow_run_from_deployment(sft.id)
        client.set_flow_run_state(run.id, Completed(), force=True)
        deadline = time.monotonic() + 60
        while not (triggered := client.read_flow_runs(limit=5, deployment_filter=_by_id(evaluate.id))):
            assert time.monotonic() < deadline, "the trigger did not schedule evaluate-training"
            time.sleep(1)
    assert triggered[0].parameters == {"training_run": f"prefect.flow-run.{run.id}"}


def _by_id(deployment_id):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))


MADE = [StageOutput(stage="base", key="k1", path="/x/base"), StageOutput(stage="sft", key="k2", path="/x/sft")]


@flow(name="sft", persist_result=True)
def kept_training(recipe: Recipe) -> list[StageOutput]:
    return MADE


@flow(name="sft", persist_result=False)
def forgotten_training(recipe: Recipe) -> list[StageOutput]:
    return MADE


@pytest.mark.integration
def test_evaluate_training_reads_the_outputs_a_training_run_returned(prefect_server, tiny_recipe):
    from flows.evaluate_training import training_outputs

    state = kept_training(tiny_recipe, return_state=True)
    recipe, data, outputs = training_outputs(f"prefect.flow-run.{state.state_details.flow_run_id}")
    assert recipe == tiny_recipe and data is None and outputs == MADE

    state = forgotten_training(tiny_recipe, return_state=True)
    with pytest.raises(ValueError, match="PREFECT_RESULTS_PERSIST_BY_DEFAULT"):
        training_outputs(str(state.state_details.flow_run_id))


# ---------------------------------------------------------------- Kubernetes GPU work pool
@pytest.fixture(scope="module")
def gpu_template() -> dict:
    return yaml.safe_load(GPU_TEMPLATE.read_text())


def _container(template: dict) -> dict:
    (container,) = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"]
    return container


def test_gpu_job_template_requests_gpus_and_runs_offline(gpu_template):
    variables = gpu_template["variables"]["properties"]
    container = _container(gpu_template)
    assert container["image"] == "{{ image }}" and container["args"] == "{{ command }}"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpus }}"
    assert variables["gpus"]["default"] >= 1 and variables["image"]["type"] == "string"
    env = variables["env"]["default"]
    assert env["HF_HUB_OFFLINE"] == "1" and env["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] == "true"
    pod = gpu_template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod["tolerations"])
    # every {{ placeholder }} is a declared variable, so the worker can fill it in
    text = yaml.safe_dump(gpu_template["job_configuration"])
    assert set(re.findall(r"{{\s*(\w+)\s*}}", text)) <= set(variables)


@pytest.mark.integration
def test_gpu_job_template_is_accepted_as_a_kubernetes_work_pool(prefect_server, gpu_template):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        pool = client.create_work_pool(WorkPoolCreate(name="rlvr-gpu-test", type="kubernetes",
                                                      base_job_template=gpu_template), overwrite=True)
    assert pool.base_job_template["variables"]["properties"]["gpus"]["default"] >= 1


def test_docs_explain_the_operations(spec):
    docs = (REPO / "docs" / "operations.md").read_text()
    for needed in ("rlvr stack up", "rlvr stack down", "rlvr compare", "gpu-job-template.yaml",
                   spec["deployments"][0]["schedules"][0]["cron"], "on-training-completed", "accelerate"):
        assert needed in docs, needed


def test_every_flow_defaults_to_the_embedded_default_recipe(spec):
    """One default: the Prefect form (and `prefect deploy --all`) start from configs/default.yaml."""
    import inspect

    from prefect.utilities.callables import parameter_schema

    from tasks.recipe_checks import form_recipe, load_recipe

    flows = {_flow(d["entrypoint"]) for d in spec["deployments"]}
    with_recipe = [f for f in flows if "recipe" in inspect.signature(f.fn).parameters]
    assert {f.name for f in with_recipe} >= STAGE_FLOWS
    for f in with_recipe:
        assert parameter_schema(f).model_dump()["properties"]["base"]["default"] == "default", f.name
    recipe, source = form_recipe(None, "default", [])
    assert recipe == load_recipe(CONFIGS / "default.yaml") and source == "configs/default.yaml"
