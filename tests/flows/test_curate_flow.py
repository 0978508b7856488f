"""Real data through the flow users run: GSM8K train curated and decontaminated against GSM8K test."""

import json

import pytest
from mlflow import MlflowClient

from flows.curate import curate_flow
from tasks.data.curate import read_split
from tasks.recipe_checks import load_recipe
from tests.conftest import CONFIGS, GSM8K

pytestmark = pytest.mark.integration  # a Prefect test server; no model

# GSM8K train problems that are near-identical to test problems (numbers or names changed):
# the only train/test pairs with word 5-shingle Jaccard >= 0.3.
NEAR_COPIES_OF_TEST = {"jsonl0-20": "jsonl0-632", "jsonl0-1314": "jsonl0-602", "jsonl0-5162": "jsonl0-602"}


@pytest.fixture(scope="module")
def gsm8k_run(prefect_server, tmp_path_factory):
    runs = tmp_path_factory.mktemp("curate") / "runs"
    recipe = load_recipe(CONFIGS / "tiny.yaml", [
        f"tracking.runs_dir={runs}",
        f"data.sources=[{{kind: jsonl, name: {GSM8K / 'train.jsonl'}, answer_format: gsm8k}}]",
        f"data.decontamination.benchmarks=[{GSM8K / 'test.jsonl'}]",
        "data.eval_size=200", "data.sft_size=1000"])
    return recipe, curate_flow(recipe)


def test_gsm8k_train_is_decontaminated_against_test(gsm8k_run):
    _, out = gsm8k_run
    m = out.metrics
    quarantined = {r["id"]: r for r in read_split(out.path, "quarantine")}
    for train_id, test_id in NEAR_COPIES_OF_TEST.items():
        assert quarantined[train_id]["reason"].startswith("contaminated:")
        assert f"gsm8k/test row {test_id}" in quarantined[train_id]["reason"]
    # open-r1's rule (any shared word 8-gram) also catches shared stock phrasing, e.g.
    # "what is the sum of the ages of": 70 train rows in all, 3 of them near copies.
    assert m["decontamination/gsm8k/test/hits"] == 70
    assert 0 < m["decontamination/heldout/hits"] < 20
    assert m["quarantine/contaminated"] == m["decontamination/gsm8k/test/hits"] + m["decontamination/heldout/hits"]


def test_every_row_is_accounted_for_with_a_reason(gsm8k_run):
    _, out = gsm8k_run
    m = out.metrics
    splits = {s: read_split(out.path, s) for s in ("eval", "sft", "grpo", "quarantine")}
    assert m["rows/input"] == 7473 == sum(len(rows) for rows in splits.values())
    assert {s: len(rows) for s, rows in splits.items()} == {
        "eval": 200, "sft": 1000, "grpo": m["rows/grpo"], "quarantine": m["rows/quarantined"]}
    assert all(r["reason"].strip() for r in splits["quarantine"])
    assert sum(v for k, v in m.items() if k.startswith("quarantine/")) == m["rows/quarantined"]
    ids = [r["id"] for rows in splits.values() for r in rows]
    assert len(ids) == len(set(ids))
    # every cold-start trace is GSM8K's own solution in the template, accepted by the verifier
    assert all(r["completion"].endswith(f"</think>\n<answer>{r['answer']}</answer>") for r in splits["sft"])


def test_counts_reach_mlflow_and_the_prefect_artifacts(gsm8k_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    recipe, out = gsm8k_run
    run = MlflowClient().get_run(out.run_id)
    assert run.data.metrics["quarantine/contaminated"] == out.metrics["quarantine/contaminated"]
    assert run.data.metrics["decontamination/gsm8k/test/hits"] == 70
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"grpo", "sft", "eval"}
    with get_client(sync_client=True) as client:
        arts = {a.key: a for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=f"{recipe.name}-data")))}
    reasons = json.loads(arts["tiny-data-quarantine"].data)
    assert {"name": "contaminated", "rows": int(out.metrics["quarantine/contaminated"])} in reasons
    assert {"name": "gsm8k/test", "rows": 70} in json.loads(arts["tiny-data-decontamination"].data)
    assert "quarantine/contaminated" in arts["tiny-data"].data


def test_unchanged_inputs_are_not_reprocessed(gsm8k_run):
    recipe, out = gsm8k_run
    again = curate_flow(recipe)
    assert again.cached and again.path == out.path
