"""The console's bulk rule actions, readable audit trail and request-log viewer in a real browser
(system Chromium) against ``devupdate serve``: choose rules, read the same confirmation text as the
CLI's dry run, confirm; filter the trail by a rule's name and a date range, download it as CSV;
search a request audit log page by page. Screenshots go to the test run's folder only."""

from __future__ import annotations

import csv
import io

import consolekit as kit
import pytest
from helpers.cabs import make_update
from helpers.tools import wait_for

pytestmark = pytest.mark.timeout(180)

CX600, CX700, VVX = (make_update("Polycom", "CX600", kit.V_NEW), make_update("Polycom", "CX700", kit.V_NEW),
                     make_update("Polycom", "VVX400", kit.V_NEW))


def _expected_confirmation(install) -> str:
    """What 'devupdate rules approve RULE --dry-run' says for the two chosen rules, line by line."""
    from devupdate import db
    from devupdate.rules import bulk

    install.runtime()
    try:
        return "\n".join(bulk.plan("approve", bulk.Selection(rules=(CX600.id, CX700.id)))["Confirmation"])
    finally:
        db.database.close()


def test_bulk_approve_audit_filters_csv_and_request_logs(install, live_server, browser, tmp_path,
                                                         tmp_path_factory):
    shots = tmp_path_factory.getbasetemp() / "console-screenshots"
    kit.setup_install(install)
    kit.add_admin(install, "alice", "admin")
    kit.import_in_process(install, kit.cab_in(tmp_path / "old", [make_update("Polycom", "CX600", kit.V_MID)]),
                          approve=(CX600.id,))
    kit.import_in_process(install, kit.cab_in(tmp_path / "new", [CX600, CX700, VVX]))
    expected = _expected_confirmation(install)
    server = live_server(workers=1)
    fleet = kit.phones(3, kit.CX600, kit.V_MID, seed=7, prefix="00-04-F2")
    kit.check_in(server, fleet)

    page = browser.new_page(viewport=kit.LAPTOP, accept_downloads=True)
    kit.sign_in(page, server, "alice")

    # Filter the rules list, choose two rules, read the confirmation, confirm.
    page.goto(server.url + "/console/rules?brand=Polycom&model=CX*&state=pending")
    assert page.locator("tr[id^=rule-]").count() == 2
    page.goto(server.url + "/console/rules")
    page.check(f"#rule-{CX600.id} input[name=rule]")
    page.check(f"#rule-{CX700.id} input[name=rule]")
    page.click("#bulk-approve")
    page.wait_for_selector("#bulk-confirmation")
    assert page.inner_text("#bulk-confirmation") == expected
    assert expected.startswith("Approve 2 pending rules matching 2 chosen rules:\n  Polycom CX600 ENU · CPE: "
                               f"All Polycom CX600 ENU phones will be offered CPE {kit.V_NEW} (upgrade from "
                               f"{kit.V_MID}).")
    kit.save_screenshot(page, "rules-bulk-confirm", shots)
    page.click("#bulk-ok")
    page.wait_for_selector(".notice-ok")
    assert page.inner_text(".notice-ok").startswith("Approve: 2 rules (Polycom CX600 ENU · CPE, Polycom CX700 ENU")
    assert page.locator(f"#rule-{VVX.id} input[name=rule]").count() == 1  # still pending
    assert page.locator(f"#rule-{CX600.id} input[name=rule]").count() == 0

    # The trail names the rules; filter by a rule's name and today's date; download the CSV.
    page.goto(server.url + "/console/audit?target=CX700&action=rule.approve&since=2000-01-01")
    cells = page.locator("table.audit tbody tr").all_inner_texts()
    assert len(cells) == 1 and "Polycom CX700 ENU" in cells[0] and "console:alice" in cells[0]
    with page.expect_download() as info:
        page.click("#audit-csv")
    rows = list(csv.DictReader(io.StringIO(open(info.value.path(), encoding="utf-8").read())))
    assert [(r["Action"], r["Target"], r["TargetName"], r["Actor"]) for r in rows] == [
        ("rule.approve", CX700.id, "Polycom CX700 ENU", "console:alice")]
    page.goto(server.url + "/console/audit?since=2026-02-30")
    assert "is not a date" in page.inner_text("main")
    kit.save_screenshot(page, "audit-bad-filter", shots)

    # The request audit log: the file of today, searched for one phone's MAC, page by page.
    page.goto(server.url + "/console/request-logs")
    assert wait_for(lambda: page.reload() or page.locator("table a").count() >= 1)
    page.click("table a")
    page.wait_for_selector("table.request-log")
    assert page.locator("table.request-log tbody tr").count() == len(fleet)
    mac = page.inner_text("table.request-log tbody tr:first-child td:nth-child(4)")
    assert mac
    page.fill("input[name=q]", mac.lower())
    page.click("button:has-text('Search')")
    page.wait_for_load_state("load")
    rows = page.locator("table.request-log tbody tr").all_inner_texts()
    assert len(rows) == 1 and "CX600" in rows[0]
    kit.save_screenshot(page, "request-log-search", shots)
    for hostile in ("..%2F..%2Fetc%2Fpasswd", "RequestHandlerAuditLog_x_20261301.log%2F..", "notalog.txt"):
        assert page.goto(server.url + "/console/request-logs/" + hostile).status == 404
