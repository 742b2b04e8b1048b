"""Bulk rule actions on the command line: ``rules approve|reset --brand/--model/--locale [--dry-run]``
with the exact confirmation text, one audit entry per rule, and hostile patterns refused with a reason."""

from __future__ import annotations

import json

import pytest
from helpers.cabs import make_package, make_update

OLD, NEW = "4.0.7577.4366", "4.0.7577.4372"
CX600, CX700, VVX = (make_update("Polycom", "CX600", NEW), make_update("Polycom", "CX700", NEW),
                     make_update("Polycom", "VVX400", NEW))
AASTRA = make_update("Aastra", "CX6725", NEW)


@pytest.fixture
def seeded(install, tmp_path):
    """CX600 approved at OLD then NEW pending; CX700, VVX400 and Aastra CX6725 pending NEW only
    (seeded in this process: a CLI process per step would cost seconds)."""
    from devupdate import db
    from devupdate.imports.service import import_cab
    from devupdate.rules import lifecycle

    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    runtime = install.runtime()
    try:
        import_cab(runtime.store, runtime.settings,
                   make_package(tmp_path / "old", [make_update("Polycom", "CX600", OLD)]), actor="test:admin")
        lifecycle.approve(CX600.id, "test:admin")
        import_cab(runtime.store, runtime.settings, make_package(tmp_path / "new", [CX600, CX700, VVX, AASTRA]),
                   actor="test:admin")
    finally:
        db.database.close()
    return install


def test_dry_run_prints_the_confirmation_and_changes_nothing(seeded):
    out = seeded.cli("rules", "approve", "--brand", "polycom", "--model", "CX*", "--dry-run")
    assert out.stdout == (
        "Approve 2 pending rules matching brand=polycom model=CX*:\n"
        f"  Polycom CX600 ENU · CPE: All Polycom CX600 ENU phones will be offered CPE {NEW} (upgrade from {OLD}).\n"
        f"    {OLD} becomes the restore version: rolling back returns to it.\n"
        f"  Polycom CX700 ENU · CPE: All Polycom CX700 ENU phones will be offered CPE {NEW} "
        "(nothing approved before).\n"
        "    There will be no restore version: rolling back would withdraw the update.\n"
        "Dry run: nothing was changed. Run it without --dry-run to approve these 2 rules.\n")
    rules = {r["Id"]: r for r in json.loads(seeded.cli("rules", "list", "--json", "--state", "pending").stdout)}
    assert set(rules) == {CX600.id, CX700.id, VVX.id, AASTRA.id}
    assert json.loads(seeded.cli("audit", "list", "--json", "--action", "rule.approve").stdout)[0]["Target"] \
        == CX600.id  # only the seeding approval


def test_bulk_approve_one_audit_entry_per_rule_then_nothing_left(seeded):
    out = seeded.cli("rules", "approve", "--brand", "Polycom", "--model", "CX*")
    lines = out.stdout.splitlines()
    assert lines[0] == "Approve 2 pending rules matching brand=Polycom model=CX*:"
    assert lines[-3:] == [
        f"approved rule {CX600.id} (Polycom CX600 ENU · CPE): approved={NEW} pending=- restore={OLD}",
        f"approved rule {CX700.id} (Polycom CX700 ENU · CPE): approved={NEW} pending=- restore=-",
        "approved 2 of 2 rules"]
    trail = json.loads(seeded.cli("audit", "list", "--json", "--action", "rule.approve").stdout)
    assert [(e["Target"], e["TargetName"], e["Outcome"]) for e in trail[:2]] == [
        (CX700.id, "Polycom CX700 ENU", "ok"), (CX600.id, "Polycom CX600 ENU", "ok")]
    assert trail[0]["After"] == {"ApprovedVersion": NEW, "PendingVersion": None, "RestoreVersion": None}
    again = seeded.cli("rules", "approve", "--brand", "Polycom", "--model", "CX*", "--dry-run")
    assert again.stdout == ("No pending rule matches brand=Polycom model=CX*: nothing to approve.\n"
                            "Dry run: nothing was changed.\n")


def test_bulk_reset_by_locale_pattern_json(seeded):
    data = json.loads(seeded.cli("rules", "reset", "--model", "vvx4??", "--locale", "E*", "--json").stdout)
    assert data["DryRun"] is False and data["Count"] == 1
    assert [(r["Id"], r["Outcome"], r["PendingVersion"]) for r in data["Rules"]] == [(VVX.id, "reset", None)]
    assert data["Confirmation"] == [
        "Reset (reject) 1 pending rule matching model=vvx4?? locale=E*:",
        f"  Polycom VVX400 ENU · CPE: Pending {NEW} is rejected. Nobody will be offered anything for this rule: "
        "it has no approved version."]


def test_single_rule_dry_run_and_plain_action_unchanged(seeded):
    out = seeded.cli("rules", "reset", CX700.id[:8], "--dry-run")
    assert out.stdout.splitlines()[0] == "Reset (reject) 1 pending rule matching 1 chosen rule:"
    assert out.stdout.splitlines()[-1] == "Dry run: nothing was changed. Run it without --dry-run to reset this rule."
    assert seeded.cli("rules", "reset", CX700.id).stdout == f"reset rule {CX700.id}: approved=- pending=- restore=-\n"


@pytest.mark.parametrize("args, status, message", [
    (["rules", "approve"], 2, "give a RULE, or choose rules with --brand, --model or --locale"),  # usage: exit 2
    (["rules", "approve", "--model", "x" * 101], 1, "the model pattern is longer than 100 characters"),
    (["rules", "approve", "--model", "*" * 9], 1, "the model pattern has more than 8 wildcards"),
    (["rules", "approve", "--brand", "Poly\x01com"], 1,
     "the brand pattern contains a control or unencodable character"),
    (["rules", "approve", CX600.id, "--brand", "Polycom"], 2, "give a RULE or --brand/--model/--locale, not both"),
    (["rules", "approve", "--brand", "Polycom", "--rollout", "5%"], 1, "--rollout approves one RULE"),
])
def test_hostile_selections_are_refused_with_a_reason(seeded, args, status, message):
    proc = seeded.invoke(*args)
    assert proc.exit_code == status and proc.stderr.startswith(f"devupdate: error: {message}"), proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1
    assert len(json.loads(seeded.invoke("rules", "list", "--json", "--state", "pending").stdout)) == 4


def test_like_wildcards_typed_by_a_person_match_only_themselves(seeded):
    """'%' and '_' are not wildcards: 'CX_00' is no pattern for CX600, '%' matches no model."""
    for model in ("CX_00", "%", "CX6%"):
        out = seeded.invoke("rules", "list", "--model", model, "--json")
        assert json.loads(out.stdout) == [], model
    assert [r["Model"] for r in json.loads(seeded.invoke("rules", "list", "--model", "cx?00", "--json").stdout)] \
        == ["CX600", "CX700"]
