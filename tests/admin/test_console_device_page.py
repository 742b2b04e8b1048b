"""The console's device list filters and the page of one device in a real browser (system Chromium) against
``devupdate serve``: filter by model, status and search, sort, open a device (identity, versions, its log,
its audit rows) and make it a test device. Screenshots go to the test run's folder."""

from __future__ import annotations

import consolekit as kit
import pytest
import requests
from helpers.cabs import make_update
from helpers.tools import wait_for
from test_console_browser import device_count, go, shots, sign_in  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(120)

RULE_CX600 = make_update("Polycom", "CX600").id


def test_device_list_filters_and_device_page(install, live_server, browser, tmp_path, shots):  # noqa: F811
    kit.setup_install(install)
    kit.add_admin(install, "alice", "admin")
    cab = kit.cab_in(tmp_path / "cab", [make_update("Polycom", "CX600", kit.V_MID)])
    kit.import_in_process(install, cab, approve=(RULE_CX600,))
    server = live_server(workers=1)
    current = kit.phones(2, kit.CX600, kit.V_MID, seed=21, prefix="00-04-F2")
    outdated = kit.phones(2, kit.CX600, kit.V_OLD, seed=22, prefix="00-0E-08")
    other = kit.phones(1, kit.HP, kit.V_OLD, seed=23, prefix="00-1A-2B")
    kit.check_in(server, current + outdated + other)
    assert wait_for(lambda: device_count(install) == 5)
    target = outdated[0]
    uploaded = requests.post(f"{server.url}/RequestHandler/Files?type=Watson&mac={target.mac}&name=crash.dmp",
                             data=b"MDMP" * 10, timeout=30)
    assert uploaded.status_code == 201, uploaded.text

    page = kit_page = browser.new_page(viewport=kit.LAPTOP)
    sign_in(page, server, "alice")
    go(page, "Devices")
    assert page.locator("tbody tr").count() == 5
    page.select_option("select[name=status]", "outdated")
    page.click("button:has-text('Search')")
    assert page.locator("tbody tr").count() == 2
    page.select_option("select[name=status]", "unmanaged")
    page.click("button:has-text('Search')")
    assert page.locator("tbody tr").count() == 1 and "4120" in page.inner_text("tbody")
    page.select_option("select[name=status]", "")
    page.fill("input[name=model]", "CX*")
    page.select_option("select[name=sort]", "-device")
    page.click("button:has-text('Search')")
    ids = [page.locator("tbody tr td:first-child code").nth(i).inner_text() for i in range(4)]
    assert ids == sorted(ids, reverse=True)
    page.fill("input[name=days]", "30d")
    page.click("button:has-text('Search')")
    assert "No device matches." in page.inner_text("tbody")
    kit.save_screenshot(page, "devices-filtered", shots)

    # The page of one device: identity, versions, its log, then make it a test device.
    mac = target.mac.replace("-", "").upper()
    page.goto(f"{server.url}/console/devices/{mac}")
    assert "Outdated" in page.inner_text("h1")
    assert target.user_id in page.inner_text("#identity")
    assert kit.V_OLD in page.inner_text("#history") and kit.V_MID in page.inner_text("#updates")
    assert "crash.dmp" in page.inner_text("#device-logs")
    assert "No audit entry names this device." in page.inner_text("#device-audit")
    kit.save_screenshot(page, "device-page", shots)
    page.fill("#make-test-device input[name=name]", "lab-phone")
    page.click("button:has-text('Make this a test device')")
    page.wait_for_selector(".notice-ok")
    assert "Added test device lab-phone" in page.inner_text(".notice-ok")
    page.goto(f"{server.url}/console/devices/{mac}")
    assert "test device" in page.inner_text("h1")
    assert "test-device.add" in page.inner_text("#device-audit")
    assert page.locator("#make-test-device").count() == 0
    page.goto(f"{server.url}/console/devices/0004F2FFFFFF")
    assert "devupdate devices list" in page.inner_text("main")
    kit_page.close()
