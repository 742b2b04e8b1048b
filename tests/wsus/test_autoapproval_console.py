"""The console's WSUS auto-approval page and EULA acceptance against ``devupdate serve`` over HTTP: the
rules with their state, set / pause / resume and the EULAs the rules wait for, with the roles, CSRF and
audit entries of every console action; the same service functions as ``devupdate wsus auto-approval``
and ``wsus eula``, so the CLI sees what the console did."""

from __future__ import annotations

import json
import re

import pytest
from admin import consolekit as kit
from catalogkit import category, software
from helpers.tools import wait_for

pytestmark = pytest.mark.timeout(150)

PRODUCT = "c0c0c0c0-0000-4000-8000-0000000000c1"
A = "aaaaaaaa-0000-4000-8000-000000000001"
E = "eeeeeeee-0000-4000-8000-00000000000e"  # names an EULA
EULA = "e0e0e0e0-1111-4222-8333-444444444444"


@pytest.fixture
def server(install, live_server, tmp_path):
    kit.setup_install(install)
    (tmp_path / "p.xml").write_text(category(PRODUCT, "A product", "Product"))
    install.cli("wsus", "import", str(tmp_path / "p.xml"))
    install.cli("wsus", "products", "select", PRODUCT)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.xml").write_text(software(A, title="Update A", categories=(PRODUCT,)))
    (folder / "e.xml").write_text(software(E, title="Update E", categories=(PRODUCT,)).replace(
        'PublicationState="Published"', f'PublicationState="Published" EulaID="{EULA}"'))
    install.cli("wsus", "import", str(folder))  # the Test rule approves A; E waits for its EULA
    kit.add_admin(install, "olga", "operator")
    kit.add_admin(install, "alice", "admin")
    started = live_server(workers=1)
    # the server's first hourly run of the rules comes two seconds after start: over before the test acts
    lock = install.home / "wsus-auto-approval.lock"
    assert wait_for(lambda: lock.exists() and b"last_run" in lock.read_bytes(), timeout=30)
    return started


def rules(text: str) -> dict[str, list[str]]:
    """Rule name → the texts of its row's cells (tags stripped)."""
    found = {}
    for name, row in re.findall(r'<tr id="rule-[a-z-]+" data-rule="([^"]+)">(.*?)</tr>', text, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        found[name] = [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in cells]
    return found


def audit(install, action: str) -> list[tuple[str, str, str]]:
    events = json.loads(install.cli("audit", "list", "--action", action, "--json").stdout)
    return [(e["Actor"], e["Action"], e["Outcome"]) for e in events]


def test_rules_page_pause_resume_and_set(install, server):
    olga = kit.Browserless(server)
    olga.sign_in("olga")
    shown = olga.get("/auto-approval")
    assert shown.status_code == 200
    assert 'data-action="pause"' not in shown.text and 'name="enabled"' not in shown.text  # operators read only
    row = rules(shown.text)
    assert list(row) == ["All Computers", "Definition Updates", "Test"]
    assert row["All Computers"][:8] == ["All Computers", "All Computers (Install)", "7 days", "yes", "no", "active",
                                        "0", "0"]
    assert row["Test"][:8] == ["Test", "Test (Install)", "on arrival", "yes", "no", "active", "1", "1"]
    token = kit.csrf_of(shown.text)
    assert olga.post("/auto-approval/All%20Computers", data={"csrf_token": token, "do": "pause"}).status_code == 403

    alice = kit.Browserless(server)
    alice.sign_in("alice")
    shown = alice.get("/auto-approval").text
    assert 'id="set-all-computers"' in shown and 'data-action="pause"' in shown
    assert 'name="defer_days" form="set-all-computers"' in shown and 'form="set-test" min=' not in shown
    token = kit.csrf_of(shown)
    assert alice.post("/auto-approval/All%20Computers", data={"do": "pause"}).status_code == 400  # no CSRF token

    paused = alice.post("/auto-approval/All%20Computers", data={"csrf_token": token, "do": "pause"})
    assert (paused.status_code, paused.headers["Location"]) == (303, "/console/auto-approval#rule-all-computers")
    page = alice.get("/auto-approval").text
    assert "Paused the rule All Computers. It adds no approval until resumed." in page
    assert rules(page)["All Computers"][5] == "paused" and 'data-action="resume"' in page
    alice.post("/auto-approval/all%20computers", data={"csrf_token": token, "do": "pause"})
    assert "The rule All Computers was already so; nothing changed." in alice.get("/auto-approval").text
    alice.post("/auto-approval/All%20Computers", data={"csrf_token": token, "do": "resume"})
    assert ("Resumed the rule All Computers. The approvals that came due meanwhile are added at its next run."
            in alice.get("/auto-approval").text)

    # the row's form: the deferral and both check boxes (an unchecked box is absent from the form)
    alice.post("/auto-approval/All%20Computers", data={"csrf_token": token, "do": "set", "defer_days": "3",
                                                       "enabled": "yes", "accept_eulas": "yes"})
    page = alice.get("/auto-approval").text
    assert "Changed the rule All Computers." in page
    assert rules(page)["All Computers"][:6] == ["All Computers", "All Computers (Install)", "days", "", "", "active"]
    assert 'value="3" aria-label="Deferral of All Computers in days"' in page
    alice.post("/auto-approval/Definition%20Updates", data={"csrf_token": token, "do": "set"})  # both unchecked
    assert rules(alice.get("/auto-approval").text)["Definition Updates"][5] == "disabled"
    for rule, fields, reason in (
            ("All%20Computers", {"defer_days": "31", "enabled": "yes"}, "the deferral is 0 to 30 days"),
            ("All%20Computers", {"defer_days": "three", "enabled": "yes"},
             "the deferral is a whole number of days, 0 to 30 (not &#39;three&#39;)"),
            ("Test", {"defer_days": "2", "enabled": "yes"}, "rule &#39;Test&#39; approves on arrival and has no "
                                                             "deferral"),
            ("Nightly", {"enabled": "yes"}, "no auto-approval rule &#39;Nightly&#39;; the rules are")):
        refused = alice.post(f"/auto-approval/{rule}", data={"csrf_token": token, "do": "set", **fields})
        assert refused.status_code == 303
        assert f"Changing the rule refused: {reason}" in alice.get("/auto-approval").text, reason
    assert alice.post("/auto-approval/Test", data={"csrf_token": token, "do": "approve"}).status_code == 404

    listed = {r["Name"]: r for r in json.loads(install.cli("wsus", "auto-approval", "list", "--json").stdout)}
    assert (listed["All Computers"]["DeferDays"], listed["All Computers"]["AcceptEulas"],
            listed["All Computers"]["Paused"], listed["Definition Updates"]["Enabled"]) == (3, True, False, False)
    assert listed["All Computers"]["ChangedBy"] == "console:alice"
    assert audit(install, "wsus.auto-approval.") == [
        ("console:alice", "wsus.auto-approval.set", "refused")] * 3 + [  # 'three' is not a number: not sent
        ("console:alice", "wsus.auto-approval.set", "ok"), ("console:alice", "wsus.auto-approval.set", "ok"),
        ("console:alice", "wsus.auto-approval.resume", "ok"), ("console:alice", "wsus.auto-approval.pause", "ok")]


def test_accept_an_eula_then_approve_with_a_priority(install, server):
    olga = kit.Browserless(server)
    olga.sign_in("olga")
    waiting = olga.get("/auto-approval").text
    assert re.search(rf'<tr data-update="{E}">.*?<code>{EULA}</code>.*?Test', waiting, re.S)
    assert 'data-action="accept-eula"' not in waiting and 'id="accept-eula"' not in waiting
    assert "No EULA is accepted yet." in waiting
    on_update = olga.get(f"/targeting?update={E}").text
    assert f"This update names license terms (EULA <code>{EULA}</code>) not yet accepted" in on_update
    assert 'data-action="accept-eula"' not in on_update
    token = kit.csrf_of(waiting)
    assert olga.post("/eulas/accept", data={"csrf_token": token, "eula": E}).status_code == 403

    alice = kit.Browserless(server)
    alice.sign_in("alice")
    page = alice.get(f"/targeting?update={E}").text
    token = kit.csrf_of(page)
    assert alice.post("/eulas/accept", data={"eula": E}).status_code == 400  # no CSRF token
    alice.post("/targeting/approve", data={"csrf_token": token, "update": E, "group": "All Computers",
                                           "action": "install"})
    assert (f"Approval refused: update {E} needs EULA {EULA} accepted before it can be approved"
            in alice.get(f"/targeting?update={E}").text)
    # accepted from the update's page: back there, the approval form now works
    done = alice.post("/eulas/accept", data={"csrf_token": token, "eula": EULA,
                                             "next": f"/console/targeting?update={E}"})
    assert (done.status_code, done.headers["Location"]) == (303, f"/console/targeting?update={E}")
    page = alice.get(f"/targeting?update={E}").text
    assert f"Accepted EULA {EULA}: the updates that name it can be approved." in page
    assert re.search(rf"EULA <code>{EULA}</code>\) were accepted by console:alice on 20\d\d-", page)
    alice.post("/targeting/approve", data={"csrf_token": token, "update": E, "group": "All Computers",
                                           "action": "install", "priority": "high"})
    page = alice.get(f"/targeting?update={E}").text
    assert f"Approved {E} for All Computers: Install." in page
    assert re.search(r'<td data-label="Group">All Computers</td>\s*<td data-label="Action">Install</td>'
                     r'<td data-label="Deadline">—</td>\s*<td data-label="Priority">high</td>', page)
    alice.post("/targeting/approve", data={"csrf_token": token, "update": E, "group": "Test", "action": "install",
                                           "priority": "urgent"})
    assert "Approval refused: the download priority is low, normal or high" in alice.get(f"/targeting?update={E}").text
    # the rule's skipped update now shows the acceptance; accepting again changes nothing
    waiting = alice.get("/auto-approval").text
    assert "accepted: approved at the rule's next run" in waiting
    assert re.search(rf"<code>{EULA}</code></td><td data-label=\"Accepted by\">console:alice</td>", waiting)
    alice.post("/eulas/accept", data={"csrf_token": token, "eula": E, "next": "https://elsewhere.example/"})
    page = alice.get("/auto-approval").text  # a foreign next: back to the auto-approval page
    assert f"EULA {EULA} was already accepted (by console:alice); nothing changed." in page
    for ref, reason in ((A, f"update {A} needs no EULA"), ("nope", "EULA or update &#39;nope&#39; is not a GUID")):
        alice.post("/eulas/accept", data={"csrf_token": token, "eula": ref})
        assert f"Accepting the EULA refused: {reason}" in alice.get("/auto-approval").text
    approvals = json.loads(install.cli("wsus", "approvals", E, "--json").stdout)
    assert [(d["Group"], d["Action"], d["DownloadPriority"], d["Actor"]) for d in approvals] == [
        ("All Computers", "Install", 3, "console:alice")]
    assert audit(install, "wsus.eula.") == [("console:alice", "wsus.eula.accept", "refused")] * 2 + [
        ("console:alice", "wsus.eula.accept", "ok")]
    ran = json.loads(install.cli("wsus", "auto-approval", "run", "--json").stdout)
    assert ran[0]["Rule"] == "Test" and ran[0]["Approved"] == [E]
    assert "No update is waiting for its license terms." in alice.get("/auto-approval").text
