"""Training progress shows in Prefect: a progress artifact that moves, and log lines with an ETA."""

from __future__ import annotations

import pytest
from prefect import flow

from flows.progress import progress_hook

pytestmark = pytest.mark.integration


@flow
def report_steps(total: int) -> None:
    hook = progress_hook("progress-test", "sft", every_s=0)
    for step in range(total + 1):
        hook(step, total)


def test_progress_artifact_is_created_once_and_updated_to_the_end(prefect_server, caplog):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    report_steps(4)
    with get_client(sync_client=True) as client:
        key = ArtifactFilterKey(any_=["progress-test-sft-progress"])
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=key))
    assert len(arts) == 1 and arts[0].type == "progress" and arts[0].data == 100.0
    assert arts[0].description.startswith("sft: step 4/4 (100%)")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sft: step")]
    assert lines[0] == "sft: step 0/4 (0%), ETA after the first step" and "ETA 0:00:00" in lines[-1]
