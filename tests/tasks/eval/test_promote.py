import json

import mlflow
import pytest
from mlflow import MlflowClient

from tasks.eval.promote import (
    champion_score,
    checkpoint_from_model_uri,
    current_champion,
    promote_if_better,
    record_decision,
    register_model,
)
from tasks.tracking import configure_tracking

METRIC = "heldout/pass_at_1"


def test_champion_moves_only_when_beaten_by_margin_and_the_decision_is_recorded(tiny_recipe, tiny_model_dir):
    configure_tracking(tiny_recipe.tracking)
    name = "promote-test"
    assert current_champion(name) is None
    with mlflow.start_run() as run:
        v1, v2, v3, v4 = (register_model(tiny_model_dir, name) for _ in range(4))
        first = promote_if_better(name, v1, METRIC, 0.40, margin=0.02, suite="A")
        worse = promote_if_better(name, v2, METRIC, 0.41, margin=0.02, suite="A")   # within the margin
        record_decision(worse)
    client = MlflowClient()
    assert first["promoted"] and first["reason"] == "no champion yet"
    # the challenger did not win: the champion stays, the decision and its numbers are kept
    assert not worse["promoted"] and worse["champion_after"] == v1
    assert str(client.get_model_version_by_alias(name, "champion").version) == v1
    assert str(client.get_model_version_by_alias(name, "challenger").version) == v2
    tags = client.get_model_version(name, v2).tags
    assert tags["promotion"] == "challenger" and tags[f"metric.{METRIC}"] == "0.41" and tags["eval.suite"] == "A"
    assert (tags["promotion.champion_version"], tags["promotion.champion_value"], tags["promotion.margin"]) == \
        (v1, "0.4", "0.02")
    assert tags["promotion.reason"] == "0.4100 <= 0.4000 + margin 0.02"
    logged = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="promotion.json")
    assert json.loads(open(logged).read()) == worse
    run_tags = client.get_run(run.info.run_id).data.tags
    assert run_tags["promotion.promoted"] == "False" and run_tags["promotion.champion_version"] == v1

    # a score from other evaluation settings is not compared: the champion must be re-evaluated
    assert champion_score(current_champion(name), METRIC, "B") is None
    unknown = promote_if_better(name, v3, METRIC, 0.9, margin=0.02, suite="B")   # fails closed
    assert not unknown["promoted"] and unknown["champion_after"] == v1
    assert "no heldout/pass_at_1 score from this evaluation suite (B)" in unknown["reason"]
    better = promote_if_better(name, v4, METRIC, 0.50, margin=0.02, suite="B", champion_value=0.30)
    assert better["promoted"] and better["champion_value"] == 0.30
    assert str(client.get_model_version_by_alias(name, "champion").version) == v4
    assert champion_score(current_champion(name), METRIC, "B") == 0.50

    ckpt = checkpoint_from_model_uri(f"models:/{name}@champion", tiny_recipe)
    assert ckpt.stage == f"{name}-v{v4}"
    from tasks.modeling import load_model
    model, tok = load_model(f"{ckpt.path}/model")
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    with pytest.raises(ValueError, match="has alias 'nope'"):
        checkpoint_from_model_uri(f"models:/{name}@nope", tiny_recipe)


def test_a_registry_error_fails_promotion_and_leaves_the_champion(tiny_recipe, tiny_model_dir):
    """A registry that cannot answer is not "no champion yet": nothing is promoted."""
    import sqlite3
    from pathlib import Path

    from tasks.eval.promote import RegistryError

    configure_tracking(tiny_recipe.tracking)
    name = "registry-fault"
    with mlflow.start_run():
        v1, v2 = register_model(tiny_model_dir, name), register_model(tiny_model_dir, name)
        promote_if_better(name, v1, METRIC, 0.40, margin=0.0, suite="A")
    db = Path(tiny_recipe.tracking.runs_dir) / "mlflow.db"
    with sqlite3.connect(db) as con:  # a real fault of the store: the alias table is unreadable
        con.execute("ALTER TABLE registered_model_aliases RENAME TO aliases_away")
    # the first registry call that meets the fault is the promotion lock's
    with pytest.raises(RegistryError, match=rf"model registry error taking the promotion lock '{name}.promotion-lock' "
                                            r"\(TEMPORARILY_UNAVAILABLE: .*no such table.*\); nothing was promoted"):
        promote_if_better(name, v2, METRIC, 0.99, margin=0.0, suite="A")
    with sqlite3.connect(db) as con:
        con.execute("ALTER TABLE aliases_away RENAME TO registered_model_aliases")
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(name, "champion").version) == v1
    assert "promotion" not in client.get_model_version(name, v2).tags
    assert current_champion("never-registered") is None


def test_a_first_champion_must_clear_the_floor_and_beat_the_base(tiny_recipe, tiny_model_dir):
    from tasks.eval.promote import first_champion_refusal
    from tasks.recipe.evaluation import FirstChampion

    tiny_recipe = tiny_recipe.model_copy(deep=True)
    tiny_recipe.evaluation.first_champion = FirstChampion()  # the default floor (configs/tiny.yaml turns it off)
    assert "does not beat the base model's 0.0000" in first_champion_refusal(tiny_recipe, 0.0, 0.0)  # the default
    assert first_champion_refusal(tiny_recipe, 0.1, 0.0) is None
    assert "not evaluated" in first_champion_refusal(tiny_recipe, 0.5, None)  # fails closed
    floor = tiny_recipe.model_copy(deep=True)
    floor.evaluation.first_champion.min_value, floor.evaluation.first_champion.beat_base_by = 0.3, None
    assert "below evaluation.first_champion.min_value 0.3" in first_champion_refusal(floor, 0.2, None)
    assert first_champion_refusal(floor, 0.3, None) is None

    configure_tracking(tiny_recipe.tracking)
    name = "first-champion-test"
    with mlflow.start_run():
        v1, v2 = (register_model(tiny_model_dir, name) for _ in range(2))
        refused = promote_if_better(name, v1, METRIC, 0.0, margin=0.0, first_refusal=first_champion_refusal(
            tiny_recipe, 0.0, 0.0))
        accepted = promote_if_better(name, v2, METRIC, 0.2, margin=0.0, first_refusal=None)
    assert not refused["promoted"] and refused["champion_after"] is None
    assert refused["reason"].startswith("no champion yet, but heldout/pass_at_1 0.0000 does not beat the base")
    assert MlflowClient().get_model_version(name, v1).tags["promotion"] == "challenger"
    assert accepted["promoted"] and str(current_champion(name).version) == v2
