"""A stage that fails leaves its MLflow run, and the pipeline's, FAILED with what they logged; the
cause in one line on the parent run and as the last line of the Prefect flow run's message."""

import json

import mlflow
import pytest

import flows.reporting
from flows.pipeline import pipeline_flow
from tasks.recipe_checks import form_recipe, load_recipe
from tests.conftest import CONFIGS

pytestmark = pytest.mark.integration


def test_failed_stage_marks_child_and_parent_failed(prefect_server, tmp_path, monkeypatch):
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps({"question": "Compute 1+2.", "answer": "3"}) + "\n")
    recipe = load_recipe(CONFIGS / "tiny.yaml", [
        f"tracking.runs_dir={tmp_path / 'runs'}",
        f"data.sources=[{{kind: jsonl, name: {src}}}]", "data.eval_size=1", "data.sft_size=0", "sft.enabled=false"])
    def gate_then_lose_the_source(*args):  # the source disappears between the recipe check and curation
        checked = form_recipe(*args)
        src.unlink(missing_ok=True)
        return checked

    monkeypatch.setattr(flows.reporting, "form_recipe", gate_then_lose_the_source)
    state = pipeline_flow(recipe, return_state=True)
    assert state.is_failed()
    with pytest.raises(FileNotFoundError):
        state.result()
    runs = mlflow.search_runs(experiment_names=[recipe.tracking.experiment])
    by_stage = {r["tags.stage"]: r for _, r in runs.iterrows()}
    assert by_stage["pipeline"]["status"] == "FAILED"
    assert by_stage["data"]["status"] == "FAILED"
    assert by_stage["data"]["tags.mlflow.parentRunId"] == by_stage["pipeline"]["run_id"]
    assert by_stage["data"]["params.data.eval_size"] == "1"  # what it logged before failing
    assert "FileNotFoundError" in by_stage["data"]["tags.error"]
    line = by_stage["pipeline"]["tags.error"]
    assert line.startswith("stage data failed: FileNotFoundError: ") and "\n" not in line
    assert by_stage["pipeline"]["tags.mlflow.note.content"].endswith(line)
    assert state.message.splitlines()[-1] == line
