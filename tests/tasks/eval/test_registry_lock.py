import multiprocessing
import time

import mlflow
import pytest
from mlflow import MlflowClient

from tasks.eval.promote import current_champion, promote_if_better, register_model
from tasks.eval.registry_lock import SINCE_TAG, PromotionLockTimeout, lock_name, registry_lock
from tasks.tracking import configure_tracking

METRIC = "heldout/pass_at_1"


def _promote_at_once(recipe, name, version, value, barrier, out):
    configure_tracking(recipe.tracking)
    barrier.wait()
    out.put(promote_if_better(name, version, METRIC, value, margin=0.0, suite="A"))


def test_two_pipelines_promoting_at_once_are_compared_not_both_promoted(tiny_recipe, tiny_model_dir):
    """The race MLflow allows without a lock: both read "no champion yet" and both promote, and the
    later alias write wins whatever the scores. Under the lock the second compares against the first."""
    configure_tracking(tiny_recipe.tracking)
    name = "race"
    with mlflow.start_run():
        weaker, stronger = register_model(tiny_model_dir, name), register_model(tiny_model_dir, name)
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_promote_at_once, args=(tiny_recipe, name, v, x, barrier, out))
             for v, x in ((weaker, 0.40), (stronger, 0.60))]
    for p in procs:
        p.start()
    decisions = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    first, second = sorted(decisions, key=lambda d: d["champion_version"] is not None)
    assert first["reason"] == "no champion yet" and first["promoted"]
    assert second["champion_version"] == first["challenger_version"]   # compared against the first
    assert str(current_champion(name).version) == stronger
    assert lock_name(name) not in {m.name for m in MlflowClient().search_registered_models()}


def test_a_live_lock_fails_promotion_closed_and_names_the_way_out(tiny_recipe, tiny_model_dir):
    configure_tracking(tiny_recipe.tracking)
    name = "locked"
    with mlflow.start_run():
        v1 = register_model(tiny_model_dir, name)
    with registry_lock(name, holder="run-a"):
        with pytest.raises(PromotionLockTimeout, match=rf"delete the registered model '{name}.promotion-lock'"):
            with registry_lock(name, holder="run-b", timeout_s=1.0, poll_s=0.1):
                pass
    assert current_champion(name) is None
    assert promote_if_better(name, v1, METRIC, 0.4, margin=0.0)["promoted"]   # released: the next one proceeds


def test_a_lock_left_by_a_dead_holder_is_broken_when_stale(tiny_recipe, tiny_model_dir, caplog):
    configure_tracking(tiny_recipe.tracking)
    name = "dead-holder"
    with mlflow.start_run():
        v1 = register_model(tiny_model_dir, name)
    client = MlflowClient()
    client.create_registered_model(lock_name(name), tags={SINCE_TAG: f"{time.time() - 3600:.3f}",
                                                          "rlvr.lock.holder": "run-that-died"})
    decision = promote_if_better(name, v1, METRIC, 0.4, margin=0.0)
    assert decision["promoted"] and str(current_champion(name).version) == v1
    assert "held by run-that-died" in caplog.text and "breaking it" in caplog.text
    assert lock_name(name) not in {m.name for m in client.search_registered_models()}


def test_a_champion_promoted_during_evaluation_is_compared_by_its_own_score(tiny_recipe, tiny_model_dir):
    """The caller measured v1 (champion when it evaluated) at 0.30; v2 became champion meanwhile
    with 0.70 under the same suite: 0.50 is compared with 0.70, not with v1's 0.30."""
    configure_tracking(tiny_recipe.tracking)
    name = "moved"
    with mlflow.start_run():
        v1, v2, v3 = (register_model(tiny_model_dir, name) for _ in range(3))
    promote_if_better(name, v1, METRIC, 0.30, margin=0.0, suite="A")
    promote_if_better(name, v2, METRIC, 0.70, margin=0.0, suite="A")
    late = promote_if_better(name, v3, METRIC, 0.50, margin=0.0, suite="A", champion_value=0.30, champion_version=v1)
    assert not late["promoted"] and (late["champion_version"], late["champion_value"]) == (v2, 0.70)
    assert str(current_champion(name).version) == v2
