"""The downstream sync's fault rules (§4.2, D7) and fault-in mode (D8), against the fake upstream."""

from __future__ import annotations

import json

import pytest
from catalogkit import category, docs_dir, software
from fakeupstream import FakeUpstream, exchange, fault

from devupdate.wsus.catalog.models import Revision
from devupdate.wsus.downstream import needed, service
from devupdate.wsus.downstream.models import NeededUpdate, UpstreamState

PRODUCT = "11111111-2222-4333-8444-555555555555"
CLASSIFICATION = "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83"
BUNDLE = "aaaaaaaa-0000-4000-8000-000000000001"
MEMBER = "aaaaaaaa-0000-4000-8000-000000000002"
PREREQ = "aaaaaaaa-0000-4000-8000-000000000003"
OTHER = "aaaaaaaa-0000-4000-8000-000000000004"


def _catalog() -> dict[tuple[str, int], str]:
    return {
        (PRODUCT, 1): category(PRODUCT, "A product", "Product", revision=1),
        (CLASSIFICATION, 1): category(CLASSIFICATION, "Updates", "UpdateClassification", revision=1),
        (PREREQ, 3): software(PREREQ, 3, title="prerequisite", categories=(PRODUCT, CLASSIFICATION)),
        (MEMBER, 2): software(MEMBER, 2, title="member"),
        (BUNDLE, 5): software(BUNDLE, 5, title="bundle", prerequisites=(PREREQ,), categories=(PRODUCT, CLASSIFICATION),
                              bundles=((MEMBER, 2),)),
        (OTHER, 1): software(OTHER, 1, title="not needed", categories=(PRODUCT, CLASSIFICATION)),
    }


@pytest.fixture
def fake():
    docs_dir()
    documents = _catalog()
    upstream = FakeUpstream(categories=[(PRODUCT, 1), (CLASSIFICATION, 1)],
                            updates=[k for k in documents if k[0] not in (PRODUCT, CLASSIFICATION)],
                            documents=documents).start()
    yield upstream
    upstream.stop()


def _sync(rt, fake, **kwargs):
    return service.sync(rt.settings, rt.store, upstream=fake.url, sleep=lambda _s: None, **kwargs)


def test_server_changed_clears_the_anchors_reauthorizes_and_loses_nothing(rt, fake):
    first = _sync(rt, fake)
    assert first["NewRevisions"] == 6
    before = {(r.update_id, r.revision_number): r.id for r in Revision.select()}
    fake.requests.clear()
    fake.faults["GetRevisionIdList"] = [fault("ServerChanged", operation="GetRevisionIdList")]
    again = _sync(rt, fake)
    assert again["ServerChanged"] == 1
    ops = fake.operations()
    # the stored cookie is expired (the recording's): authorization, the fault, then again from the start
    assert ops.count("GetAuthConfig") == 2 and ops.count("GetCookie") == 2
    config_calls = [r for r in fake.requests if r["operation"] == "GetConfigData"]
    assert len(config_calls) == 2
    # the anchors were cleared: the lists came again in full, every revision unchanged, same RevisionIDs
    assert again["NewRevisions"] == 0 and again["UnchangedRevisions"] == 6
    assert {(r.update_id, r.revision_number): r.id for r in Revision.select()} == before
    assert UpstreamState.get_by_id(fake.url).sync_anchor is not None


def test_a_refused_anchor_is_cleared_once(rt, fake):
    _sync(rt, fake)
    UpstreamState.update(sync_anchor="garbage").execute()
    fake.requests.clear()
    done = _sync(rt, fake)
    assert done["UnchangedRevisions"] == 6  # from no anchor: everything listed again, nothing fetched
    assert "GetUpdateData" not in fake.operations()
    assert UpstreamState.get_by_id(fake.url).sync_anchor.startswith("9438,")


def test_a_fault_without_retry_rule_stops_the_run_with_its_code(rt, fake):
    fake.faults["GetConfigData"] = [exchange(19)["body"].replace(b"InvalidCookie", b"IncompatibleProtocolVersion")]
    with pytest.raises(service.SyncFailed) as failed:
        _sync(rt, fake)
    assert "IncompatibleProtocolVersion" in failed.value.message
    assert "the next run resumes" in failed.value.message


def test_fault_in_fetches_exactly_the_listed_updates_and_their_closure(rt, fake):
    needed.add(BUNDLE, source="mdm:test", actor="test")  # no RevisionNumber: resolved from the identity list
    needed.add("bbbbbbbb-0000-4000-8000-00000000000f", 1, actor="test")  # the upstream does not have it
    done = _sync(rt, fake, mode="fault-in")
    stored = {(r.update_id, r.revision_number) for r in Revision.select()}
    assert stored == {(PRODUCT, 1), (CLASSIFICATION, 1), (BUNDLE, 5), (MEMBER, 2), (PREREQ, 3)}
    assert (OTHER, 1) not in stored
    assert done["FaultIn"]["Satisfied"] == 1 and done["FaultIn"]["Closure"] == 2
    assert done["Files"]["Fetched"] == 0
    left = needed.entries()
    assert [e["UpdateID"] for e in left] == ["bbbbbbbb-0000-4000-8000-00000000000f"]
    assert left[0]["Attempts"] == 1 and left[0]["State"] == "needed"
    for _ in range(4):
        _sync(rt, fake, mode="fault-in")
    assert NeededUpdate.get().state == "unavailable"


def test_needed_cli_add_list_remove(install):
    install.runtime()
    install.cli("wsus", "needed", "add", BUNDLE, "--revision", "5", "--source", "mdm")
    rows = json.loads(install.cli("wsus", "needed", "list", "--json").stdout)
    assert rows[0]["UpdateID"] == BUNDLE and rows[0]["RevisionNumber"] == 5 and rows[0]["Source"] == "mdm"
    bad = install.cli("wsus", "needed", "add", "not-a-guid", check=False)
    assert bad.returncode == 1 and "is not an UpdateID" in bad.stderr
    install.cli("wsus", "needed", "remove", BUNDLE)
    assert json.loads(install.cli("wsus", "needed", "list", "--json").stdout) == []
    gone = install.cli("wsus", "needed", "remove", BUNDLE, check=False)
    assert gone.returncode == 1 and "is not on the needed list" in gone.stderr
