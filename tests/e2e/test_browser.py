"""What a user sees, in a real browser: `rlvr stack up`; in the Prefect UI open the pipeline
deployment, fill its parameter form with the tiny recipe, run it and see it Completed with its
artifacts; in the MLflow UI see the parent run and its child runs with their metrics; compare
two pipeline runs (`rlvr compare` and MLflow's compare view); Ctrl-C leaves no process behind.

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
           "runs": tmp / "runs", "id": state["id"], "recipe": _tiny_recipe(tmp / "runs")}
    if proc.poll() is None:  # a failed test left it running
        proc.send_signal(signal.SIGINT)
        proc.wait(120)


def _tiny_recipe(runs_dir) -> dict:
    from tasks.recipe_checks import load_recipe

    return load_recipe(CONFIGS / "tiny.yaml", [f"tracking.runs_dir={runs_dir}"]).model_dump(mode="json")


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


def _pipeline_runs(stack, recipe_name: str) -> list:
    """Flow runs of the pipeline deployment whose recipe has this name, any state (Scheduled too:
    a run created from the form stays Scheduled until the worker's next poll)."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with _client(stack) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["pipeline"])))
    return [r for r in runs if (r.parameters.get("recipe") or {}).get("name", "tiny") == recipe_name]


def _wait_for_new_run(stack, recipe_name: str, before: set, timeout_s: float = 240):
    deadline = time.monotonic() + timeout_s
    while not (new := [r for r in _pipeline_runs(stack, recipe_name) if r.id not in before]):
        assert time.monotonic() < deadline, f"no {recipe_name!r} flow run was created within {timeout_s} s"
        time.sleep(2)
    return new[0]


def _wait_for_final_state(stack, run_id, timeout_s: float = 900) -> str:
    """The worker picks the run up (Scheduled -> Pending -> Running) and the pipeline finishes."""
    deadline = time.monotonic() + timeout_s
    while True:
        with _client(stack) as client:
            state = client.read_flow_run(run_id).state
        if state.is_final():
            return state.name
        assert time.monotonic() < deadline, f"flow run {run_id} still {state.name} after {timeout_s} s"
        time.sleep(3)


def test_pipeline_runs_from_the_deployment_form(stack, page):
    page.goto(f"{stack['prefect']}/deployments")
    row = page.locator("tr", has_text="pipeline")
    row.get_by_role("link", name="local").click()
    run_button = page.get_by_role("button", name="Run", exact=True)
    run_button.wait_for()
    page.get_by_text(re.compile("only on Monday")).wait_for()  # the weekly retraining schedule (off)
    shot(page, "01-pipeline-deployment")

    run_button.click()
    page.get_by_text("Custom run").click()
    page.get_by_text("A whole pipeline run").wait_for()  # the Recipe's docstring heads the typed form
    shot(page, "02-parameter-form")

    # The form's JSON view: paste the tiny recipe under a new name, as a user pastes a recipe.
    page.locator("button.p-button--outline").first.click()
    page.get_by_text("Use JSON input").click()
    recipe = {**stack["recipe"], "name": "tiny-ui"}
    editor = page.locator("textarea.p-code-input__textarea")
    text = json.dumps({"recipe": recipe}, indent=2)
    editor.fill(text)
    page.wait_for_function("t => document.querySelector('textarea.p-code-input__textarea').value === t", arg=text)
    editor.press("Control+Home")  # back to the top, where the name is
    shot(page, "03-parameters-json")
    before = {r.id for r in _pipeline_runs(stack, "tiny-ui")}
    submit = page.get_by_role("button", name="Submit")
    expect(submit).to_be_enabled()
    submit.click()
    # What the form created, read from the API. A click a loaded machine's page swallowed leaves
    # the form up with no new run: click again, as a person would.
    for _ in range(2):
        with contextlib.suppress(AssertionError):
            flow_run = _wait_for_new_run(stack, "tiny-ui", before, timeout_s=90)
            break
        if submit.is_visible():
            submit.click()
    else:
        flow_run = _wait_for_new_run(stack, "tiny-ui", before, timeout_s=180)
    page.goto(f"{stack['prefect']}/runs/flow-run/{flow_run.id}")

    state = _wait_for_final_state(stack, flow_run.id)
    page.reload()
    page.get_by_text("Completed").first.wait_for()
    shot(page, "04-flow-run-completed")
    assert state == "Completed", "".join(stack["lines"][-40:])

    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text("tiny-ui-pipeline").first.click()  # the pipeline summary, with its MLflow link
    page.get_by_text("MLflow parent run").wait_for()
    shot(page, "05-pipeline-summary-artifact")
    page.goto(f"{stack['prefect']}/artifacts")
    for key in ("tiny-ui-sft-progress", "tiny-ui-grpo-stage-1-progress", "tiny-ui-evaluation"):
        page.get_by_text(key, exact=True).wait_for()
    assert page.get_by_text(re.compile(r"sft: step 4/4 \(100%\)")).count() == 1
    shot(page, "06-artifacts-with-training-progress")


def _mlflow_runs(stack) -> dict:
    """Run name -> run, read straight from the store the stack's MLflow UI serves."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{stack['runs'] / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])} if exp else {}


def test_mlflow_ui_shows_parent_and_child_runs_with_metrics(stack, page):
    runs = _mlflow_runs(stack)
    parent = runs["pipeline-tiny-ui"].info
    children = {n: r.info for n, r in runs.items() if r.data.tags.get("mlflow.parentRunId") == parent.run_id}
    assert {"data", "base", "sft", "grpo-stage-1", "eval-grpo-stage-1"} <= set(children)
    exp = parent.experiment_id

    page.goto(f"{stack['mlflow']}/#/experiments/{exp}/runs")
    page.get_by_role("button", name="Close").click()  # the assistant side panel
    name_cell = page.locator("[role=gridcell]", has_text="pipeline-tiny-ui").first
    name_cell.locator("button").first.click()  # expand the parent: its child runs appear beneath it
    page.get_by_text("eval-grpo-stage-1").first.wait_for()
    shot(page, "07-mlflow-parent-and-children")

    page.goto(f"{stack['mlflow']}/#/experiments/{exp}/runs/{parent.run_id}")
    page.get_by_text("grpo-stage-1/heldout/pass_at_1").first.wait_for()
    shot(page, "08-mlflow-parent-metrics")

    grpo = children["grpo-stage-1"].run_id
    page.goto(f"{stack['mlflow']}/#/experiments/{exp}/runs/{grpo}")
    page.get_by_placeholder("Search metrics").fill("reward")  # TRL's reward metrics, streamed while training
    metric = page.get_by_text("rewards/math_answer_reward/mean").first
    metric.wait_for()
    metric.scroll_into_view_if_needed()
    shot(page, "09-mlflow-grpo-child-metrics")


def test_compare_two_pipeline_runs_in_cli_and_mlflow(stack, page):
    # A second run from the deployment's defaults (the tiny recipe): every stage is cached.
    page.goto(f"{stack['prefect']}/deployments")
    page.locator("tr", has_text="pipeline").get_by_role("link", name="local").click()
    page.get_by_role("button", name="Run", exact=True).click()
    before = {r.id for r in _pipeline_runs(stack, "tiny")}
    page.get_by_text("Quick run").click()
    quick = _wait_for_new_run(stack, "tiny", before)
    assert _wait_for_final_state(stack, quick.id) == "Completed", "".join(stack["lines"][-40:])
    assert _mlflow_runs(stack)["pipeline-tiny"].info.status == "FINISHED"

    out = SHOTS / "compare.png"
    result = subprocess.run([sys.executable, "-m", "tasks.ops.cli", "compare", "--recipe", str(CONFIGS / "tiny.yaml"),
                             "--set", f"tracking.runs_dir={stack['runs']}", "--last", "2", "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "RLVR_MLFLOW_UI": stack["mlflow"]})
    assert result.returncode == 0, result.stderr
    (SHOTS / "compare.txt").write_text(result.stdout)
    assert "recipe.name" in result.stdout and "tiny-ui" in result.stdout and out.stat().st_size > 10_000
    url = re.search(r"MLflow compare view: (\S+)", result.stdout).group(1)
    page.goto(url)
    page.get_by_text("Comparing 2 Runs").first.wait_for()
    page.get_by_role("button", name="Close").click()  # the assistant side panel
    page.get_by_text("Show diff only").first.click()  # parameters: only what differs, as `rlvr compare` prints
    page.get_by_text("grpo-stage-1/heldout/pass_at_1").last.scroll_into_view_if_needed()
    shot(page, "10-mlflow-compare-view")


def test_ctrl_c_stops_the_whole_stack(stack):
    from tasks.ops.stack import stack_processes

    assert stack_processes(stack["id"]), "the stack's processes should be running before Ctrl-C"
    stack["proc"].send_signal(signal.SIGINT)
    assert stack["proc"].wait(120) == 0
    assert "stopped." in "".join(stack["lines"])
    assert stack_processes(stack["id"]) == []
