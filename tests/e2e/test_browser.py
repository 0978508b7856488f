"""What a user sees, in a real browser: `rlvr stack up`; in the Prefect UI open the pipeline
deployment (named after what it runs), run it from the short form (a base recipe plus overrides)
and see it Completed under a readable name, its stage subflows named after the stages, the
summary with the promotion decision (a first champion below its floor stays challenger) and the
health warnings, the automation that routes them; in the MLflow UI (the training view) see the
parent run with its source and its child runs with their metrics; a failed run says why in one
line in both UIs; compare it with the completed one (`rlvr compare` leaves its missing values
blank, and MLflow's compare view); a bad recipe from the form fails before any compute with
every problem `rlvr validate` finds; Ctrl-C leaves no process behind.

Headless Chromium from Debian's packages, driven by Playwright's Python API with
`executable_path` (no browser download). Screenshots: test-artifacts/browser/*.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import CONFIGS, REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

CHROMIUM = shutil.which("chromium")
SHOTS = REPO / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """`rlvr stack up` in the foreground, as a person starts it; the last test presses Ctrl-C."""
    tmp = tmp_path_factory.mktemp("stack")
    cmd = [sys.executable, "-m", "tasks.ops.cli", "stack", "up", "--recipe", str(CONFIGS / "tiny.yaml"),
           "--set", f"tracking.runs_dir={tmp / 'runs'}", "--state-dir", str(tmp / "state"),
           "--prefect-port", str(_free_port()), "--mlflow-port", str(_free_port())]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    deadline = time.monotonic() + 300
    while not any("rlvr stack is up" in line for line in lines):
        assert proc.poll() is None and time.monotonic() < deadline, "stack did not come up:\n" + "".join(lines)
        time.sleep(0.5)
    time.sleep(0.5)  # the URL lines follow the headline
    out = "".join(lines)
    urls = dict(re.findall(r"(Prefect UI|MLflow UI)\s+(http://127\.0\.0\.1:\d+)", out))
    state = json.loads((tmp / "state" / "stack.json").read_text())
    yield {"proc": proc, "lines": lines, "prefect": urls["Prefect UI"], "mlflow": urls["MLflow UI"],
           "runs": tmp / "runs", "id": state["id"]}
    if proc.poll() is None:  # a failed test left it running
        proc.send_signal(signal.SIGINT)
        proc.wait(120)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (`make e2e-deps` installs it)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A page that records console errors and failed requests; a failing test leaves a
    screenshot and that record in test-artifacts/browser/FAILED-<test>.*, so it explains itself."""
    page = browser.new_page(viewport={"width": 1440, "height": 960})
    page.set_default_timeout(90_000)  # a cold, loaded machine renders slowly
    problems: list[str] = []
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(f"console {m.type}: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.method} {r.url} {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.request.method} {r.url}"))
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        stem = SHOTS / f"FAILED-{request.node.name}"
        with contextlib.suppress(Exception):
            page.screenshot(path=f"{stem}.png", full_page=True)
        stem.with_suffix(".txt").write_text(f"url: {page.url}\n" + "\n".join(problems) + "\n")
    page.close()


def shot(page, name: str) -> None:
    page.wait_for_timeout(1200)  # let the single-page app finish rendering
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _client(stack):
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(f"{stack['prefect']}/api")


def _recipe_name(params: dict) -> str:
    """The recipe name a pipeline flow run was given: the typed recipe's, or a `name=` override of the base."""
    named = [o.split("=", 1)[1] for o in params.get("overrides") or [] if o.startswith("name=")]
    return (params.get("recipe") or {}).get("name") or (named[-1] if named else "tiny")


def _pipeline_runs(stack, recipe_name: str) -> list:
    """Flow runs of the pipeline deployment whose recipe has this name, any state (Scheduled too:
    a run created from the form stays Scheduled until the worker's next poll)."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with _client(stack) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["pipeline"])))
    return [r for r in runs if r.parent_task_run_id is None and _recipe_name(r.parameters) == recipe_name]


def _wait_for_new_run(stack, recipe_name: str, before: set, timeout_s: float = 240):
    deadline = time.monotonic() + timeout_s
    while not (new := [r for r in _pipeline_runs(stack, recipe_name) if r.id not in before]):
        assert time.monotonic() < deadline, f"no {recipe_name!r} flow run was created within {timeout_s} s"
        time.sleep(2)
    return new[0]


def _wait_for_final_state(stack, run_id, timeout_s: float = 900):
    """The worker picks the run up (Scheduled -> Pending -> Running) and the pipeline finishes."""
    deadline = time.monotonic() + timeout_s
    while True:
        with _client(stack) as client:
            state = client.read_flow_run(run_id).state
        if state.is_final():
            return state
        assert time.monotonic() < deadline, f"flow run {run_id} still {state.name} after {timeout_s} s"
        time.sleep(3)


ALERTS_URL = "https://hooks.slack.com/services/T0000/B0000/rlvr-test"  # unreachable here: nothing is sent


def _alerts_block(stack) -> None:
    """The Slack webhook block a person would create in the UI (Blocks); nothing listens at its URL."""
    from prefect.blocks.notifications import SlackWebhook
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: f"{stack['prefect']}/api"}):  # _sync: Playwright's loop runs here
        SlackWebhook(url=ALERTS_URL).save("rlvr-alerts", overwrite=True, _sync=True)


def _open_deployment(stack, page) -> None:
    page.goto(f"{stack['prefect']}/deployments")
    page.locator("tr", has_text="pipeline").get_by_role("link", name="train-and-promote").click()


#: What a person types into the short form besides the stack's own runs_dir: a name, where monitor
#: warnings go, and a first-champion floor the tiny model cannot clear.
SHORT_FORM = ["name=tiny-ui", "tracking.warnings_notify=slack-webhook/rlvr-alerts",
              "evaluation.first_champion.min_value=0.99"]


def test_pipeline_runs_from_the_short_form(stack, page):
    _alerts_block(stack)
    _open_deployment(stack, page)
    run_button = page.get_by_role("button", name="Run", exact=True)
    run_button.wait_for()
    page.get_by_text(re.compile("only on Monday")).wait_for()  # the weekly retraining schedule (off)
    shot(page, "01-pipeline-deployment")

    run_button.click()
    page.get_by_text("Custom run").click()
    page.get_by_text(re.compile("settings applied to the recipe")).first.wait_for()  # overrides' help text
    shot(page, "02-short-form")

    # The short form's own fields: the base stays, each override is one more item of the list.
    base = page.locator("textarea").first
    base.fill("tiny")
    for value in SHORT_FORM:
        page.get_by_role("button", name="Add item").click()
        page.locator("textarea").last.fill(value)
    page.locator("textarea").last.press("Tab")
    shot(page, "03-short-form-filled")
    before = {r.id for r in _pipeline_runs(stack, "tiny-ui")}
    submit = page.get_by_role("button", name="Submit")
    expect(submit).to_be_enabled()
    submit.click()
    # What the form created, read from the API. A click a loaded machine's page swallowed leaves
    # the form up with no new run: click again, as a person would.
    for _ in range(3):
        with contextlib.suppress(AssertionError):
            flow_run = _wait_for_new_run(stack, "tiny-ui", before, timeout_s=60)
            break
        if submit.is_visible():  # a loaded server can answer 503 (its database busy): its toast covers the page
            submit.click(force=True)
    else:
        flow_run = _wait_for_new_run(stack, "tiny-ui", before, timeout_s=180)
    page.goto(f"{stack['prefect']}/runs/flow-run/{flow_run.id}")

    state = _wait_for_final_state(stack, flow_run.id)
    page.reload()
    page.get_by_text("Completed").first.wait_for()
    shot(page, "04-flow-run-completed")
    assert state.name == "Completed", "".join(stack["lines"][-40:])
    with _client(stack) as client:
        run = client.read_flow_run(flow_run.id)
        subflows = {r.name for r in client.read_flow_runs() if r.parent_task_run_id and r.name.endswith("-tiny-ui")}
    assert re.fullmatch(r"tiny-ui seed 0 \d\d-\d\d \d\d:\d\d [0-9a-f]{4}", run.name), run.name
    assert {"curate-tiny-ui", "sft-tiny-ui", "grpo-tiny-ui", "evaluate-tiny-ui"} <= subflows

    page.goto(f"{stack['prefect']}/runs")  # every run's name says what it is
    page.get_by_text("grpo-tiny-ui").first.wait_for()
    shot(page, "05-runs-named-after-recipe-and-stage")

    page.goto(f"{stack['prefect']}/runs/flow-run/{flow_run.id}")
    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text("tiny-ui-pipeline").first.click()  # the pipeline summary, with its MLflow link
    page.get_by_text("MLflow parent run").wait_for()
    page.get_by_text(re.compile("below evaluation.first_champion.min_value 0.99 -> challenger")).wait_for()
    page.get_by_text(re.compile("^Health")).first.wait_for()
    shot(page, "06-pipeline-summary-promotion-and-health")
    page.goto(f"{stack['prefect']}/artifacts")
    for key in ("tiny-ui-sft-progress", "tiny-ui-grpo-stage-1-progress", "tiny-ui-evaluation"):
        page.get_by_text(key, exact=True).wait_for()
    assert page.get_by_text(re.compile(r"sft: step 4/4 \(100%\)")).count() == 1
    shot(page, "07-artifacts-with-training-progress")

    # The run's warnings go where the recipe asked: an automation a person can re-route.
    page.goto(f"{stack['prefect']}/automations")
    page.get_by_text("rlvr tiny: monitor warnings").first.wait_for()
    shot(page, "08-warnings-automation")


def _parent(stack, recipe_name: str):
    """The newest pipeline (parent) run of this recipe, read from the store the MLflow UI serves."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{stack['runs'] / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    found = client.search_runs([exp.experiment_id], f"tags.stage = 'pipeline' and params.`recipe.name` = '{recipe_name}'",
                               order_by=["attributes.start_time DESC"])
    return client, exp, found[0]


#: MLflow 3's UI layout for model training (it starts in its GenAI layout; the pipeline's links ask for this).
ML = "?workflowType=machine_learning"


def _close_assistant(page) -> None:
    close = page.get_by_role("button", name="Close")
    with contextlib.suppress(Exception):
        close.first.click(timeout=5000)  # the assistant side panel, where MLflow opens it


def test_mlflow_opens_the_training_view_with_readable_names_and_sources(stack, page):
    from tasks.ops.run_notes import WARNINGS_TAG
    from tasks.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
    from tasks.train.monitors import read_trips

    client, exp, parent = _parent(stack, "tiny-ui")
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    tags = parent.data.tags
    assert parent.info.run_name.startswith("tiny-ui seed 0 ")
    assert tags["mlflow.source.name"] == "configs/tiny.yaml" and "name=tiny-ui" in tags["recipe.overrides"]
    assert len(tags["mlflow.source.git.commit"]) == 40
    result = Path(client.download_artifacts(tags["stage_run.grpo-stage-1"], "result.json"))
    trips = read_trips(json.loads(result.read_text())["path"])
    if trips:  # the tiny model's groups mostly score alike and hit the length limit: the monitors trip
        assert tags[WARNINGS_TAG].startswith("grpo-stage-1: ")
        assert "grpo.stages.0.max_completion_length" in json.dumps(trips) or \
            all(t["monitor"] != "truncation" for t in trips)
    children = {r.info.run_name: r.info for r in client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")}
    assert {"data", "base", "sft", "grpo-stage-1", "eval-grpo-stage-1"} <= set(children)
    assert client.get_run(children["sft"].run_id).data.tags["mlflow.source.name"] == "configs/tiny.yaml"

    page.goto(f"{stack['mlflow']}/#/experiments/{exp.experiment_id}/runs{ML}")
    _close_assistant(page)
    name_cell = page.locator("[role=gridcell]", has_text=parent.info.run_name).first
    name_cell.locator("button").first.click()  # expand the parent: its child runs appear beneath it
    page.get_by_text("eval-grpo-stage-1").first.wait_for()
    shot(page, "09-mlflow-training-view-parent-and-children")

    page.goto(f"{stack['mlflow']}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}{ML}")
    _close_assistant(page)
    page.get_by_text("grpo-stage-1/heldout/pass_at_1").first.wait_for()
    shot(page, "10-mlflow-parent-overview")

    grpo = children["grpo-stage-1"].run_id
    page.goto(f"{stack['mlflow']}/#/experiments/{exp.experiment_id}/runs/{grpo}{ML}")
    page.get_by_placeholder("Search metrics").fill("reward")  # TRL's reward metrics, streamed while training
    metric = page.get_by_text("rewards/math_answer_reward/mean").first
    metric.wait_for()
    metric.scroll_into_view_if_needed()
    shot(page, "11-mlflow-grpo-child-metrics")


#: A reward the curated math rows cannot feed (they have no tests): the pipeline fails after curation.
BROKEN = ["name=tiny-broken", "grpo.stages.0.rewards.0.name=code_reward"]


def test_a_failed_run_says_why_and_compares_with_blanks(stack, page):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with _client(stack) as client:
        (deployment,) = client.read_deployments(deployment_filter=DeploymentFilter(
            name=DeploymentFilterName(any_=["train-and-promote"])))
        broken = client.create_flow_run_from_deployment(deployment.id, parameters={
            "base": "configs/tiny.yaml", "overrides": [f"tracking.runs_dir={stack['runs']}", *BROKEN]})
    state = _wait_for_final_state(stack, broken.id)
    assert state.name == "Failed", state.message
    mlflow_client, exp, parent = _parent(stack, "tiny-broken")
    line = parent.data.tags["error"]
    assert line.startswith("ValueError: the curated rows do not fit the GRPO rewards") and "\n" not in line
    assert parent.info.status == "FAILED" and parent.data.tags["mlflow.note.content"].endswith(line)
    assert state.message.splitlines()[-1] == line  # the last line of the Prefect flow run's message
    page.goto(f"{stack['prefect']}/runs/flow-run/{broken.id}")
    page.get_by_text("Failed").first.wait_for()
    page.get_by_text("Details", exact=True).click()  # the state message, its last line the cause
    page.get_by_text("See More").first.click()
    page.get_by_text(line[:60]).first.wait_for()
    shot(page, "12-prefect-failed-run-says-why")
    page.goto(f"{stack['mlflow']}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}{ML}")
    _close_assistant(page)
    page.get_by_text(line[:60]).first.wait_for()  # the run's description
    shot(page, "13-mlflow-failed-parent-says-why")

    out = SHOTS / "compare.png"
    result = subprocess.run([sys.executable, "-m", "tasks.ops.cli", "compare", "--recipe", str(CONFIGS / "tiny.yaml"),
                             "--set", f"tracking.runs_dir={stack['runs']}", "--last", "2", "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "RLVR_MLFLOW_UI": stack["mlflow"]})
    assert result.returncode == 0, result.stderr
    (SHOTS / "compare.txt").write_text(result.stdout)
    assert "recipe.name" in result.stdout and "tiny-ui seed 0" in result.stdout and "(FAILED)" in result.stdout
    assert out.stat().st_size > 10_000
    url = re.search(r"MLflow compare view: (\S+)", result.stdout).group(1)
    page.goto(url)
    page.get_by_text("Comparing 2 Runs").first.wait_for()
    _close_assistant(page)
    page.get_by_text("Show diff only").first.click()  # parameters: only what differs, as `rlvr compare` prints
    page.get_by_text("grpo-stage-1/heldout/pass_at_1").last.scroll_into_view_if_needed()
    shot(page, "14-mlflow-compare-view")


#: Two problems the form cannot see, which `rlvr validate` refuses: a misspelled field inside a
#: stage's free-form `trainer:` map, and a source file that does not exist.
TYPO = "grpo.stages.0.trainer.learning_rat: not a field of TRL GRPOConfig; did you mean 'learning_rate'?"


def test_a_bad_recipe_from_the_form_fails_first_with_every_problem(stack, page):
    """The worker's flow run checks the recipe before anything else: it ends Failed with the
    CLI's message listing both problems, and nothing is written to its runs dir."""
    runs_dir, missing = stack["runs"].parent / "bad-runs", stack["runs"].parent / "missing.jsonl"
    _open_deployment(stack, page)
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    page.get_by_text(re.compile("settings applied to the recipe")).first.wait_for()
    page.locator("textarea").first.fill("tiny")
    for value in ["name=tiny-bad", f"tracking.runs_dir={runs_dir}", "grpo.stages.0.trainer.learning_rat=1e-5",
                  f"data.sources=[{{kind: jsonl, name: {missing}}}]"]:
        page.get_by_role("button", name="Add item").click()
        page.locator("textarea").last.fill(value)
    page.locator("textarea").last.press("Tab")
    before = {r.id for r in _pipeline_runs(stack, "tiny-bad")}
    submit = page.get_by_role("button", name="Submit")
    expect(submit).to_be_enabled()  # the form accepts it: only the full check can refuse it
    submit.click()
    flow_run = _wait_for_new_run(stack, "tiny-bad", before, timeout_s=180)
    state = _wait_for_final_state(stack, flow_run.id, timeout_s=300)
    assert state.name == "Failed", state.message
    assert TYPO in state.message and f"data.sources.0.name: file not found: {missing}" in state.message, state.message
    page.goto(f"{stack['prefect']}/runs/flow-run/{flow_run.id}")
    page.get_by_text("Failed").first.wait_for()
    page.get_by_text(TYPO).first.wait_for()  # the run's log shows the CLI's message
    shot(page, "15-bad-recipe-failed-with-every-problem")
    assert not runs_dir.exists()


def test_ctrl_c_stops_the_whole_stack(stack):
    from tasks.ops.stack import stack_processes

    assert stack_processes(stack["id"]), "the stack's processes should be running before Ctrl-C"
    stack["proc"].send_signal(signal.SIGINT)
    assert stack["proc"].wait(120) == 0
    assert "stopped." in "".join(stack["lines"])
    assert stack_processes(stack["id"]) == []
