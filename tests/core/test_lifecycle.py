"""The rule state machine of management.md §1, action by action, with the audit trail."""

from __future__ import annotations

import json

import pytest

from devupdate.audit.models import AuditEvent
from devupdate.errors import Conflict, DevupdateError, NotFound
from devupdate.rules import lifecycle
from devupdate.rules.models import Rule, RuleVersion

GUID = "5a1d2c3e-0b7f-4f0e-9c39-2c1b7e0e5d11"


def make_rule(rule_id=GUID, approved=None, pending=None, restore=None, model="CX600") -> Rule:
    rule = Rule.create(id=rule_id, key=lifecycle.rule_key("UCPhone", "Polycom", model, "A", "ENU", "CPE"),
                       device_type="UCPhone", brand="Polycom", model=model, revision="A", locale="ENU",
                       update_type="CPE", approved_version=approved, pending_version=pending,
                       restore_version=restore)
    for version in filter(None, (approved, pending, restore)):
        RuleVersion.create(rule_id=rule_id, version=version, path_prefix=f"x/{version}")
    return rule


def versions(rule_id=GUID):
    rule = Rule.get_by_id(rule_id)
    return rule.approved_version, rule.pending_version, rule.restore_version


def test_approve_moves_pending_to_approved_and_keeps_restore(database):
    make_rule(approved="4.0.7577.4366", pending="4.0.7577.4372")
    lifecycle.approve(GUID, "alice")
    assert versions() == ("4.0.7577.4372", None, "4.0.7577.4366")
    event = AuditEvent.select().order_by(AuditEvent.id.desc()).first()
    assert (event.actor, event.action, event.target, event.outcome) == ("alice", "rule.approve", GUID, "ok")
    assert json.loads(event.before) == {"ApprovedVersion": "4.0.7577.4366", "PendingVersion": "4.0.7577.4372",
                                        "RestoreVersion": None}
    assert json.loads(event.after) == {"ApprovedVersion": "4.0.7577.4372", "PendingVersion": None,
                                       "RestoreVersion": "4.0.7577.4366"}


def test_first_approve_has_no_restore_version(database):
    make_rule(pending="4.0.7577.4372")
    lifecycle.approve(GUID, "alice")
    assert versions() == ("4.0.7577.4372", None, None)


def test_approve_without_pending_is_refused_and_audited(database):
    make_rule(approved="4.0.7577.4366")
    with pytest.raises(Conflict, match="no pending version to approve"):
        lifecycle.approve(GUID, "alice")
    assert versions() == ("4.0.7577.4366", None, None)
    event = AuditEvent.select().order_by(AuditEvent.id.desc()).first()
    assert (event.action, event.outcome) == ("rule.approve", "refused")


def test_reset_drops_pending_only(database):
    make_rule(approved="4.0.7577.4366", pending="4.0.7577.4372", restore="4.0.7577.4363")
    lifecycle.reset(GUID, "bob")
    assert versions() == ("4.0.7577.4366", None, "4.0.7577.4363")
    with pytest.raises(Conflict, match="no pending version to reset"):
        lifecycle.reset(GUID, "bob")


def test_restore_with_restore_version_downgrades(database):
    make_rule(approved="4.0.7577.4372", restore="4.0.7577.4366")
    lifecycle.restore(GUID, "carol")
    assert versions() == ("4.0.7577.4366", None, None)


def test_restore_without_restore_version_leaves_no_approved_version(database):
    make_rule(approved="4.0.7577.4372")
    lifecycle.restore(GUID, "carol")
    assert versions() == (None, None, None)
    with pytest.raises(Conflict, match="no approved version to roll back"):
        lifecycle.restore(GUID, "carol")


def test_restore_keeps_pending(database):
    make_rule(approved="4.0.7577.4372", pending="4.0.7577.4387", restore="4.0.7577.4366")
    lifecycle.restore(GUID, "carol")
    assert versions() == ("4.0.7577.4366", "4.0.7577.4387", None)


def test_unreferenced_versions_start_their_grace_clock(database):
    make_rule(approved="4.0.7577.4372", restore="4.0.7577.4366")
    lifecycle.restore(GUID, "carol")
    state = {v.version: v.unreferenced_since for v in RuleVersion.select()}
    assert state["4.0.7577.4366"] is None
    assert state["4.0.7577.4372"] is not None


def test_remove_deletes_rule_and_unreferences_versions(database):
    make_rule(approved="4.0.7577.4372")
    before = lifecycle.remove(GUID[:8], "dave")
    assert before["Id"] == GUID
    assert not Rule.select().exists()
    assert all(v.unreferenced_since is not None for v in RuleVersion.select())
    with pytest.raises(NotFound):
        lifecycle.remove(GUID, "dave")


def test_resolve_by_guid_prefix_braces_and_identity(database):
    make_rule()
    make_rule(rule_id="5a1d9999-0000-0000-0000-000000000000", model="CX500")
    assert lifecycle.resolve(GUID).id == GUID
    assert lifecycle.resolve("{" + GUID.upper() + "}").id == GUID
    assert lifecycle.resolve("5a1d2c").id == GUID
    assert lifecycle.resolve(f"service:WebServer:pool.contoso.com/{GUID}").id == GUID
    with pytest.raises(DevupdateError, match="matches several rules"):
        lifecycle.resolve("5a1d")
    with pytest.raises(NotFound, match="no rule matches"):
        lifecycle.resolve("ffff")
    with pytest.raises(DevupdateError, match="not a rule GUID"):
        lifecycle.resolve("'; drop table rule; --")


def test_every_change_bumps_the_generation(database):
    make_rule(approved="4.0.7577.4366", pending="4.0.7577.4372")
    start = lifecycle.current_generation()
    lifecycle.approve(GUID, "a")
    lifecycle.restore(GUID, "a")
    assert lifecycle.current_generation() == start + 2
