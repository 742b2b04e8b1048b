"""What a downstream run could not take is taken by a later one (§5.3, D2, D4), against the fake
upstream: a replica approval naming a revision held until the run's release is applied, one whose
update is still held keeps the deployment anchor; a revision that failed is kept and fetched again by
the next runs (given up after RETRY_RUNS). Every spooled revision list of the run is closed."""

from __future__ import annotations

import json

import pytest
from catalogkit import category, docs_dir, software
from fakeupstream import FakeUpstream

from devupdate.wsus.catalog.models import Revision
from devupdate.wsus.downstream import messages, run, service
from devupdate.wsus.downstream.models import UpstreamState
from devupdate.wsus.targeting.models import ALL_COMPUTERS_ID, Deployment

PRODUCT = "11111111-2222-4333-8444-555555555555"
CLASSIFICATION = "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83"
FIRST = "aaaaaaaa-0000-4000-8000-000000000001"  # needs SECOND, listed before it
SECOND = "aaaaaaaa-0000-4000-8000-000000000002"
ORPHAN = "aaaaaaaa-0000-4000-8000-000000000003"  # needs ABSENT, which the upstream never lists
ABSENT = "aaaaaaaa-0000-4000-8000-000000000004"
LATE = "aaaaaaaa-0000-4000-8000-000000000005"  # listed, but GetUpdateData cannot give it at first
CATS = (PRODUCT, CLASSIFICATION)
ANCHOR = "9440,2026-11-01 12:00:00.000"


def _deployment(update_id: str, guid: str) -> bytes:
    return (f"<ServerSyncDeployment><UpdateId>{update_id}</UpdateId><RevisionNumber>1</RevisionNumber><Action>0"
            "</Action><AdminName>admin</AdminName><Deadline>9999-12-31T23:59:59.9999999</Deadline><IsAssigned>true"
            "</IsAssigned><GoLiveTime>2026-11-01T12:00:00Z</GoLiveTime>"
            f"<DeploymentGuid>{guid}</DeploymentGuid><TargetGroupId>{ALL_COMPUTERS_ID}</TargetGroupId>"
            "<DownloadPriority>2</DownloadPriority></ServerSyncDeployment>").encode()


@pytest.fixture
def fake(monkeypatch):
    docs_dir()
    documents = {(PRODUCT, 1): category(PRODUCT, "A product", "Product", revision=1),
                 (CLASSIFICATION, 1): category(CLASSIFICATION, "Updates", "UpdateClassification", revision=1),
                 (FIRST, 1): software(FIRST, 1, title="first", prerequisites=(SECOND,), categories=CATS),
                 (SECOND, 1): software(SECOND, 1, title="second", categories=CATS),
                 (ORPHAN, 1): software(ORPHAN, 1, title="orphan", prerequisites=(ABSENT,), categories=CATS)}
    upstream = FakeUpstream(categories=[(PRODUCT, 1), (CLASSIFICATION, 1)],
                            updates=[(FIRST, 1), (SECOND, 1), (ORPHAN, 1)], documents=documents).start()
    monkeypatch.setattr(run, "LIST_SLICE", 1)  # one revision per GetUpdateData: FIRST is held until SECOND comes
    lists: list[messages.RevisionList] = []
    opened = messages.RevisionList.__init__

    def spy(self, *args, **kwargs):
        opened(self, *args, **kwargs)
        lists.append(self)

    monkeypatch.setattr(messages.RevisionList, "__init__", spy)
    yield upstream
    upstream.stop()
    assert lists and all(listed._spool.closed for listed in lists)


def _sync(rt, fake, **kwargs):
    return service.sync(rt.settings, rt.store, upstream=fake.url, sleep=lambda _s: None, **kwargs)


def test_a_replica_approval_of_a_revision_released_this_run_is_applied_and_a_held_one_waits(rt, fake):
    zero = "00000000-0000-0000-0000-000000000000"
    fake.deployments = (f"<Anchor>{ANCHOR}</Anchor><Groups><ServerSyncTargetGroup><TargetGroupID>{ALL_COMPUTERS_ID}"
                        f"</TargetGroupID><ParentGroupId>{zero}</ParentGroupId><Name>All Computers</Name><IsBuiltin>"
                        "true</IsBuiltin></ServerSyncTargetGroup></Groups>").encode() + (
        b"<Deployments>" + _deployment(FIRST, "d0d0d0d0-0000-4000-8000-000000000001")
        + _deployment(ORPHAN, "d0d0d0d0-0000-4000-8000-000000000002")
        + b"</Deployments><DeadDeployments /><HiddenUpdates /><AcceptedEulas />")
    done = _sync(rt, fake, mode="replica")
    assert (done["HeldRevisions"], done["ReleasedRevisions"], done["DeploymentsApplied"],
            done["DeploymentsWaiting"]) == (2, 1, 1, 1)
    assert Deployment.get(Deployment.update_id == FIRST).action == "Install"
    assert Deployment.get_or_none(Deployment.update_id == ORPHAN) is None
    state = UpstreamState.get_by_id(fake.url)
    assert state.deployment_anchor is None and state.sync_anchor is not None  # ORPHAN's approval comes again
    # once nothing waits, the anchor moves
    fake.deployments = fake.deployments.replace(_deployment(ORPHAN, "d0d0d0d0-0000-4000-8000-000000000002"), b"")
    again = _sync(rt, fake, mode="replica")
    assert "DeploymentsWaiting" not in again
    assert UpstreamState.get_by_id(fake.url).deployment_anchor == ANCHOR


def test_a_revision_that_failed_is_fetched_by_the_next_run(rt, fake):
    fake.updates.append((LATE, 1))  # not among the documents: GetUpdateData answers InternalServerError
    done = _sync(rt, fake)
    assert (done["FailedRevisions"], done["Failures"][0]["UpdateID"], done["RetryRevisions"]) == (1, LATE, 1)
    state = UpstreamState.get_by_id(fake.url)
    assert state.sync_anchor is not None and json.loads(state.retry) == [[LATE, 1, 1]]
    # the upstream lists nothing new after the anchor; the failed revision is asked for again
    fake.documents[(LATE, 1)] = software(LATE, 1, title="late", categories=CATS)
    again = _sync(rt, fake)
    assert (again["NewRevisions"], again["FailedRevisions"]) == (1, 0) and "RetryRevisions" not in again
    assert Revision.get_or_none(Revision.update_id == LATE) is not None
    assert json.loads(UpstreamState.get_by_id(fake.url).retry) == []


def test_a_revision_failing_run_after_run_is_given_up(rt, fake):
    fake.updates.append((LATE, 1))
    for runs in range(1, run.RETRY_RUNS):
        assert _sync(rt, fake)["RetryRevisions"] == 1
        assert json.loads(UpstreamState.get_by_id(fake.url).retry) == [[LATE, 1, runs]]
    last = _sync(rt, fake)
    assert last["FailedRevisions"] == 1 and "RetryRevisions" not in last
    assert json.loads(UpstreamState.get_by_id(fake.url).retry) == []
