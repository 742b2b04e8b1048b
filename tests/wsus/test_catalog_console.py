"""The console's WSUS catalog page against ``devupdate serve``: over plain HTTP (search, filters, pages
of the service's listing; decline, undecline, delete and restore behind the CSRF token and the admin
role, nothing changed without them) and in a real browser (system Chromium): search, filter by
product, classification and state, decline through the confirmation dialog."""

from __future__ import annotations

import html
import json
import re

import pytest
from admin import consolekit as kit
from catalogkit import BUNDLE, DEFENDER, DEFINITIONS, LEAF, SMALL, seed_catalog, software
from catalogkit import SYNTHETIC_A as A
from catalogkit import SYNTHETIC_B as B

pytestmark = pytest.mark.timeout(150)

ALL = [B, A, SMALL, BUNDLE, LEAF]
BUNDLE_TITLE = ("Security Intelligence Update for Microsoft Defender Antivirus - KB2267602 (Version 1.459.547.0) - "
                "Current Channel (Broad)")


@pytest.fixture
def server(install, live_server, tmp_path):
    kit.setup_install(install)
    seed_catalog(install, tmp_path)
    kit.add_admin(install, "alice", "admin")
    kit.add_admin(install, "olga", "operator")
    return live_server(workers=2)


def rows(text: str) -> list[str]:
    return re.findall(r'<tr id="update-([0-9a-f-]{36})">', text)


def state_of(install, update_id: str) -> str:
    return json.loads(install.cli("wsus", "updates", "show", update_id, "--json").stdout)["State"]


def test_catalog_page_over_http(install, server):
    alice = kit.Browserless(server)
    assert alice.sign_in("alice").status_code == 303
    listed = alice.get("/catalog")
    assert listed.status_code == 200
    assert rows(listed.text) == ALL
    assert html.escape(BUNDLE_TITLE) in listed.text and "KB2267602" in listed.text
    assert f'<option value="{DEFENDER}">Microsoft Defender Antivirus</option>' in listed.text
    assert f'<option value="{DEFINITIONS}">Definition Updates</option>' in listed.text
    for query, expected in ((f"product={DEFENDER}", [A, SMALL, BUNDLE, LEAF]),
                            (f"classification={DEFINITIONS}", [SMALL, BUNDLE, LEAF]),
                            ("q=kb2267602", [BUNDLE]), ("q=synthetic", [B, A]),
                            ("q=synthetic&product=" + DEFENDER, [A]),
                            ("state=published", ALL), ("state=declined", []), ("q=nothing-like-it", [])):
        page = alice.get(f"/catalog?{query}")
        assert (query, page.status_code, rows(page.text)) == (query, 200, expected)
    assert "No update matches." in alice.get("/catalog?state=declined").text
    unknown = alice.get("/catalog?product=Office")
    assert unknown.status_code == 404
    assert "no product &#39;Office&#39; in the catalog" in unknown.text and rows(unknown.text) == []
    assert alice.get("/catalog?state=bogus").status_code == 400
    assert alice.get("/catalog?page=2").status_code == 200 and rows(alice.get("/catalog?page=2").text) == []

    # Changes need the page's CSRF token (400 without, another session's too), and an admin (403).
    token = kit.csrf_of(listed.text)
    stranger = kit.Browserless(server).csrf("/sign-in")
    for bad in ({}, {"csrf_token": stranger}, {"csrf_token": "x" * 43}):
        for action in ("decline", "delete"):
            refused = alice.post(f"/catalog/{BUNDLE}/{action}", data={**bad, "next": "/console/catalog"})
            assert refused.status_code == 400 and "security token" in refused.text
    olga = kit.Browserless(server)
    olga.sign_in("olga")
    olga_page = olga.get("/catalog")
    assert rows(olga_page.text) == ALL and "data-action=" not in olga_page.text  # no buttons for an operator
    refused = olga.post(f"/catalog/{BUNDLE}/decline", data={"csrf_token": kit.csrf_of(olga_page.text)})
    assert refused.status_code == 403
    assert state_of(install, BUNDLE) == "published"

    # Decline: back to the filtered page it came from, with a notice; the CLI sees it declined.
    back = f"/console/catalog?product={DEFENDER}"
    done = alice.post(f"/catalog/{BUNDLE}/decline", data={"csrf_token": token, "next": back})
    assert (done.status_code, done.headers["Location"]) == (303, back)
    page = alice.get(back.removeprefix("/console"))
    assert f"Declined {html.escape(BUNDLE_TITLE)} ({BUNDLE}). It is never offered" in page.text
    assert state_of(install, BUNDLE) == "declined"
    assert rows(alice.get("/catalog?state=declined").text) == [BUNDLE]
    assert f'action="/console/catalog/{BUNDLE}/undecline"' in page.text
    again = alice.post(f"/catalog/{BUNDLE}/decline", data={"csrf_token": token, "next": "https://evil.example/"})
    assert again.headers["Location"] == "/console/catalog"  # only a console catalog page is followed
    assert "was already declined; nothing changed." in alice.get("/catalog").text
    alice.post(f"/catalog/{BUNDLE}/undecline", data={"csrf_token": token})
    assert state_of(install, BUNDLE) == "published"

    # Delete and restore: the RevisionIDs stay.
    kept = json.loads(install.cli("wsus", "updates", "show", A, "--json").stdout)["Revisions"]
    alice.post(f"/catalog/{A}/delete", data={"csrf_token": token})
    page = alice.get("/catalog")
    assert "its revisions are kept" in page.text and rows(page.text) == [B, SMALL, BUNDLE, LEAF]
    deleted = alice.get("/catalog?state=deleted")
    assert rows(deleted.text) == [A] and f'action="/console/catalog/{A}/restore"' in deleted.text
    alice.post(f"/catalog/{A}/restore", data={"csrf_token": token})
    assert rows(alice.get("/catalog").text) == ALL
    assert json.loads(install.cli("wsus", "updates", "show", A, "--json").stdout)["Revisions"] == kept

    # Bad ids and actions: refused with the reason, nothing changed.
    alice.post("/catalog/nope/decline", data={"csrf_token": token})
    assert "Decline refused: UpdateID &#39;nope&#39; is not a GUID" in alice.get("/catalog").text
    missing = alice.post("/catalog/cccccccc-0000-4000-8000-000000000003/delete", data={"csrf_token": token})
    assert missing.status_code == 303
    assert "Delete refused: no update cccccccc-0000-4000-8000-000000000003" in alice.get("/catalog").text
    assert alice.post(f"/catalog/{BUNDLE}/approve", data={"csrf_token": token}).status_code == 404
    assert [state_of(install, u) for u in ALL] == ["published"] * 5


def test_catalog_pages_keep_the_filters(install, server, tmp_path):
    bulk = tmp_path / "bulk"
    bulk.mkdir()
    made = [f"dddddddd-0000-4000-8000-{n:012d}" for n in range(55)]
    for n, update_id in enumerate(made):
        (bulk / f"{n:02d}.xml").write_text(software(update_id, title=f"Bulk update {n}", categories=(DEFENDER,)))
    install.cli("wsus", "import", str(bulk))
    alice = kit.Browserless(server)
    alice.sign_in("alice")
    first = alice.get(f"/catalog?q=bulk&product={DEFENDER}")
    assert rows(first.text) == made[::-1][:50]  # newest first
    link = re.search(r'<a href="([^"]+)" rel="next">', first.text)
    assert link and 'rel="prev"' not in first.text
    following = html.unescape(link.group(1))
    assert sorted(following.split("?")[1].split("&")) == sorted(["q=bulk", f"product={DEFENDER}", "page=2"])
    second = alice.get(following.removeprefix("/console"))
    assert rows(second.text) == made[::-1][50:] and 'rel="next"' not in second.text and 'rel="prev"' in second.text
    assert rows(alice.get("/catalog?q=bulk&page=3").text) == []


def test_catalog_page_in_a_browser(install, server, browser):
    page = browser.new_page(viewport=kit.LAPTOP)
    page.goto(server.url + "/console/catalog")
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", kit.PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(server.url + "/console/catalog")
    assert page.locator('nav a[aria-current="page"]').inner_text() == "WSUS catalog"

    def shown() -> list[str]:
        return [row.get_attribute("id").removeprefix("update-") for row in page.locator("tbody tr[id]").all()]

    assert shown() == ALL
    page.fill("input[name=q]", "synthetic")
    page.click("button:has-text('Search')")
    page.wait_for_load_state("load")
    assert shown() == [B, A]
    page.fill("input[name=q]", "")
    page.select_option("select[name=product]", label="Microsoft Defender Antivirus")
    page.select_option("select[name=classification]", label="Definition Updates")
    page.click("button:has-text('Search')")
    page.wait_for_load_state("load")
    assert shown() == [SMALL, BUNDLE, LEAF]
    assert f"product={DEFENDER}" in page.url and f"classification={DEFINITIONS}" in page.url

    # Decline behind the confirmation dialog; cancel first changes nothing.
    page.click(f"#update-{BUNDLE} button[data-action=decline]")
    page.locator("#confirm-dialog").wait_for(state="visible")
    assert page.inner_text("#confirm-summary").startswith(f"Decline {BUNDLE_TITLE}? It is never offered")
    page.click("#confirm-dialog button[value=cancel]")
    assert state_of(install, BUNDLE) == "published"
    page.click(f"#update-{BUNDLE} button[data-action=decline]")
    page.click("#confirm-ok")
    page.wait_for_selector(".notice-ok")
    assert page.inner_text(".notice-ok").startswith(f"Declined {BUNDLE_TITLE}")
    assert f"product={DEFENDER}" in page.url  # back on the filtered page
    assert page.locator(f"#update-{BUNDLE} .state").inner_text() == "declined"
    assert state_of(install, BUNDLE) == "declined"

    page.select_option("select[name=state]", "declined")
    page.click("button:has-text('Search')")
    page.wait_for_load_state("load")
    assert shown() == [BUNDLE]
    page.click(f"#update-{BUNDLE} button[data-action=undecline]")
    page.click("#confirm-ok")
    page.wait_for_selector(".notice-ok")
    assert shown() == [] and state_of(install, BUNDLE) == "published"
