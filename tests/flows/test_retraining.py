"""Retraining on new data, as the weekly schedule runs it: with unchanged source digests the
pipeline finishes from cache; rows appended to a source re-curate and retrain from the data
stage on (its cache key includes every local source file's digest)."""

from __future__ import annotations

import json

import pytest

from flows.pipeline import pipeline_flow
from tasks.data.synthetic import generate
from tasks.recipe_checks import load_recipe
from tests.conftest import CONFIGS

pytestmark = pytest.mark.integration

STAGES = {"data", "base", "sft", "grpo-stage-1", "eval-grpo-stage-1"}


def _write(path, rows, mode="w"):
    with path.open(mode) as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_unchanged_data_is_cached_and_new_rows_retrain_from_the_data_stage(prefect_server, tmp_path):
    rows = generate("arithmetic", n=100, seed=3, max_operands=2, max_value=9)
    source = tmp_path / "source.jsonl"
    _write(source, rows[:80])
    recipe = load_recipe(CONFIGS / "tiny.yaml", [f"tracking.runs_dir={tmp_path / 'runs'}",
                                                 f"data.sources=[{{kind: jsonl, name: '{source}'}}]",
                                                 "evaluation.checkpoints=[grpo]"])
    first = pipeline_flow(recipe)
    assert first["cached"] == []

    scheduled = pipeline_flow(recipe)  # nothing changed: every stage comes from the cache
    assert set(scheduled["cached"]) == STAGES
    assert scheduled["checkpoints"] == first["checkpoints"]

    _write(source, rows[80:], mode="a")  # new rows land in the source
    retrained = pipeline_flow(recipe)
    assert retrained["cached"] == []
    assert not set(retrained["checkpoints"].values()) & set(first["checkpoints"].values())
