"""The web console in a real browser (system Chromium via Playwright) against ``devupdate serve``:
sign in, upload a cab with the upload page, approve with the confirmation dialog, see the dashboard
and the fleet follow, roll back; test devices, inventory search, device logs, the operator's view.
Screenshots of the dashboard and the rules page (laptop and phone) go to the test run's folder;
``python tools/screenshots.py`` runs this file to refresh docs/screenshots/ with them.
"""

from __future__ import annotations

import re

import consolekit as kit
import pytest
from helpers.cabs import make_update, realistic_updates
from helpers.tools import wait_for

pytestmark = pytest.mark.timeout(120)

RULE_CX600 = make_update("Polycom", "CX600").id


@pytest.fixture
def shots(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "console-screenshots"


sign_in, go = kit.sign_in, kit.go  # shared with the other console browser tests


def confirm_action(page, rule_id: str, action: str) -> str:
    """Click an action of a rule's row, read the dialog's statement, confirm; returns the statement."""
    page.click(f"#rule-{rule_id} button[data-action={action}]")
    dialog = page.locator("#confirm-dialog")
    dialog.wait_for(state="visible")
    statement = page.inner_text("#confirm-summary")
    page.click("#confirm-ok")
    page.wait_for_load_state("load")
    page.wait_for_selector(".notice-ok")
    return statement


def offered_versions(server, phone) -> set[str]:
    """What one phone is offered now (the servers pick up a change within a second)."""
    return {f.version for f in kit.check_in(server, [phone])[0].files}


def device_count(install) -> int:
    from devupdate import db
    from devupdate.devices.inventory import Device

    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    try:
        return Device.select().count()
    finally:
        db.database.close()


def test_upload_approve_dashboard_rollback(install, live_server, browser, tmp_path, shots):
    kit.setup_install(install)
    kit.add_admin(install, "alice", "admin")
    # What the fleet runs today: CX600 at V_MID approved; a fleet on old and current versions.
    old = kit.cab_in(tmp_path / "old", [make_update("Polycom", "CX600", kit.V_MID),
                                        make_update("Aastra", "6725ip", kit.V_MID)])
    kit.import_in_process(install, old, approve=(RULE_CX600, make_update("Aastra", "6725ip").id))
    server = live_server(workers=2)
    fleet = (kit.phones(6, kit.CX600, kit.V_MID, seed=1) + kit.phones(3, kit.CX600, kit.V_OLD, seed=2)
             + kit.phones(4, kit.AASTRA, kit.V_MID, seed=3) + kit.phones(2, kit.HP, "4.0.7577.4300", seed=4))
    kit.check_in(server, fleet)
    assert wait_for(lambda: device_count(install) == len(fleet)), "inventory did not record the check-ins"

    page = browser.new_page(viewport=kit.LAPTOP)
    sign_in(page, server, "alice")
    assert page.inner_text("#seen .big").startswith(f"{len(fleet)} ")

    # Upload a vendor package through the upload page: progress bar, then the rules it touched.
    cab = kit.cab_in(tmp_path / "new", realistic_updates(kit.V_NEW), image_sizes=300_000)
    go(page, "Upload")
    page.set_input_files("input[name=cab]", str(cab))
    page.click("#upload-button")
    page.wait_for_selector("#upload-result:not([hidden])", timeout=60_000)
    assert page.get_attribute("#upload-status", "data-state") == "done"
    assert page.eval_on_selector("#upload-progress", "el => el.value") == 100
    assert "imported" in page.inner_text("#upload-text")
    touched = page.inner_text("#upload-result")
    assert "Polycom CX600 ENU phones · CPE" in touched and kit.V_NEW in touched
    assert len(page.query_selector_all("#upload-result li")) == len(realistic_updates())

    # The dashboard lists the nine rules waiting for approval.
    go(page, "Dashboard")
    assert page.inner_text("#awaiting .big").startswith("9 ")

    # Approve CX600: the dialog states what the fleet will receive.
    go(page, "Rules")
    row = page.locator(f"#rule-{RULE_CX600}")
    assert "awaiting approval" in row.inner_text()
    statement = confirm_action(page, RULE_CX600, "approve")
    assert statement == f"All Polycom CX600 ENU phones will be offered CPE {kit.V_NEW} (upgrade from {kit.V_MID})."
    assert "Approved Polycom CX600 ENU phones CPE" in page.inner_text(".notice-ok")
    cells = row.inner_text()
    assert kit.V_NEW in cells and "awaiting approval" not in cells
    kit.save_screenshot(page, "rules-laptop", shots)

    # The fleet follows: a CX600 phone is now offered V_NEW.
    assert wait_for(lambda: offered_versions(server, fleet[0]) == {kit.V_NEW}), "the fleet was not offered V_NEW"

    # The dashboard reflects it: 8 rules waiting, the CX600 bar has V_NEW approved and nobody on it yet.
    go(page, "Dashboard")
    assert page.inner_text("#awaiting .big").startswith("8 ")
    assert "Polycom CX600 ENU" not in page.inner_text("#awaiting")
    chart = page.inner_text("#versions")
    cx600 = page.locator(".bar-row", has_text="Polycom CX600")
    assert "9 devices · 0 on approved" in cx600.inner_text()
    assert re.search(rf"{re.escape(kit.V_MID)}\s+6", cx600.inner_text())
    assert "HP 4120" in chart and "no approved rule" in page.locator(".bar-row", has_text="HP 4120").inner_text()
    assert page.locator("#compliance").inner_text().count("Outdated") == 1
    kit.save_screenshot(page, "dashboard-laptop", shots)

    page.set_viewport_size(kit.PHONE)
    kit.save_screenshot(page, "dashboard-phone", shots)
    go(page, "Rules")
    kit.save_screenshot(page, "rules-phone", shots)
    page.set_viewport_size(kit.LAPTOP)

    # Roll back CX600: the dialog says it is a downgrade; afterwards V_MID is approved again.
    statement = confirm_action(page, RULE_CX600, "restore")
    assert statement == f"All Polycom CX600 ENU phones will be offered CPE {kit.V_MID} (downgrade from {kit.V_NEW})."
    cells = page.locator(f"#rule-{RULE_CX600}").inner_text()
    assert kit.V_MID in cells and kit.V_NEW not in cells
    assert wait_for(lambda: offered_versions(server, fleet[6]) == {kit.V_MID})  # a phone on V_OLD gets V_MID

    # A second roll back would withdraw the update: the dialog says nobody gets anything.
    page.click(f"#rule-{RULE_CX600} button[data-action=restore]")
    assert page.inner_text("#confirm-summary").startswith("Nobody will be offered anything for this rule")
    page.click("#confirm-dialog button[value=cancel]")
    assert page.locator(f"#rule-{RULE_CX600}").inner_text().count(kit.V_MID) == 1

    # Reject (reset) the pending Aastra version: the fleet keeps its approved one.
    aastra = make_update("Aastra", "6725ip").id
    statement = confirm_action(page, aastra, "reset")
    assert statement.startswith(f"Pending {kit.V_NEW} is rejected. All Aastra 6725ip ENU phones keep being offered")

    # The audit trail names the console user for every change.
    go(page, "Audit trail")
    trail = page.inner_text("table.audit")
    for action in ("rule.approve", "rule.restore", "rule.reset", "import", "console.sign-in"):
        assert action in trail
    assert "console:alice" in trail
    page.close()


def test_test_devices_inventory_logs_and_operator(install, live_server, browser, tmp_path):
    kit.setup_install(install)
    kit.add_admin(install, "alice", "admin")
    kit.add_admin(install, "olga", "operator")
    cab = kit.cab_in(tmp_path / "cab", [make_update("Polycom", "CX600", kit.V_MID)])
    kit.import_in_process(install, cab, approve=(RULE_CX600,))
    server = live_server(workers=2)
    current = kit.phones(2, kit.CX600, kit.V_MID, seed=11, prefix="00-04-F2")
    outdated = kit.phones(3, kit.CX600, kit.V_OLD, seed=12, prefix="00-0E-08")
    kit.check_in(server, current + outdated)
    assert wait_for(lambda: device_count(install) == 5)
    status = __import__("requests").post(
        f"{server.url}/RequestHandler/Files?type=Watson&mac={outdated[0].mac}&name=crash.dmp", data=b"MDMP" * 100)
    assert status.status_code == 201, status.text

    page = browser.new_page(viewport=kit.LAPTOP)
    sign_in(page, server, "alice")

    # Test devices: add by MAC (refusal first: a bad MAC is shown with the reason), then remove.
    go(page, "Test devices")
    page.fill("input[name=name]", "lab-phone")
    page.fill("input[name=identifier]", "not-a-mac")
    page.click("button:has-text('Add test device')")
    assert "is not a MAC address" in page.inner_text(".notice-error")
    page.fill("input[name=identifier]", current[0].mac.lower())
    page.click("button:has-text('Add test device')")
    assert "Added test device lab-phone" in page.inner_text(".notice-ok")
    mac = current[0].mac.replace("-", "")
    assert mac in page.inner_text("table")

    # Inventory: the test device is marked; search by MAC (any spelling), serial and user; outdated filter.
    go(page, "Devices")
    assert page.locator("tbody tr").count() == 5
    assert "test device" in page.locator("tbody tr", has_text=mac).inner_text()
    for term in (current[0].mac.lower(), mac[-6:], outdated[1].serial.lower(), outdated[2].user_id.upper()):
        page.fill("input[name=q]", term)
        page.click("button:has-text('Search')")
        assert page.locator("tbody tr").count() == 1, term
    page.fill("input[name=q]", "")
    page.select_option("select[name=status]", "outdated")
    page.click("button:has-text('Search')")
    rows = page.locator("tbody tr")
    assert rows.count() == 3 and all("Outdated" in rows.nth(i).inner_text() for i in range(3))

    # Device logs: listed, and downloaded with its bytes.
    go(page, "Device logs")
    assert "crash.dmp" in page.inner_text("table")
    with page.expect_download() as download:
        page.click("a:has-text('Download')")
    assert open(download.value.path(), "rb").read() == b"MDMP" * 100

    # Remove the test device behind its confirmation.
    go(page, "Test devices")
    page.click("button:has-text('Remove')")
    assert "no longer be offered pending versions" in page.inner_text("#confirm-summary")
    page.click("#confirm-ok")
    page.wait_for_selector(".notice-ok")
    assert "No test devices." in page.inner_text("table")
    page.click("button:has-text('Sign out')")
    assert "Signed out." in page.inner_text(".notice-info")

    # The operator sees everything and can change nothing: no buttons, no upload link.
    sign_in(page, server, "olga")
    assert page.locator(".role-operator").inner_text() == "operator"
    assert page.locator('nav a:text-is("Upload")').count() == 0
    go(page, "Rules")
    assert page.locator("form.act").count() == 0 and page.locator("button[data-action]").count() == 0
    go(page, "Test devices")
    assert page.locator("text=Add a test device").count() == 0
    page.goto(f"{server.url}/console/rules/{RULE_CX600}/restore")
    assert "may not change rules" in page.inner_text("main")
    page.close()


def test_dashboard_activity_and_rule_rollout_curve(install, live_server, browser, tmp_path, shots):
    """Check-ins reach the dashboard's days and a rule's rollout curve through the inventory's batch."""
    kit.setup_install(install)
    kit.add_admin(install, "alice", "admin")
    kit.import_in_process(install, kit.cab_in(tmp_path / "old", [make_update("Polycom", "CX600", kit.V_MID)]),
                          approve=(RULE_CX600,))
    server = live_server(workers=1)
    fleet = kit.phones(5, kit.CX600, kit.V_MID, seed=1) + kit.phones(3, kit.CX600, kit.V_OLD, seed=2)
    kit.check_in(server, fleet)
    assert wait_for(lambda: device_count(install) == len(fleet)), "inventory did not record the check-ins"
    kit.import_in_process(install, kit.cab_in(tmp_path / "new", [make_update("Polycom", "CX600", kit.V_NEW)]),
                          approve=(RULE_CX600,))
    updated = kit.phones(5, kit.CX600, kit.V_NEW, seed=1)[:2]  # two of the first five moved on
    kit.check_in(server, updated)

    page = browser.new_page(viewport=kit.LAPTOP)
    sign_in(page, server, "alice")

    def rule_page_shows_two() -> bool:
        page.goto(f"{server.url}/console/rules/{RULE_CX600}")
        return page.inner_text("#on-approved") == "2"

    assert wait_for(rule_page_shows_two), page.inner_text("#adoption")
    rows = [r.inner_text().split("\t")[:4] for r in page.query_selector_all("#who-runs-what tbody tr")]
    assert [[cell.strip() for cell in row] for row in rows] == [
        [f"{kit.V_NEW} approved", "2", "2", "0"], [kit.V_MID, "3", "3", "0"], [kit.V_OLD, "3", "3", "0"]]
    assert "2 of 8 devices on the approved version" in page.inner_text("#adoption .big")
    approved = page.get_attribute("#adoption svg.curve polyline.approved", "points")
    everyone = page.get_attribute("#adoption svg.curve polyline.all", "points")
    assert approved and everyone
    assert float(approved.split()[-1].split(",")[1]) == 30.0  # 2 of 8 at the end: 40 - 40 * 2/8
    assert float(everyone.split()[-1].split(",")[1]) == 0.0
    assert page.query_selector_all("code.sha256"), "the files' SHA-256 are listed"
    kit.save_screenshot(page, "rule-rollout-laptop", shots)

    go(page, "Dashboard")
    assert page.inner_text("#activity-checks .activity-total") == str(len(fleet) + len(updated))
    today = page.query_selector_all("#activity-checks g.day")[-1]
    assert today.get_attribute("data-total") == str(len(fleet) + len(updated))
    assert len(page.query_selector_all("#activity-checks g.day")) == 30
    kit.save_screenshot(page, "dashboard-activity-laptop", shots)
