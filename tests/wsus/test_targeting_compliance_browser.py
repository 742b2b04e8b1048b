"""The WSUS groups and compliance consoles in a real browser (system Chromium via Playwright) against
``devupdate serve``: two computers get their cookies and register over SOAP; an admin creates a group,
assigns a computer to it, approves an update for it with a deadline (and the next SyncUpdates of that
computer carries the deadline), withdraws nothing by mistake (the dialog); then the computers post
ReportEventBatch over SOAP and the compliance charts show the numbers per group and per update."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

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
PC1 = "11111111-2222-4333-8444-5555555555a1"
PC2 = "11111111-2222-4333-8444-5555555555a2"


@pytest.fixture
def server(install, live_server, tmp_path):
    from devupdate.wsus.client import keys

    kit.setup_install(install)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "p.xml").write_text(category(PRODUCT, "A product", "Product"))
    (folder / "a.xml").write_text(software(A, title="Cumulative update A", categories=(PRODUCT,)))
    (folder / "b.xml").write_text(software(B, title="Update B", categories=(PRODUCT,)))
    install.cli("wsus", "auto-approval", "set", "Test", "--disable")  # only the admin's approvals here
    install.cli("wsus", "import", str(folder))
    install.cli("wsus", "products", "select", PRODUCT)
    kit.add_admin(install, "alice", "admin")
    keys.forget_cache()
    return live_server(workers=1, DEVUPDATE_WSUS_ALLOW_HTTP_SOAP="true")


sign_in, go = kit.sign_in, kit.go


def report(server, cookie: wuskit.Cookie, *events: str) -> None:
    response = requests.post(server.url + PATH, data=batch(*events, cookie=cookie.xml()), timeout=30,
                             headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ACTION})
    assert response.status_code == 200 and b"<ReportEventBatchResult>true</ReportEventBatchResult>" in \
        response.content, response.text


def bar(page, element_id: str) -> str:
    return page.get_attribute(f"#{element_id} svg.bar", "aria-label")


def target_id(page, dns_name: str) -> str:
    row = page.locator("#computers tbody tr", has_text=dns_name)
    return row.get_attribute("id").removeprefix("computer-")


def test_group_assign_approve_with_deadline_then_compliance_charts(server, browser):
    pc1 = wuskit.mint_cookie(server, PC1, dns_name="pc1.corp.example")
    pc2 = wuskit.mint_cookie(server, PC2, dns_name="pc2.corp.example")

    page = browser.new_page(viewport=kit.LAPTOP)
    sign_in(page, server, "alice")
    go(page, "WSUS groups")
    assert page.inner_text("#groups").count("built in") == 3
    assert "pc1.corp.example" in page.inner_text("#computers") and "pc2.corp.example" in page.inner_text("#computers")

    # a new group under All Computers
    page.fill("#add-group input[name=name]", "Pilot")
    page.select_option("#add-group select[name=parent]", label="All Computers")
    page.click("#add-group button")
    page.wait_for_selector(".notice-ok")
    assert "Added the group Pilot." in page.inner_text(".notice-ok")
    pilot = page.locator("#groups li", has_text="Pilot").get_attribute("data-group")
    assert page.get_attribute(f'#groups li[data-group="{pilot}"]', "style") == "margin-left: 1.5em"

    # pc1 into it
    page.goto(server.url + "/console/targeting")
    pc1_target = target_id(page, "pc1.corp.example")
    page.select_option(f"#computer-{pc1_target} select[name=groups]", label="All Computers / Pilot")
    page.click(f"#computer-{pc1_target} button[data-action=assign]")
    page.wait_for_selector(".notice-ok")
    assert "pc1.corp.example is now in Pilot." in page.inner_text(".notice-ok")
    assert page.url.endswith(f"/console/targeting?group={pilot}")
    assert "pc1.corp.example" in page.inner_text("#computers") and "pc2.corp.example" not in page.inner_text(
        "#computers")
    assert re.search(r"Pilot\s+1 computer\b", page.inner_text("#groups"))

    # approve A for Pilot with a deadline
    page.fill("input[name=update]", A)
    page.click("form[role=search] button:has-text('Show')")
    page.wait_for_load_state("load")
    assert "This update is approved for no group." in page.inner_text("#approvals")
    page.select_option("#approve select[name=group]", label="All Computers / Pilot")
    page.select_option("#approve select[name=action]", "install")
    page.fill("#approve input[name=deadline]", "2026-12-24T18:00:00+01:00")
    page.click("#approve button")
    page.wait_for_selector(".notice-ok")
    assert f"Approved {A} for Pilot: Install." in page.inner_text(".notice-ok")
    row = page.locator("#approvals tbody tr").first
    assert row.locator('td[data-label="Group"]').inner_text() == "Pilot"
    assert row.locator('td[data-label="Action"]').inner_text() == "Install"
    assert row.locator('td[data-label="Deadline"]').inner_text() == "2026-12-24 17:00 UTC"
    assert row.locator('td[data-label="By"]').inner_text() == "console:alice"

    # the approval reaches pc1's next scan, with its deadline; pc2 (unassigned) gets PreDeploymentCheck
    def actions(cookie: wuskit.Cookie) -> dict[str, tuple[str | None, str | None]]:
        """The prerequisite waves of a first scan (categories count as installed): UpdateID → (Action,
        Deadline) of every update offered."""
        q = f"{{{wuskit.CLIENT_NS}}}"
        installed: list[str] = []
        other: list[str] = []
        found: dict[str, tuple[str | None, str | None]] = {}
        for _wave in range(6):
            ids = "".join(f"<int>{rid}</int>" for rid in installed)
            cached = "".join(f"<int>{rid}</int>" for rid in other)
            answer = wuskit.call(server, "SyncUpdates", cookie.xml() + (
                "<parameters><ExpressQuery>false</ExpressQuery>"
                f"<InstalledNonLeafUpdateIDs>{ids}</InstalledNonLeafUpdateIDs>"
                f"<OtherCachedUpdateIDs>{cached}</OtherCachedUpdateIDs><SkipSoftwareSync>false</SkipSoftwareSync>"
                "<NeedTwoGroupOutOfScopeUpdates>false</NeedTwoGroupOutOfScopeUpdates></parameters>"))
            assert answer.status_code == 200, answer.text
            infos = list(ET.fromstring(answer.content).iter(f"{q}NewUpdates"))
            infos = [info for new in infos for info in new.findall(f"{q}UpdateInfo")]
            if not infos:
                return found
            for info in infos:
                rid = info.findtext(f"{q}ID")
                uid = re.search(r'UpdateID="([0-9a-f-]{36})"', info.findtext(f"{q}Xml") or "").group(1)
                found[uid] = (info.findtext(f"{q}Deployment/{q}Action"),
                              info.findtext(f"{q}Deployment/{q}Deadline"))
                (installed if info.findtext(f"{q}IsLeaf") == "false" else other).append(rid)
        raise AssertionError("the scan did not settle in six waves")

    assert actions(pc1)[A] == ("Install", "2026-12-24T17:00:00Z")
    assert actions(pc2)[A] == ("PreDeploymentCheck", None)

    # the computers report over SOAP; pc1: A failed, B needed; pc2: A installed (B not applicable)
    report(server, pc1, event(156, target=PC1, time="2026-10-04T15:00:00Z", misc=(f"U={A};{B}",)),
           event(182, update=A, target=PC1, time="2026-10-04T15:05:00Z", hresult=-2145124329))
    report(server, pc2, event(156, target=PC2, time="2026-10-04T15:00:00Z", misc=(f"V={A}",)))

    go(page, "WSUS compliance")
    assert bar(page, f"group-{pilot}") == "All Computers / Pilot: Installed 0, Needed 1, Failed 1, Not applicable 0"
    assert bar(page, "group-a0a08746-4dbe-4a37-9adf-9e7652c0b421") == (
        "All Computers: Installed 1, Needed 1, Failed 1, Not applicable 1")
    assert bar(page, f"update-{A}") == ("Cumulative update A: Installed 1, Needed 0, Failed 1, Not applicable 0, "
                                        "Unknown 0")
    assert bar(page, f"update-{B}") == "Update B: Installed 0, Needed 1, Failed 0, Not applicable 1, Unknown 0"
    # narrowed to Pilot: only pc1's figures
    page.select_option("form[role=search] select[name=group]", value=pilot)
    page.click("form[role=search] button")
    page.wait_for_load_state("load")
    assert bar(page, f"update-{A}") == ("Cumulative update A: Installed 0, Needed 0, Failed 1, Not applicable 0, "
                                        "Unknown 0")
    assert page.locator("#computers tbody tr").count() == 1
    assert page.inner_text(f"#computer-{PC1} td[data-label=Failed]") == "1"
