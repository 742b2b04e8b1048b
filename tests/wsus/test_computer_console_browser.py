"""A WSUS computer's console page in a real browser (system Chromium via Playwright) against ``devupdate
serve``: a computer gets its cookie, registers and scans over SOAP and posts ReportEventBatch; an admin opens
it from the WSUS groups page and sees its identity, OS, groups, last sync and report, and its state per
update with the event that set it; then assigns it to two groups from that page and lands back on it
with the new membership. An operator sees the same page without the assign form; an unknown computer
is a 404 page."""

from __future__ import annotations

import pytest
import requests
import wuskit
from admin import consolekit as kit
from catalogkit import category, software
from reportkit import ACTION, PATH, batch, event

pytestmark = pytest.mark.timeout(150)

PRODUCT = "c0c0c0c0-0000-4000-8000-0000000000c1"
A = "aaaaaaaa-0000-4000-8000-0000000000a1"
B = "bbbbbbbb-0000-4000-8000-0000000000b2"
PC1 = "11111111-2222-4333-8444-5555555555c1"
FAILED_INSTANCE = "5f0d3a2e-1b4c-4d6e-8f70-9a1b2c3d4e5f"


@pytest.fixture
def server(install, live_server, tmp_path):
    from devupdate.wsus.client import keys

    kit.setup_install(install)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "p.xml").write_text(category(PRODUCT, "A product", "Product"))
    (folder / "a.xml").write_text(software(A, title="Cumulative update A", categories=(PRODUCT,)))
    (folder / "b.xml").write_text(software(B, title="Update B", categories=(PRODUCT,)))
    install.cli("wsus", "import", str(folder))
    install.cli("wsus", "products", "select", PRODUCT)
    install.cli("wsus", "groups", "add", "Pilot")
    install.cli("wsus", "groups", "add", "Floor 2", "--parent", "Pilot")
    kit.add_admin(install, "alice", "admin")
    kit.add_admin(install, "olga", "operator")
    keys.forget_cache()
    return live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")


def report(server, cookie: wuskit.Cookie, *events: str) -> None:
    response = requests.post(server.url + PATH, data=batch(*events, cookie=cookie.xml()), timeout=30,
                             headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ACTION})
    assert response.status_code == 200 and b"<ReportEventBatchResult>true</ReportEventBatchResult>" in \
        response.content, response.text


def facts(page, selector: str) -> dict[str, str]:
    """A ``<dl class="facts">`` as shown: term → description text."""
    terms = page.locator(f"{selector} dt").all_inner_texts()
    values = page.locator(f"{selector} dd").all_inner_texts()
    return dict(zip(terms, values, strict=True))


def test_computer_page_identity_states_events_and_assign(server, browser):
    pc1 = wuskit.mint_cookie(server, PC1, dns_name="pc1.corp.example")
    scanned = wuskit.call(server, "SyncUpdates", pc1.xml() + (
        "<parameters><ExpressQuery>false</ExpressQuery><InstalledNonLeafUpdateIDs/><OtherCachedUpdateIDs/>"
        "<SkipSoftwareSync>false</SkipSoftwareSync><NeedTwoGroupOutOfScopeUpdates>false"
        "</NeedTwoGroupOutOfScopeUpdates></parameters>"))
    assert scanned.status_code == 200, scanned.text
    report(server, pc1, event(156, target=PC1, time="2026-10-04T15:00:00Z", misc=(f"U={A};{B}",)),
           event(182, update=A, target=PC1, time="2026-10-04T15:05:00Z", hresult=-2145124329,
                 instance=FAILED_INSTANCE, app_name="AutomaticUpdates"))

    page = browser.new_page(viewport=kit.LAPTOP)
    kit.sign_in(page, server, "alice")
    kit.go(page, "WSUS groups")
    page.click("#computers a:text-is('pc1.corp.example')")
    page.wait_for_selector("#identity")
    target = page.url.rsplit("/", 1)[1]
    assert target.isdigit() and page.url == f"{server.url}/console/computers/{target}"
    assert page.inner_text("h1") == "Computer pc1.corp.example"
    assert page.get_attribute('nav a[aria-current="page"]', "href") == "/console/targeting"
    shown = facts(page, "#identity")
    assert (shown["TargetID"], shown["ComputerID"], shown["DNS name"]) == (target, PC1, "pc1.corp.example")
    assert shown["OS"] == "10.0.26200 · Windows 10 Pro · en-US"
    assert shown["Hardware"] == "QEMU Standard PC (Q35 + ICH9, 2009) · AMD64"
    for when in ("Registered", "Last sync", "Last report"):
        assert shown[when].endswith(" UTC") and shown[when].startswith("20"), (when, shown[when])
    assert facts(page, "#membership") == {
        "Assigned here": "Unassigned Computers", "From its policy": "Unassigned Computers",
        "Member of": "Unassigned Computers, All Computers (1 up)"}

    # per update: the failure first, with the event that set it; B needed from the status event
    rows = page.locator("#updates tbody tr")
    assert rows.count() == 2
    assert page.inner_text(f"#update-{A} td[data-label=State]") == "failed 0x80240017"
    assert page.inner_text(f"#update-{A} td[data-label='Set by']") == (
        f"182 AGENT_INSTALLING_FAILED\n{FAILED_INSTANCE} · AutomaticUpdates")
    assert page.inner_text(f"#update-{A} td[data-label='At the computer']") == "2026-10-04 15:05:00 UTC"
    assert page.inner_text(f"#update-{B} td[data-label=State]") == "needed"
    assert page.inner_text(f"#update-{B} td[data-label='Set by']").startswith("156 AGENT_STATUS_30\n")
    assert rows.nth(0).get_attribute("id") == f"update-{A}"
    assert "1 needed · 0 installed · 1 failed · 0 not applicable" in page.inner_text("#updates-title")

    # assign to two groups from here: back on this page, the new membership shown
    page.select_option("#assign select[name=groups]", label=["All Computers / Pilot / Floor 2",
                                                            "All Computers / Test"])
    page.click("#assign button[data-action=assign]")
    page.wait_for_selector(".notice-ok")
    assert page.inner_text(".notice-ok") == "pc1.corp.example is now in Floor 2, Test."
    assert page.url == f"{server.url}/console/computers/{target}"
    assert facts(page, "#membership")["Assigned here"] == "Floor 2, Test"
    assert facts(page, "#membership")["Member of"] == "Floor 2, Test, All Computers (1 up), Pilot (1 up)"

    # the same page by DNS name or ComputerID; an operator has no assign form; an unknown one is a 404
    olga = kit.Browserless(server)
    assert olga.sign_in("olga").status_code == 303
    by_name = olga.get("/computers/PC1.corp.example")
    assert by_name.status_code == 200 and f"<dd>{target}</dd>" in by_name.text
    assert 'id="assign"' not in by_name.text and "Floor 2, Test" in by_name.text
    assert olga.get(f"/computers/{PC1}").status_code == 200
    missing = olga.get("/computers/ghost.corp.example")
    assert missing.status_code == 404 and "No such computer" in missing.text
    assert "&#39;devupdate wsus computers list&#39;" in missing.text
