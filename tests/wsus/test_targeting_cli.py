"""Target groups, computers, approvals, EULAs and auto-approval over the real CLI ([wsus] §1d W6–W8):
exact JSON, refusals naming the fix (exit 1, one line, never a traceback), every approval in the
audit trail with its actor, phone-image deployments following the real rule lifecycle."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from catalogkit import category, software
from helpers.cabs import make_package, make_update

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
E = "eeeeeeee-0000-4000-8000-00000000000e"  # needs an EULA
D = "dddddddd-0000-4000-8000-00000000000d"  # a definition update
S = "55555555-0000-4000-8000-000000000005"  # supersedes A
EULA = "e0e0e0e0-1111-4222-8333-444444444444"
PRODUCT = "c0c0c0c0-0000-4000-8000-0000000000c1"
OTHER = "0e0e0e0e-0000-4000-8000-000000000001"  # imported before its product was selected
NOT_SYNCED = "0f0f0f0f-0000-4000-8000-000000000001"  # of no product
DEFINITIONS = "e0789628-ce08-4437-be74-2495b842f43b"
ALL_ID, UNASSIGNED_ID = "a0a08746-4dbe-4a37-9adf-9e7652c0b421", "b73ca6ed-5727-47f3-84de-015e03f6a88a"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:devupdate")
TEST_ID = str(uuid.uuid5(NAMESPACE, "group/Test"))
V1, V2 = "4.0.7577.4366", "4.0.7577.4372"
ALICE = {"DEVUPDATE_ACTOR": "cli:alice"}


def run(install, *args: str, **env: str):
    return json.loads(install.cli(*args, "--json", **{**ALICE, **env}).stdout)


def refused(install, *args: str) -> str:
    proc = install.cli(*args, check=False, **ALICE)
    assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("devupdate: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr[len("devupdate: error: "):].strip()


def with_eula(update_id: str, categories: tuple[str, ...] = ()) -> str:
    return software(update_id, categories=categories).replace(
        'PublicationState="Published"', f'PublicationState="Published" EulaID="{EULA}"')


def catalog(install, tmp_path, **docs: str) -> None:
    folder = tmp_path / f"docs-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    for name, text in docs.items():
        (folder / f"{name}.xml").write_text(text)
    install.cli("wsus", "import", str(folder))


def audit(install, action: str) -> list[dict]:
    return run(install, "audit", "list", "--action", action, "--limit", "100")


def test_groups_tree_add_rename_remove_and_refusals(install):
    groups = run(install, "wsus", "groups", "list")
    assert [(g["Path"], g["Id"], g["BuiltIn"], g["Computers"]) for g in groups] == [
        ("All Computers", ALL_ID, True, 0), ("All Computers / Test", TEST_ID, True, 0),
        ("All Computers / Unassigned Computers", UNASSIGNED_ID, True, 0)]
    site = run(install, "wsus", "groups", "add", "Site Ä")
    floor = run(install, "wsus", "groups", "add", "Floor 1", "--parent", "site ä")
    assert (site["ParentId"], floor["ParentId"], floor["CreatedBy"]) == (ALL_ID, site["Id"], "cli:alice")
    renamed = run(install, "wsus", "groups", "rename", floor["Id"], "Floor One")
    assert (renamed["Id"], renamed["Name"]) == (floor["Id"], "Floor One")
    assert [g["Path"] for g in run(install, "wsus", "groups", "list")] == [
        "All Computers", "All Computers / Site Ä", "All Computers / Site Ä / Floor One", "All Computers / Test",
        "All Computers / Unassigned Computers"]
    assert "exists already" in refused(install, "wsus", "groups", "add", "FLOOR one")
    assert "is built in" in refused(install, "wsus", "groups", "rename", "Test", "Pilot")
    assert "is built in" in refused(install, "wsus", "groups", "remove", "unassigned computers")
    assert "has subgroups" in refused(install, "wsus", "groups", "remove", "Site Ä")
    assert "'devupdate wsus groups list'" in refused(install, "wsus", "groups", "add", "X", "--parent", "Nowhere")
    assert "no subgroups" in refused(install, "wsus", "groups", "add", "X", "--parent", "Unassigned Computers")
    assert run(install, "wsus", "groups", "remove", "floor one")["Id"] == floor["Id"]
    actions = [(e["Action"], e["Outcome"]) for e in audit(install, "wsus.group.")]
    assert actions[:3] == [("wsus.group.remove", "ok"), ("wsus.group.add", "refused"), ("wsus.group.add", "refused")]
    assert ("wsus.group.rename", "ok") in actions and actions.count(("wsus.group.add", "ok")) == 2


@pytest.mark.parametrize("name, reason", [
    ("", "cannot be empty"), ("   ", "cannot be empty"), ("a;b", "cannot contain ';'"),
    ("bell\x07", "control characters"), ("new\nline", "control characters"), ("x" * 257, "at most 256"),
])
def test_hostile_group_names_are_refused(install, name, reason):
    assert reason in refused(install, "wsus", "groups", "add", name)


def test_odd_but_valid_names_are_kept_verbatim(install):
    for name in ("' OR 1=1 -- DROP TABLE wsus_target_group", "名前", "x" * 256, "%s %n {0}"):
        assert run(install, "wsus", "groups", "add", name)["Name"] == name
    assert len(run(install, "wsus", "groups", "list")) == 7


def test_approve_needs_the_eula_and_every_approval_is_audited(install, tmp_path):
    install.cli("wsus", "auto-approval", "set", "Test", "--disable")  # manual approvals only here
    catalog(install, tmp_path, a=software(A), e=with_eula(E),
            c=category("c0c0c0c0-0000-4000-8000-00000000000c", "A product", "Product"))
    message = refused(install, "wsus", "approve", E, "--group", "Test", "--action", "install")
    assert message == (f"update {E} needs EULA {EULA} accepted before it can be approved: "
                       f"'devupdate wsus eula accept {E}'")
    assert run(install, "wsus", "approvals", E) == []
    accepted = run(install, "wsus", "eula", "accept", E)
    assert (accepted["EulaID"], accepted["AcceptedBy"]) == (EULA, "cli:alice")
    approved = run(install, "wsus", "approve", E, "--group", "test", "--action", "optional",
                   "--deadline", "2026-12-24T18:00:00+02:00", "--priority", "high")
    assert {k: approved[k] for k in ("UpdateID", "GroupId", "Group", "Action", "Deadline", "DownloadPriority",
                                     "IsAssigned", "Source", "Actor", "Changed")} == {
        "UpdateID": E, "GroupId": TEST_ID, "Group": "Test", "Action": "OptionalInstall",
        "Deadline": "2026-12-24T16:00:00Z", "DownloadPriority": 3, "IsAssigned": False, "Source": "admin",
        "Actor": "cli:alice", "Changed": True}
    again = run(install, "wsus", "approve", E, "--group", "Test", "--action", "optional",
                "--deadline", "2026-12-24T16:00:00Z", "--priority", "high")
    assert (again["Changed"], again["ChangeSeq"]) == (False, approved["ChangeSeq"])
    changed = run(install, "wsus", "approve", E, "--group", "Test", "--action", "install", DEVUPDATE_ACTOR="cli:bob")
    assert (changed["Id"], changed["Action"], changed["Deadline"]) == (approved["Id"], "Install", None)
    assert changed["ChangeSeq"] > approved["ChangeSeq"]

    assert "Block is not allowed on 'All Computers'" in refused(
        install, "wsus", "approve", A, "--group", "All Computers", "--action", "block")
    assert "is a category" in refused(install, "wsus", "approve", "c0c0c0c0-0000-4000-8000-00000000000c",
                                      "--group", "Test", "--action", "install")
    assert "'devupdate wsus updates list'" in refused(
        install, "wsus", "approve", "12345678-0000-4000-8000-000000000000", "--group", "Test", "--action", "install")
    assert "is not a GUID" in refused(install, "wsus", "approve", "KB123", "--group", "Test", "--action", "install")
    assert "ISO 8601" in refused(install, "wsus", "approve", A, "--group", "Test", "--action", "install",
                                 "--deadline", "tomorrow")
    assert "'devupdate wsus groups list'" in refused(install, "wsus", "approve", A, "--group", "Nope",
                                                    "--action", "install")
    install.cli("wsus", "updates", "decline", A)
    assert f"'devupdate wsus updates undecline {A}'" in refused(install, "wsus", "approve", A, "--group", "Test",
                                                                "--action", "install")

    withdrawn = run(install, "wsus", "unapprove", E, "--group", "Test")
    assert (withdrawn["Id"], withdrawn["Revoked"]) == (approved["Id"], True)
    assert run(install, "wsus", "approvals", E) == []
    [kept] = run(install, "wsus", "approvals", E, "--all")
    assert kept["ChangeSeq"] > changed["ChangeSeq"]  # scans see the withdrawal
    assert "is not approved for 'Test'" in refused(install, "wsus", "unapprove", E, "--group", "Test")

    trail = [(e["Actor"], e["Action"], e["Target"], e["Outcome"])
             for e in reversed(audit(install, "wsus.approve") + audit(install, "wsus.unapprove"))]
    approvals = [t for t in trail if t[1] == "wsus.approve" and t[3] == "ok"]
    assert approvals == [("cli:alice", "wsus.approve", f"{E} @ Test", "ok"),
                         ("cli:bob", "wsus.approve", f"{E} @ Test", "ok")]
    assert ("cli:alice", "wsus.approve", f"{E} @ Test", "refused") in trail  # the EULA refusal
    assert ("cli:alice", "wsus.unapprove", f"{E} @ Test", "ok") in trail
    [eula_event] = audit(install, "wsus.eula.accept")
    assert (eula_event["Actor"], eula_event["Target"]) == ("cli:alice", EULA)


def test_computers_list_show_assign_and_the_effective_deployment(install, database, tmp_path):
    from devupdate.wsus.targeting import service

    install.cli("wsus", "auto-approval", "set", "Test", "--disable")
    catalog(install, tmp_path, a=software(A), b=software(B))
    pc = service.register_computer("6f3c0000-0000-4000-8000-000000000001", {
        "DnsName": "pc1.corp.example", "OSMajorVersion": "10", "OSMinorVersion": "0", "OSBuildNumber": "19045",
        "OSRevisionNumber": "3803", "ComputerManufacturer": "M" * 300, "OSDescription": "Windows 10 Enterprise"},
        protocol_version="2.90")
    service.register_computer("6f3c0000-0000-4000-8000-000000000002", {"DnsName": "pc2.corp.example",
                                                                       "OSBuildNumber": "not a number"})
    database.close()
    site = run(install, "wsus", "groups", "add", "Site")
    run(install, "wsus", "groups", "add", "Floor", "--parent", "Site")
    listed = run(install, "wsus", "computers", "list")
    assert [(c["TargetId"], c["DnsName"], c["OSVersion"], c["Groups"]) for c in listed] == [
        (pc.id, "pc1.corp.example", "10.0.19045.3803", [{"Id": UNASSIGNED_ID, "Name": "Unassigned Computers"}]),
        (pc.id + 1, "pc2.corp.example", None, [{"Id": UNASSIGNED_ID, "Name": "Unassigned Computers"}])]
    shown = run(install, "wsus", "computers", "show", "PC1.corp.example")
    assert (shown["Manufacturer"], shown["ProtocolVersion"], shown["TargetingMode"]) == ("M" * 256, "2.90", "server")
    assigned = run(install, "wsus", "computers", "assign", str(pc.id), "floor", "Test")
    assert [g["Name"] for g in assigned["ServerGroups"]] == ["Floor", "Test"]
    assert [(m["Name"], m["Distance"]) for m in assigned["MemberOf"]] == [
        ("Floor", 0), ("Test", 0), ("All Computers", 1), ("Site", 1)]  # All Computers is one up from Test
    assert [c["DnsName"] for c in run(install, "wsus", "computers", "list", "--group", "Site")] == ["pc1.corp.example"]
    assert [c["DnsName"] for c in run(install, "wsus", "computers", "list", "--group", "Unassigned Computers")] == [
        "pc2.corp.example"]
    assert {g["Name"]: g["Computers"] for g in run(install, "wsus", "groups", "list")} == {
        "All Computers": 0, "Site": 0, "Floor": 1, "Test": 1, "Unassigned Computers": 1}

    # All Computers: Install; Site: Uninstall (nearer); Test and Floor tie at distance 0 for B
    run(install, "wsus", "approve", A, "--group", "All Computers", "--action", "install")
    run(install, "wsus", "approve", A, "--group", "Site", "--action", "uninstall")
    run(install, "wsus", "approve", B, "--group", "Floor", "--action", "optional", "--deadline", "2027-01-02")
    run(install, "wsus", "approve", B, "--group", "Test", "--action", "optional", "--deadline", "2027-01-01")
    from devupdate import db
    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    effective = service.effective_deployments(pc.id)
    # All Computers is one up from Test, Site one up from Floor: a tie, Install beats Uninstall
    assert (effective[A].action, effective[A].group_id) == ("Install", ALL_ID)
    assert (effective[B].action, effective[B].deadline) == ("OptionalInstall", dt.datetime(2027, 1, 1))
    assert service.effective_deployments(pc.id + 1)[A].action == "Install"
    assert B not in service.effective_deployments(pc.id + 1)
    database.close()
    run(install, "wsus", "computers", "assign", str(pc.id), "Floor")
    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    effective = service.effective_deployments(pc.id)  # regrouping counts at once
    assert (effective[A].action, effective[A].group_id) == ("Uninstall", site["Id"])  # Site is nearer now
    assert (effective[B].action, effective[B].deadline) == ("OptionalInstall", dt.datetime(2027, 1, 2))
    database.close()

    assert "every computer is in 'All Computers'" in refused(install, "wsus", "computers", "assign", str(pc.id),
                                                              "All Computers")
    assert "'devupdate wsus computers list'" in refused(install, "wsus", "computers", "show", "ghost")
    assert "'devupdate wsus groups list'" in refused(install, "wsus", "computers", "assign", "pc2.corp.example", "x")
    back = run(install, "wsus", "computers", "assign", str(pc.id), "Unassigned Computers")
    assert back["ServerGroups"] == [{"Id": UNASSIGNED_ID, "Name": "Unassigned Computers"}]
    [event, *_] = audit(install, "wsus.computer.assign")
    assert (event["Before"], event["After"]) == ({"Groups": ["Floor"]}, {"Groups": ["Unassigned Computers"]})


def test_auto_approval_test_then_all_computers_after_the_deferral_with_pause(install, database, tmp_path):
    from devupdate.wsus.targeting import autoapproval

    database.close()
    rules = run(install, "wsus", "auto-approval", "list")
    assert [(r["Name"], r["Group"], r["DeferDays"], r["Paused"]) for r in rules] == [
        ("All Computers", "All Computers", 7, False), ("Definition Updates", "All Computers", None, False),
        ("Test", "Test", None, False)]
    # nothing selected: nothing is synced, nothing approved
    catalog(install, tmp_path, p=category(PRODUCT, "A product", "Product"),
            o=software(OTHER, categories=(PRODUCT,)))
    assert run(install, "wsus", "approvals") == []
    install.cli("wsus", "products", "select", PRODUCT)
    catalog(install, tmp_path, a=software(A, categories=(PRODUCT,)), e=with_eula(E, (PRODUCT,)),
            s=software(S, supersedes=(A,), categories=(PRODUCT,)),
            defs=category(DEFINITIONS, "Definition Updates", "UpdateClassification"),
            d=software(D, categories=(PRODUCT, DEFINITIONS)), n=software(NOT_SYNCED))
    on_test = {d["UpdateID"]: d for d in run(install, "wsus", "approvals", "--group", "Test")}
    # E awaits its EULA; categories and updates of no selected product never; OTHER, skipped while its
    # product was not selected, is approved by the next run
    assert sorted(on_test) == sorted([A, S, D, OTHER])
    assert {d["Actor"] for d in on_test.values()} == {"rule:Test"}
    assert [d["UpdateID"] for d in run(install, "wsus", "approvals", "--group", "All Computers")] == [D]  # at once
    assert run(install, "wsus", "eula", "list")["AwaitingAcceptance"] == [
        {"Rule": "Test", "UpdateID": E, "EulaID": EULA,
         "Time": run(install, "wsus", "eula", "list")["AwaitingAcceptance"][0]["Time"]}]
    trail = {(e["Actor"], e["Target"]) for e in audit(install, "wsus.approve")}
    assert trail == {("rule:Test", f"{A} @ Test"), ("rule:Test", f"{S} @ Test"), ("rule:Test", f"{D} @ Test"),
                     ("rule:Test", f"{OTHER} @ Test"), ("rule:Definition Updates", f"{D} @ All Computers")}

    from devupdate import db
    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    soon = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=6, hours=23)
    later = soon + dt.timedelta(hours=2)
    assert [r["Approved"] for r in autoapproval.run_rules(soon)] == [[], [], []]
    database.close()
    paused = run(install, "wsus", "auto-approval", "pause")
    assert (paused["Name"], paused["Paused"], paused["Changed"]) == ("All Computers", True, True)
    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    assert [r.get("Paused") for r in autoapproval.run_rules(later)] == [None, None, True]
    database.close()
    run(install, "wsus", "auto-approval", "resume", "all computers")
    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    results = {r["Rule"]: r for r in autoapproval.run_rules(later)}
    # A is superseded by S, which is approved now: skipped; D was approved at once already
    assert sorted(results["All Computers"]["Approved"]) == sorted([S, OTHER])
    assert autoapproval.run_rules(later)[2]["Approved"] == []  # once per update
    database.close()
    install.cli("wsus", "eula", "accept", EULA)
    ran = run(install, "wsus", "auto-approval", "run")
    assert ran[0] == {"Rule": "Test", "Approved": [E], "AwaitingEula": [], "Skipped": 1}  # NOT_SYNCED, each run
    assert run(install, "wsus", "eula", "list")["AwaitingAcceptance"] == []

    proc = install.cli("wsus", "auto-approval", "set", "All Computers", "--defer-days", "31", check=False)
    assert proc.returncode == 2 and "0<=x<=30" in proc.stderr
    assert "has no deferral" in refused(install, "wsus", "auto-approval", "set", "Test", "--defer-days", "3")
    assert "the rules are 'All Computers', 'Definition Updates', 'Test'" in refused(
        install, "wsus", "auto-approval", "pause", "Nightly")
    changed = run(install, "wsus", "auto-approval", "set", "All Computers", "--defer-days", "0", "--accept-eulas")
    assert (changed["DeferDays"], changed["AcceptEulas"]) == (0, True)
    [event, *_] = audit(install, "wsus.auto-approval.set")
    assert (event["Actor"], event["Before"]["DeferDays"], event["After"]["DeferDays"]) == ("cli:alice", 7, 0)


def test_phone_image_deployments_follow_the_rule_lifecycle_never_auto_approval(install, tmp_path):
    def cab(name: str, version: str):
        folder = tmp_path / name
        folder.mkdir()
        return make_package(folder, [make_update("Polycom", "CX600", version)])

    rule = make_update("Polycom", "CX600", V1).id

    def image(version: str) -> str:
        return str(uuid.uuid5(NAMESPACE, f"image/{rule.lower()}/{version}"))

    def deployed() -> set[tuple[str, str, str, str]]:
        return {(d["Group"], d["UpdateID"], d["Action"], d["Source"]) for d in run(install, "wsus", "approvals")}

    install.cli("import", str(cab("v1", V1)), **ALICE)
    assert deployed() == {("Test", image(V1), "Install", "image")}
    install.cli("rules", "approve", rule, **ALICE)
    assert deployed() == {("All Computers", image(V1), "Install", "image")}
    install.cli("import", str(cab("v2", V2)), **ALICE)
    assert deployed() == {("All Computers", image(V1), "Install", "image"), ("Test", image(V2), "Install", "image")}
    install.cli("rules", "reset", rule, **ALICE)
    assert deployed() == {("All Computers", image(V1), "Install", "image")}
    install.cli("import", str(cab("v2b", V2)), **ALICE)  # pending again
    install.cli("rules", "approve", rule, **ALICE)
    assert deployed() == {("All Computers", image(V2), "Install", "image")}
    install.cli("rules", "restore", rule, **ALICE)
    assert deployed() == {("All Computers", image(V1), "Install", "image")}
    # nothing the auto-approval rules do touches them (UC devices), and manual approval is refused
    assert run(install, "wsus", "auto-approval", "run")[0]["Approved"] == []
    assert deployed() == {("All Computers", image(V1), "Install", "image")}
    assert "'devupdate rules approve|reset|restore'" in refused(install, "wsus", "approve", image(V2), "--group",
                                                                "Test", "--action", "install")
    assert "phone image" in refused(install, "wsus", "unapprove", image(V1), "--group", "All Computers")
    install.cli("rules", "remove", rule, **ALICE)
    assert deployed() == set()
    trail = [(e["Actor"], e["Action"], e["Target"], e["Detail"]) for e in reversed(
        audit(install, "wsus.approve") + audit(install, "wsus.unapprove")) if e["Outcome"] == "ok"]
    assert ("cli:alice", "wsus.approve", f"{image(V1)} @ Test", {"Rule": rule}) in trail
    assert ("cli:alice", "wsus.unapprove", f"{image(V1)} @ All Computers", {"Rule": rule}) in trail
    assert {t[0] for t in trail} == {"cli:alice"}


def test_upgrade_gives_rules_imported_before_targeting_their_deployments(install, tmp_path):
    folder = tmp_path / "v1"
    folder.mkdir()
    update = make_update("Aastra", "6721ip", V1)
    install.cli("import", str(make_package(folder, [update])))
    install.cli("rules", "approve", update.id)
    image = str(uuid.uuid5(NAMESPACE, f"image/{update.id.lower()}/{V1}"))
    before = {(d["Group"], d["UpdateID"], d["Action"]) for d in run(install, "wsus", "approvals")}
    assert before == {("All Computers", image, "Install")}
    install.runtime()
    from devupdate import db, schema
    from devupdate.wsus.targeting.models import MODELS, Computer, TargetGroup

    TargetGroup.update(parent=None).execute()  # as a database from before the targeting tables
    db.database.drop_tables([m for m in MODELS if m not in (Computer, TargetGroup)])
    db.database.drop_tables([Computer, TargetGroup])
    version = next(m.version for m in schema.MIGRATIONS if m.apply is schema._wsus_targeting)
    schema.SchemaVersion.delete().execute()  # stamped just before it
    schema.SchemaVersion.create(version=version - 1, name=schema.MIGRATIONS[version - 2].name)
    db.database.close()
    upgraded = install.cli("db", "upgrade")
    assert f"applied migration {version}: WSUS targeting" in upgraded.stdout + upgraded.stderr
    assert {(d["Group"], d["UpdateID"], d["Action"]) for d in run(install, "wsus", "approvals")} == before
    assert [g["Name"] for g in run(install, "wsus", "groups", "list")] == [
        "All Computers", "Test", "Unassigned Computers"]
