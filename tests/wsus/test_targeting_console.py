"""The console's WSUS groups page against ``devupdate serve`` over HTTP: the groups tree with the
computers in each, the computers of one group, the approvals of one update; bad input is a 4xx page."""

from __future__ import annotations

import html
import re

import pytest
from admin import consolekit as kit
from catalogkit import software

pytestmark = pytest.mark.timeout(150)

A = "aaaaaaaa-0000-4000-8000-000000000001"


@pytest.fixture
def server(install, live_server, database, tmp_path):
    from devupdate.wsus.targeting import service

    kit.setup_install(install)
    (tmp_path / "a.xml").write_text(software(A))
    install.cli("wsus", "import", str(tmp_path / "a.xml"))
    site = service.add_group("Site <b>", actor="t")
    service.add_group("Floor", parent=site["Id"], actor="t")
    pc = service.register_computer("pc-1", {"DnsName": "pc1.corp.example", "OSMajorVersion": "10",
                                            "OSMinorVersion": "0", "OSBuildNumber": "19045"})
    service.register_computer("pc-2", {"DnsName": "pc2.corp.example"})
    service.assign_computer(str(pc.id), ["Floor"], actor="t")
    service.approve(A, "Site <b>", "uninstall", actor="cli:alice")
    service.approve(A, "All Computers", "install", actor="cli:bob", deadline="2026-12-24T18:00:00Z")
    database.close()
    kit.add_admin(install, "olga", "operator")
    kit.add_admin(install, "alice", "admin")
    return live_server(workers=1)


def tree(text: str) -> list[tuple[str, str]]:
    return re.findall(r'<li style="margin-left: ([0-9.]+)em" data-group="[0-9a-f-]{36}"><a [^>]*>([^<]*)</a>', text)


def test_groups_computers_and_approvals_page(server):
    olga = kit.Browserless(server)
    assert olga.sign_in("olga").status_code == 303
    listed = olga.get("/targeting")
    assert listed.status_code == 200
    assert tree(listed.text) == [("0.0", "All Computers"), ("1.5", html.escape("Site <b>")), ("3.0", "Floor"),
                                 ("1.5", "Test"), ("1.5", "Unassigned Computers")]
    assert "Site <b>" not in listed.text  # names are escaped
    assert "pc1.corp.example" in listed.text and "pc2.corp.example" in listed.text
    assert "targeting mode: <strong>server</strong>" in listed.text
    approvals = re.findall(r"<td data-label=\"Group\">([^<]*)</td>\s*<td data-label=\"Action\">(\w+)</td>",
                           olga.get(f"/targeting?update={A}").text)
    assert approvals == [(html.escape("Site <b>"), "Uninstall"), ("All Computers", "Install")]
    site = olga.get("/targeting?group=" + "Site%20%3Cb%3E").text
    assert "pc1.corp.example" in site and "pc2.corp.example" not in site
    unassigned = olga.get("/targeting?group=Unassigned%20Computers").text
    assert "pc2.corp.example" in unassigned and "pc1.corp.example" not in unassigned
    assert olga.get("/targeting?group=nowhere").status_code == 404
    assert olga.get("/targeting?update=not-a-guid").status_code == 400
    assert "approved for no group" in olga.get("/targeting?update=12345678-0000-4000-8000-000000000000").text


def test_approve_and_withdraw_from_the_console(install, server):
    import json

    olga = kit.Browserless(server)
    olga.sign_in("olga")
    token = kit.csrf_of(olga.get(f"/targeting?update={A}").text)
    assert 'id="approve"' not in olga.get(f"/targeting?update={A}").text  # operators see no form
    assert olga.post("/targeting/approve", data={"csrf_token": token, "update": A, "group": "Test",
                                                 "action": "install"}).status_code == 403
    alice = kit.Browserless(server)
    alice.sign_in("alice")
    shown = alice.get(f"/targeting?update={A}").text
    assert 'id="approve"' in shown
    token = kit.csrf_of(shown)
    assert alice.post("/targeting/approve", data={"update": A, "group": "Test", "action": "install"}).status_code == 400
    done = alice.post("/targeting/approve", data={"csrf_token": token, "update": A, "group": "Test",
                                                  "action": "block", "deadline": ""})
    assert (done.status_code, done.headers["Location"]) == (303, f"/console/targeting?update={A}")
    assert f"Approved {A} for Test: Block." in alice.get(f"/targeting?update={A}").text
    refused = alice.post("/targeting/approve", data={"csrf_token": token, "update": A, "group": "All Computers",
                                                     "action": "block"})
    assert refused.status_code == 303
    notice = "Approval refused: Block is not allowed on &#39;All Computers&#39;"
    assert notice in alice.get(f"/targeting?update={A}").text
    approvals = json.loads(install.cli("wsus", "approvals", A, "--json").stdout)
    assert {(d["Group"], d["Action"], d["Actor"]) for d in approvals} == {
        ("Test", "Block", "console:alice"), ("Site <b>", "Uninstall", "cli:alice"),
        ("All Computers", "Install", "cli:bob")}
    alice.post("/targeting/unapprove", data={"csrf_token": token, "update": A, "group": "Test"})
    assert f"Withdrew the approval of {A} for Test." in alice.get(f"/targeting?update={A}").text
    events = json.loads(install.cli("audit", "list", "--action", "wsus.", "--json").stdout)
    assert [(e["Actor"], e["Action"], e["Outcome"]) for e in events[:3]] == [
        ("console:alice", "wsus.unapprove", "ok"), ("console:alice", "wsus.approve", "refused"),
        ("console:alice", "wsus.approve", "ok")]


def test_add_a_group_and_assign_a_computer_from_the_console(install, server):
    import json

    olga = kit.Browserless(server)
    olga.sign_in("olga")
    token = kit.csrf_of(olga.get("/targeting").text)
    assert 'id="add-group"' not in olga.get("/targeting").text and 'data-action="assign"' not in \
        olga.get("/targeting").text  # operators see no forms
    assert olga.post("/targeting/groups", data={"csrf_token": token, "name": "Lab"}).status_code == 403
    assert olga.post("/targeting/assign", data={"csrf_token": token, "computer": "pc-2",
                                                "groups": "Test"}).status_code == 403
    alice = kit.Browserless(server)
    alice.sign_in("alice")
    shown = alice.get("/targeting").text
    assert 'id="add-group"' in shown and 'data-action="assign"' in shown
    token = kit.csrf_of(shown)
    assert alice.post("/targeting/groups", data={"name": "Lab"}).status_code == 400  # no CSRF token
    added = alice.post("/targeting/groups", data={"csrf_token": token, "name": "Lab", "parent": "Floor"})
    assert added.status_code == 303 and added.headers["Location"].startswith("/console/targeting?group=")
    assert "Added the group Lab." in alice.get(added.headers["Location"].removeprefix("/console")).text
    assert ("4.5", "Lab") in tree(alice.get("/targeting").text)
    again = alice.post("/targeting/groups", data={"csrf_token": token, "name": "lab"})
    assert again.headers["Location"] == "/console/targeting"
    assert "Adding the group refused: a target group named &#39;lab&#39; exists already" in alice.get(
        "/targeting").text
    done = alice.post("/targeting/assign", data={"csrf_token": token, "computer": "pc-2", "groups": ["Lab", "Test"]})
    assert done.status_code == 303
    assert "pc2.corp.example is now in Lab, Test." in alice.get(done.headers["Location"].removeprefix("/console")).text
    assert "pc2.corp.example" in alice.get("/targeting?group=Floor").text  # Lab is below Floor
    alice.post("/targeting/assign", data={"csrf_token": token, "computer": "pc-2", "groups": "All Computers"})
    assert "Assignment refused: every computer is in &#39;All Computers&#39;" in alice.get("/targeting").text
    alice.post("/targeting/assign", data={"csrf_token": token, "computer": "ghost"})
    assert "Assignment refused: no computer &#39;ghost&#39;" in alice.get("/targeting").text
    shown = json.loads(install.cli("wsus", "computers", "show", "pc-2", "--json").stdout)
    assert [g["Name"] for g in shown["ServerGroups"]] == ["Lab", "Test"]
    events = json.loads(install.cli("audit", "list", "--action", "wsus.", "--json").stdout)
    assert [(e["Actor"], e["Action"], e["Outcome"]) for e in events[:5]] == [
        ("console:alice", "wsus.computer.assign", "refused"), ("console:alice", "wsus.computer.assign", "refused"),
        ("console:alice", "wsus.computer.assign", "ok"), ("console:alice", "wsus.group.add", "refused"),
        ("console:alice", "wsus.group.add", "ok")]


def test_rename_and_remove_a_group_from_the_console(install, server):
    import json

    olga = kit.Browserless(server)
    olga.sign_in("olga")
    floor = olga.get("/targeting?group=Floor").text
    assert 'id="rename-group"' not in floor and 'id="remove-group"' not in floor  # operators see no forms
    floor_id = re.search(r'data-group="([0-9a-f-]{36})"><a [^>]*>Floor<', floor).group(1)
    token = kit.csrf_of(floor)
    assert olga.post(f"/targeting/groups/{floor_id}/rename", data={"csrf_token": token, "name": "X"}).status_code == 403
    assert olga.post(f"/targeting/groups/{floor_id}/remove", data={"csrf_token": token}).status_code == 403

    alice = kit.Browserless(server)
    alice.sign_in("alice")
    shown = alice.get(f"/targeting?group={floor_id}").text
    assert 'id="rename-group"' in shown and 'id="remove-group"' in shown
    assert ('data-confirm="Remove the group All Computers / Site &lt;b&gt; / Floor? Its approvals are withdrawn; '
            'its 1 computer falls back to their other groups or Unassigned Computers."') in shown
    builtin = alice.get("/targeting?group=Test").text
    assert 'id="rename-group"' not in builtin
    assert "Test is built in: it keeps its name and cannot be removed." in builtin
    token = kit.csrf_of(shown)
    assert alice.post(f"/targeting/groups/{floor_id}/rename", data={"name": "Floor 1"}).status_code == 400  # no CSRF

    done = alice.post(f"/targeting/groups/{floor_id}/rename", data={"csrf_token": token, "name": " Floor 1 "})
    assert (done.status_code, done.headers["Location"]) == (303, f"/console/targeting?group={floor_id}")
    page = alice.get(f"/targeting?group={floor_id}").text
    assert "Renamed the group to Floor 1." in page and "pc1.corp.example" in page
    assert tree(page)[2] == ("3.0", "Floor 1")
    # refusals: the service's reasons, back on the group's page (or the plain page for an unknown group)
    for name, reason in (("site <B>", "a target group named &#39;site &lt;B&gt;&#39; exists already"),
                         ("a;b", "a group name cannot contain &#39;;&#39;"), ("", "a group name cannot be empty")):
        refused = alice.post(f"/targeting/groups/{floor_id}/rename", data={"csrf_token": token, "name": name})
        assert refused.headers["Location"] == f"/console/targeting?group={floor_id}"
        assert f"Renaming the group refused: {reason}" in alice.get(f"/targeting?group={floor_id}").text
    test_id = re.search(r'data-group="([0-9a-f-]{36})"><a [^>]*>Test<', page).group(1)
    alice.post(f"/targeting/groups/{test_id}/rename", data={"csrf_token": token, "name": "Pilot"})
    assert "Renaming the group refused: &#39;Test&#39; is built in and keeps its name" in alice.get(
        f"/targeting?group={test_id}").text
    ghost = alice.post("/targeting/groups/nowhere/remove", data={"csrf_token": token})
    assert ghost.headers["Location"] == "/console/targeting"
    assert "Removing the group refused: no target group &#39;nowhere&#39;" in alice.get("/targeting").text
    site_id = re.search(r'data-group="([0-9a-f-]{36})"><a [^>]*>Site &lt;b&gt;<', page).group(1)
    alice.post(f"/targeting/groups/{site_id}/remove", data={"csrf_token": token})
    assert "Removing the group refused: &#39;Site &lt;b&gt;&#39; has subgroups; remove or move them first" in \
        alice.get(f"/targeting?group={site_id}").text

    gone = alice.post(f"/targeting/groups/{floor_id}/remove", data={"csrf_token": token})
    assert (gone.status_code, gone.headers["Location"]) == (303, "/console/targeting")
    page = alice.get("/targeting").text
    assert ("Removed the group Floor 1: its approvals are withdrawn and its computers fall back to their other "
            "groups or Unassigned Computers.") in page
    assert tree(page) == [("0.0", "All Computers"), ("1.5", html.escape("Site <b>")), ("1.5", "Test"),
                          ("1.5", "Unassigned Computers")]
    assert "pc1.corp.example" in alice.get("/targeting?group=Unassigned%20Computers").text
    shown = json.loads(install.cli("wsus", "computers", "show", "pc-1", "--json").stdout)
    assert shown["ServerGroups"] == [{"Id": "b73ca6ed-5727-47f3-84de-015e03f6a88a", "Name": "Unassigned Computers"}]
    events = json.loads(install.cli("audit", "list", "--action", "wsus.group.", "--json").stdout)
    assert [(e["Actor"], e["Action"], e["Outcome"]) for e in events[:8]] == [
        ("console:alice", "wsus.group.remove", "ok"), ("console:alice", "wsus.group.remove", "refused"),
        ("console:alice", "wsus.group.remove", "refused"), ("console:alice", "wsus.group.rename", "refused"),
        ("console:alice", "wsus.group.rename", "refused"), ("console:alice", "wsus.group.rename", "refused"),
        ("console:alice", "wsus.group.rename", "refused"), ("console:alice", "wsus.group.rename", "ok")]
    assert (events[0]["Detail"], events[-1]["Actor"]) == ({"Computers": 1, "Deployments": 0}, "t")


def test_switch_the_targeting_mode_from_the_console(install, server):
    import json

    olga = kit.Browserless(server)
    olga.sign_in("olga")
    shown = olga.get("/targeting").text
    assert 'id="targeting-mode"' not in shown
    assert olga.post("/targeting/mode", data={"csrf_token": kit.csrf_of(shown), "mode": "client"}).status_code == 403
    alice = kit.Browserless(server)
    alice.sign_in("alice")
    shown = alice.get("/targeting").text
    assert 'data-confirm="Switch to client-side targeting? Computers are in the groups their targetGroupName' in shown
    token = kit.csrf_of(shown)
    assert alice.post("/targeting/mode", data={"mode": "client"}).status_code == 400  # no CSRF token
    done = alice.post("/targeting/mode", data={"csrf_token": token, "mode": "client"})
    assert (done.status_code, done.headers["Location"]) == (303, "/console/targeting")
    page = alice.get("/targeting").text
    assert ("Targeting is client-side now. Computers are in the groups their targetGroupName policy names, from "
            "their next cookie; the assignments made here are kept for a switch back.") in page
    assert "targeting mode: <strong>client</strong>" in page and 'data-action="assign"' not in page
    assert "Switch to server-side targeting" in page
    assert json.loads(install.cli("wsus", "targeting", "--json").stdout) == {"Mode": "client"}
    alice.post("/targeting/mode", data={"csrf_token": token, "mode": "client"})
    assert "Targeting was client-side already; nothing changed." in alice.get("/targeting").text
    alice.post("/targeting/mode", data={"csrf_token": token, "mode": "both"})
    assert "Changing the targeting mode refused: targeting mode &#39;both&#39; is not one of server, client" in \
        alice.get("/targeting").text
    alice.post("/targeting/mode", data={"csrf_token": token, "mode": "server"})
    assert 'data-action="assign"' in alice.get("/targeting").text
    events = json.loads(install.cli("audit", "list", "--action", "wsus.targeting-mode", "--json").stdout)
    assert [(e["Actor"], e["Before"], e["After"]) for e in events] == [
        ("console:alice", {"Mode": "client"}, {"Mode": "server"}),
        ("console:alice", {"Mode": "server"}, {"Mode": "client"})]
