"""The console's rules list pages 50 rules at a time, the rules awaiting approval first, each with
its family's device count — over real HTTP against ``devupdate serve``."""

from __future__ import annotations

import re
import time

import pytest
from consolekit import V_MID, Browserless, add_admin, cab_in, check_in, import_in_process, phones, setup_install
from helpers.cabs import make_update
from helpers.tools import wait_for

pytestmark = pytest.mark.timeout(120)

MODELS = [f"CX{n:03d}" for n in range(51)]
APPROVED = make_update("Polycom", "CX000").id


@pytest.fixture
def server(install, live_server, tmp_path):
    setup_install(install)
    add_admin(install, "alice", "admin")
    import_in_process(install, cab_in(tmp_path / "v1", [make_update("Polycom", m, V_MID) for m in MODELS]),
                      approve=(APPROVED,))
    return live_server(workers=2)


def rule_rows(html: str) -> list[tuple[str, str]]:
    """(model, devices) per rule row, in page order."""
    rows = re.findall(r'<tr id="rule-[^"]+".*?<strong>Polycom (\w+)</strong>.*?data-label="Devices">(\d+)</td>',
                      html, re.S)
    return [(model, devices) for model, devices in rows]


def test_rules_pages_pending_first_with_counts(install, server):
    check_in(server, phones(3, ("UCPhone", "Polycom", "CX000", "A", "ENU"), V_MID, seed=1))
    client = Browserless(server)
    assert client.sign_in("alice").status_code == 303
    first = client.get("/rules")
    assert first.status_code == 200
    assert rule_rows(first.text) == [(m, "0") for m in MODELS[1:]]  # 50 pending, family order
    assert 'rel="next">Next →</a>' in first.text and 'rel="prev"' not in first.text
    deadline = time.monotonic() + 20  # the inventory batch writes the check-ins shortly after
    while True:
        second = client.get("/rules?page=2")
        if rule_rows(second.text) == [("CX000", "3")] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rule_rows(second.text) == [("CX000", "3")]  # the approved rule, with its three phones
    assert 'rel="prev">← Previous</a>' in second.text and 'rel="next"' not in second.text
    filtered = client.get("/rules?model=CX00*&page=1")
    assert rule_rows(filtered.text) == [(m, "0") for m in MODELS[1:10]] + [("CX000", "3")]
    assert 'rel="next"' not in filtered.text


def test_a_page_number_past_any_listing_is_an_empty_last_page(install, server):
    """``?page=`` with 20 digits would be an OFFSET no database takes: the console shows the furthest
    page it pages to (empty), as for any page past the end."""
    client = Browserless(server)
    assert client.sign_in("alice").status_code == 303
    for path in ("/rules", "/devices", "/audit", "/catalog"):
        answer = client.get(f"{path}?page=99999999999999999999")
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        nav = re.findall(r"<a [^>]*rel=\"(?:next|prev)\"[^>]*>", answer.text)
        assert not any('rel="next"' in link for link in nav), (path, nav)
    assert rule_rows(client.get("/rules?page=99999999999999999999").text) == []
    [phone] = phones(1, ("UCPhone", "Polycom", "CX000", "A", "ENU"), V_MID, seed=2)
    check_in(server, [phone])
    deadline = time.monotonic() + 20  # the request audit log file appears with the first check
    while not (names := re.findall(r'href="/console/request-logs/(RequestHandlerAuditLog_[^"?]+)"',
                                   client.get("/request-logs").text)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert names
    mac = phone.mac.replace("-", "").upper()
    assert wait_for(lambda: mac in client.get(f"/request-logs/{names[0]}").text.upper().replace("-", ""), 20, 0.2)
    past = client.get(f"/request-logs/{names[0]}?start=" + "9" * 30)
    assert past.status_code == 200, past.text[:300]
    assert 'id="next-rows"' not in past.text and mac not in past.text.upper().replace("-", "")
