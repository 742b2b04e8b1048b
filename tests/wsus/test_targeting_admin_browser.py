"""The WSUS groups and auto-approval consoles in a real browser (system Chromium via Playwright) against
``devupdate serve``: an admin renames a group and removes it through the confirmation dialog (cancel
first), pauses and resumes the All Computers rule, changes its deferral, accepts the EULA a rule is
waiting for and then approves that update with a download priority. Screenshots (laptop and phone) go
to the test's own folder."""

from __future__ import annotations

import json

import pytest
from admin import consolekit as kit
from catalogkit import category, software
from helpers.tools import wait_for

pytestmark = pytest.mark.timeout(150)

PRODUCT = "c0c0c0c0-0000-4000-8000-0000000000c1"
A = "aaaaaaaa-0000-4000-8000-0000000000a1"
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
    install.cli("wsus", "groups", "add", "Pilot")
    kit.add_admin(install, "alice", "admin")
    started = live_server(workers=1)
    lock = install.home / "wsus-auto-approval.lock"  # the first hourly run, two seconds after start
    assert wait_for(lambda: lock.exists() and b"last_run" in lock.read_bytes(), timeout=30)
    return started


sign_in, go = kit.sign_in, kit.go


def confirm(page, selector: str, *, ok: bool = True) -> str:
    """Click a button whose form asks first; read the dialog's statement; confirm or cancel."""
    page.click(selector)
    page.locator("#confirm-dialog").wait_for(state="visible")
    statement = page.inner_text("#confirm-summary")
    if ok:
        page.click("#confirm-ok")
        page.wait_for_load_state("load")
        page.wait_for_selector(".notice-ok")
    else:
        page.click("#confirm-dialog button[value=cancel]")
    return statement


def test_rename_remove_pause_resume_defer_accept_eula_and_approve(install, server, browser, tmp_path):
    shots = tmp_path / "screenshots"
    page = browser.new_page(viewport=kit.LAPTOP)
    sign_in(page, server, "alice")

    # rename Pilot, then remove it (the dialog first cancelled)
    go(page, "WSUS groups")
    page.click("#groups a:text-is('Pilot')")
    page.wait_for_load_state("load")
    page.fill("#rename-group input[name=name]", "Early adopters")
    page.click("#rename-group button")
    page.wait_for_selector(".notice-ok")
    assert page.inner_text(".notice-ok") == "Renamed the group to Early adopters."
    assert page.inner_text("#computers-title") == "Computers in Early adopters"
    kit.save_screenshot(page, "wsus-group-laptop", shots)
    statement = confirm(page, "#remove-group button", ok=False)
    assert statement == ("Remove the group All Computers / Early adopters? Its approvals are withdrawn; its 0 "
                         "computers fall back to their other groups or Unassigned Computers.")
    assert page.locator("#groups li", has_text="Early adopters").count() == 1
    confirm(page, "#remove-group button")
    assert page.inner_text(".notice-ok").startswith("Removed the group Early adopters:")
    assert page.locator("#groups li", has_text="Early adopters").count() == 0
    assert page.url == server.url + "/console/targeting"

    # pause and resume All Computers; its deferral to 3 days with its EULAs accepted
    go(page, "WSUS auto-approval")
    row = page.locator("#rule-all-computers")
    assert row.locator("td[data-label=State]").inner_text() == "active"
    assert confirm(page, "#rule-all-computers button[data-action=pause]") == (
        "Pause the rule All Computers? It adds no approval until resumed.")
    assert page.inner_text(".notice-ok") == "Paused the rule All Computers. It adds no approval until resumed."
    assert row.locator("td[data-label=State]").inner_text() == "paused"
    confirm(page, "#rule-all-computers button[data-action=resume]")
    assert row.locator("td[data-label=State]").inner_text() == "active"
    row.locator("input[name=defer_days]").fill("3")
    row.locator("input[name=accept_eulas]").check()
    row.locator("button[data-action=save]").click()
    page.wait_for_selector(".notice-ok")
    assert page.inner_text(".notice-ok") == "Changed the rule All Computers."
    assert row.locator("input[name=defer_days]").input_value() == "3"
    assert row.locator("input[name=accept_eulas]").is_checked()
    assert row.locator("input[name=enabled]").is_checked()
    kit.save_screenshot(page, "wsus-auto-approval-laptop", shots)

    # the EULA the Test rule waits for: accepted from its row, then E approved from its page
    waiting = page.locator(f'#awaiting tr[data-update="{E}"]')
    assert waiting.locator("td[data-label='Skipped by']").inner_text() == "Test"
    assert confirm(page, f'#awaiting tr[data-update="{E}"] button[data-action=accept-eula]').startswith(
        f"Accept the license terms (EULA {EULA}) for this installation?")
    assert page.inner_text(".notice-ok") == f"Accepted EULA {EULA}: the updates that name it can be approved."
    assert waiting.locator("td.act-cell").inner_text() == "accepted: approved at the rule's next run"
    assert page.locator("#accepted tbody tr").first.locator("td[data-label='Accepted by']").inner_text() == (
        "console:alice")
    page.set_viewport_size(kit.PHONE)
    kit.save_screenshot(page, "wsus-auto-approval-phone", shots)
    page.set_viewport_size(kit.LAPTOP)
    waiting.locator("a").click()
    page.wait_for_load_state("load")
    assert page.inner_text("#eula").startswith(f"Its license terms (EULA {EULA}) were accepted by console:alice")
    page.select_option("#approve select[name=group]", label="All Computers")
    page.select_option("#approve select[name=priority]", "high")
    page.click("#approve button")
    page.wait_for_selector(".notice-ok")
    assert page.inner_text(".notice-ok") == f"Approved {E} for All Computers: Install."
    approval = page.locator("#approvals tbody tr").first
    assert [approval.locator(f"td[data-label={name}]").inner_text() for name in ("Group", "Action", "Priority", "By")
            ] == ["All Computers", "Install", "high", "console:alice"]

    for name in ("wsus-group-laptop", "wsus-auto-approval-laptop", "wsus-auto-approval-phone"):
        assert (shots / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rules = {r["Name"]: r for r in json.loads(install.cli("wsus", "auto-approval", "list", "--json").stdout)}
    assert (rules["All Computers"]["DeferDays"], rules["All Computers"]["AcceptEulas"],
            rules["All Computers"]["Paused"]) == (3, True, False)
    events = json.loads(install.cli("audit", "list", "--actor", "console:alice", "--action", "wsus.", "--json").stdout)
    assert [e["Action"] for e in events] == ["wsus.approve", "wsus.eula.accept", "wsus.auto-approval.set",
                                             "wsus.auto-approval.resume", "wsus.auto-approval.pause",
                                             "wsus.group.remove", "wsus.group.rename"]
