"""What a person reads about a run: names, source, one-line failure causes, warnings."""

import mlflow
from mlflow import MlflowClient

from tasks.ops.run_notes import (
    failure_line,
    note_failure,
    pipeline_run_name,
    source_tags,
    warnings_line,
    warnings_markdown,
)
from tasks.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, configure_tracking


def test_pipeline_runs_of_one_recipe_get_names_that_tell_them_apart(tiny_recipe):
    name = pipeline_run_name(tiny_recipe, now=0)
    assert name.startswith("tiny seed 0 01-01 00:00 ") and len(name.rsplit(" ", 1)[1]) == 4
    assert pipeline_run_name(tiny_recipe, now=0) != name  # the short id differs


def test_source_is_the_recipe_file_and_the_git_commit():
    tags = source_tags("configs/tiny.yaml", ["name=x", "seed=2"])
    assert tags["mlflow.source.name"] == "configs/tiny.yaml" and tags["recipe.overrides"] == "name=x seed=2"
    assert len(tags["mlflow.source.git.commit"]) == 40  # the tests run from a git checkout


def test_a_failure_is_one_line_naming_the_stage():
    err = RuntimeError("training worker exited with code 1\nTraceback (most recent call last):\n  ...")
    assert failure_line(err, "sft") == "stage sft failed: RuntimeError: training worker exited with code 1"
    assert failure_line(KeyError()) == "KeyError"


def test_experiment_is_tagged_for_mlflows_training_view_and_a_failed_parent_says_why(tiny_recipe):
    exp = configure_tracking(tiny_recipe.tracking)
    client = MlflowClient()
    assert client.get_experiment(exp).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    client.set_experiment_tag(exp, EXPERIMENT_KIND_TAG, "genai_development")  # an existing experiment
    configure_tracking(tiny_recipe.tracking)
    assert client.get_experiment(exp).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND

    with mlflow.start_run() as parent:
        with mlflow.start_run(nested=True, tags={"stage": "grpo-stage-1"}):
            pass
    client.set_terminated(client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")[0].info.run_id,
                          "FAILED")
    err = ValueError("bad rows\nmore")
    line = note_failure(parent.info.run_id, err)
    tags = client.get_run(parent.info.run_id).data.tags
    assert line == tags["error"] == "stage grpo-stage-1 failed: ValueError: bad rows"
    assert tags["mlflow.note.content"].endswith(line) and err.__notes__ == [f"pipeline failed: {line}"]


def test_warnings_are_summarised_per_stage():
    trips = {"grpo-stage-1": [{"monitor": "zero_variance", "policy": "warn", "message": "m1"},
                              {"monitor": "truncation", "policy": "warn", "message": "m2"}]}
    assert warnings_line(trips) == "grpo-stage-1: zero_variance, truncation"
    assert "- **grpo-stage-1** truncation (warn): m2" in warnings_markdown(trips)
    assert warnings_markdown({})[-1] == "No monitor tripped in any stage."
