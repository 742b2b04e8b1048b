"""Target groups, computers, deployments and EULAs through the service ([wsus] §1d W6, W7): the
built-in tree, server- and client-side targeting, approvals stamped with the catalog's change_seq and
audited, the refusals of W7."""

from __future__ import annotations

import pytest
from catalogkit import software

from devupdate.audit.models import AuditEvent
from devupdate.errors import DevupdateError
from devupdate.wsus.catalog import store
from devupdate.wsus.catalog.document import parse_update
from devupdate.wsus.targeting import service
from devupdate.wsus.targeting.models import (
    ALL_COMPUTERS_ID,
    TEST_ID,
    UNASSIGNED_ID,
    AutoApprovalRule,
    Deployment,
)

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
EULA = "e0e0e0e0-1111-4222-8333-444444444444"


def load(*texts: str) -> None:
    store.import_documents(parse_update(t.encode()) for t in texts)


def with_eula(update_id: str) -> str:
    return software(update_id).replace('PublicationState="Published"', f'PublicationState="Published" EulaID="{EULA}"')


def test_the_built_in_tree_and_default_rules(database):
    groups = service.list_groups()
    assert [(g["Name"], g["Depth"], g["ParentId"], g["BuiltIn"]) for g in groups] == [
        ("All Computers", 0, None, True), ("Test", 1, ALL_COMPUTERS_ID, True),
        ("Unassigned Computers", 1, ALL_COMPUTERS_ID, True)]
    assert {g["Name"]: g["Id"] for g in groups}["Unassigned Computers"] == UNASSIGNED_ID
    rules = {r.name: (r.group_id, r.defer_days, r.paused) for r in AutoApprovalRule.select()}
    assert rules == {"Test": (TEST_ID, None, False), "All Computers": (ALL_COMPUTERS_ID, 7, False),
                     "Definition Updates": (ALL_COMPUTERS_ID, None, False)}
    assert service.targeting_mode() == "server"


def test_approve_stamps_change_seq_audits_and_refuses_without_eula(database):
    load(software(A), with_eula(B))
    before = store.next_seq()
    result = service.approve(A, "All Computers", "install", actor="cli:alice", deadline="2026-12-24T18:00:00+01:00")
    assert result["Action"] == "Install" and result["Deadline"] == "2026-12-24T17:00:00Z"
    assert result["ChangeSeq"] > before and result["Changed"] is True
    event = AuditEvent.select().where(AuditEvent.action == "wsus.approve").get()
    assert (event.actor, event.target, event.outcome) == ("cli:alice", f"{A} @ All Computers", "ok")
    with pytest.raises(DevupdateError) as refused:
        service.approve(B, "Test", "install", actor="cli:alice")
    assert refused.value.code == "eula-not-accepted"
    assert "devupdate wsus eula accept" in refused.value.message
    assert not Deployment.select().where(Deployment.update_id == B).exists()
    service.accept_eula(B, actor="cli:alice")
    assert service.approve(B, "Test", "block", actor="cli:bob")["Action"] == "Block"
    with pytest.raises(DevupdateError) as block:
        service.approve(A, "All Computers", "block", actor="cli:alice")
    assert block.value.code == "block-all-computers"


def test_server_and_client_side_membership(database):
    load(software(A))
    site = service.add_group("Site", actor="t")
    service.add_group("Floor", parent="site", actor="t")
    pc = service.register_computer("pc-1", {"DnsName": "pc1.example", "OSBuildNumber": "19045"})
    assert service.assigned_groups(pc.id) == [UNASSIGNED_ID]
    service.assign_computer("pc1.example", ["floor"], actor="t")
    distances = service.computer_distances(pc.id)
    assert distances[site["Id"]] == 1 and distances[ALL_COMPUTERS_ID] == 2
    service.approve(A, "Site", "uninstall", actor="t")
    service.approve(A, "All Computers", "install", actor="t")
    assert service.effective_deployments(pc.id)[A].action == "Uninstall"
    service.set_client_groups(pc.id, "TEST; nope ;Floor")
    service.set_targeting_mode("client", actor="t")
    assert sorted(service.assigned_groups(pc.id)) == sorted([TEST_ID, service.resolve_group("Floor").id])
    service.set_client_groups(pc.id, "nothing")
    assert service.assigned_groups(pc.id) == [UNASSIGNED_ID]
    assert service.effective_deployments(pc.id)[A].action == "Install"


def test_concurrent_approvals_and_group_adds_serialize(database):
    """Eight writers at once (own connections): one deployment row and one audit entry for the same
    approval; one group of a name, the others refused with 409 — never an integrity error."""
    import threading

    from devupdate import db

    load(software(A))
    parents = [service.add_group(name, actor="t")["Id"] for name in ("North", "South")]
    errors: list[BaseException] = []
    refusals: list[str] = []
    start = threading.Barrier(8)

    def writer(index: int) -> None:
        try:
            start.wait(30)
            try:  # under two parents: no parent row lock orders them, the name is unique anyway
                service.add_group("Site", parent=parents[index % 2], actor=f"cli:{index}")
            except DevupdateError as refusal:
                refusals.append(refusal.code)
            service.approve(A, "Test", "install", actor="cli:alice")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            db.database.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert refusals == ["group-exists"] * 7
    assert Deployment.select().where(Deployment.update_id == A).count() == 1
    assert AuditEvent.select().where(AuditEvent.action == "wsus.approve", AuditEvent.outcome == "ok").count() == 1
    assert [g["Name"] for g in service.list_groups()].count("Site") == 1
