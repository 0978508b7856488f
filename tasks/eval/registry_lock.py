"""One promotion at a time per registered model, across processes and machines.

    with registry_lock("rlvr-default", holder=run_id):
        champ = current_champion("rlvr-default")     # read, compare and move the alias
        ...                                          # with no other pipeline in between

MLflow has no compare-and-set on aliases: two pipelines that both read "no champion yet" would
both promote, and the second would overwrite the first without comparing against it. The mutex
is the registry's own uniqueness rule: creating a registered model whose name exists fails in
every store (sqlite, PostgreSQL behind a team server), so whoever creates `<name>.promotion-lock`
holds the lock until it deletes it. A file lock would not reach another machine, and the team
clients talk to the tracking server, never to its database.

A holder that died inside the critical section (seconds long) leaves its lock behind; a lock
older than `stale_after_s` is broken with a warning naming its holder. A live lock held longer
than `timeout_s` fails the promotion closed (nothing is promoted) with the way to clear it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".promotion-lock"
HOLDER_TAG, SINCE_TAG = "rlvr.lock.holder", "rlvr.lock.since"


class RegistryError(RuntimeError):
    """The model registry could not answer: nothing is promoted, the champion stays as it was."""


class PromotionLockTimeout(RuntimeError):
    """Another promotion of the same model held the lock too long: nothing was promoted."""


def lock_name(model: str) -> str:
    """The registered model whose existence means "a promotion of `model` is in progress"."""
    return model + LOCK_SUFFIX


def _try_create(client, name: str, holder: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name, tags={HOLDER_TAG: holder, SINCE_TAG: f"{time.time():.3f}"},
            description="held while a pipeline decides a promotion; deleted when it is done")
        return True
    except MlflowException as e:
        if e.error_code == "RESOURCE_ALREADY_EXISTS":
            return False
        raise RegistryError(f"model registry error taking the promotion lock {name!r} ({e.error_code}: "
                            f"{e.message.splitlines()[0]}); nothing was promoted") from None


def _break_if_stale(client, name: str, stale_after_s: float) -> None:
    """Delete the lock when its holder took it more than `stale_after_s` ago (a dead holder)."""
    from mlflow.exceptions import MlflowException

    try:
        lock = client.get_registered_model(name)
    except MlflowException:
        return  # released meanwhile
    age = time.time() - float(lock.tags.get(SINCE_TAG, 0))
    if age <= stale_after_s:
        return
    log.warning("promotion lock %s held by %s for %.0f s (its holder died mid-promotion): breaking it",
                name, lock.tags.get(HOLDER_TAG, "?"), age)
    # Read-then-delete: a waiter that re-took the lock within this one request's window would lose
    # it; that window opens only after a holder died mid-promotion.
    with contextlib.suppress(MlflowException):  # another waiter broke it first
        client.delete_registered_model(name)


@contextlib.contextmanager
def registry_lock(model: str, holder: str, *, timeout_s: float = 600.0, stale_after_s: float = 300.0,
                  poll_s: float = 0.5) -> Iterator[None]:
    """Hold the promotion lock of `model` (blocking up to `timeout_s`); `holder` is recorded on
    the lock (a run id) so a waiter can say whom it waits for."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client, name = MlflowClient(), lock_name(model)
    deadline, waited = time.monotonic() + timeout_s, False
    while not _try_create(client, name, holder):
        if not waited:
            log.info("another pipeline is promoting %s: waiting for lock %s", model, name)
            waited = True
        if time.monotonic() > deadline:
            raise PromotionLockTimeout(
                f"promotion lock {name!r} was held for over {timeout_s:.0f} s; nothing was promoted. If no "
                f"pipeline is promoting {model!r}, delete the registered model {name!r} and promote again")
        _break_if_stale(client, name, stale_after_s)
        time.sleep(poll_s)
    try:
        yield
    finally:
        try:
            client.delete_registered_model(name)
        except MlflowException as e:  # never hide the error that ended the critical section
            log.warning("could not release promotion lock %s (%s): it is broken as stale after %.0f s",
                        name, e.error_code, stale_after_s)
