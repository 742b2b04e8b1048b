"""The console's doors, over real HTTP against ``devupdate serve``: cookie attributes, CSRF on every
form post, sign-in required, the operator refused on every change, sign-in rate limiting, sessions
ended by removing the account, no open redirect, upload refusals, security headers.
"""

from __future__ import annotations

import re

import pytest
from consolekit import PASSWORD, V_MID, V_NEW, Browserless, add_admin, cab_in, import_in_process, setup_install
from helpers.cabs import make_update

pytestmark = pytest.mark.timeout(120)

RULE = make_update("Polycom", "CX600").id
CATALOG_UPDATE = "a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe"


@pytest.fixture
def server(install, live_server, tmp_path):
    setup_install(install)
    add_admin(install, "alice", "admin")
    add_admin(install, "olga", "operator")
    import_in_process(install, cab_in(tmp_path / "v1", [make_update("Polycom", "CX600", V_MID)]), approve=(RULE,))
    import_in_process(install, cab_in(tmp_path / "v2", [make_update("Polycom", "CX600", V_NEW)]))
    return live_server(workers=2)


def rule_state(install) -> tuple:
    from devupdate import db
    from devupdate.rules.models import Rule

    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    try:
        rule = Rule.get_by_id(RULE)
        return rule.approved_version, rule.pending_version, rule.restore_version
    finally:
        db.database.close()


def change_posts(token: str | None, cab: bytes) -> list[tuple[str, dict]]:
    """Every change the console offers, as (path, requests keyword arguments)."""
    form = {} if token is None else {"csrf_token": token}
    header = {} if token is None else {"X-CSRF-Token": token}
    return [
        (f"/rules/{RULE}/approve", {"data": {**form, "confirmed": "yes", "expect": f"{V_MID}|{V_NEW}|-"}}),
        (f"/rules/{RULE}/reset", {"data": {**form, "confirmed": "yes", "expect": f"{V_MID}|{V_NEW}|-"}}),
        (f"/rules/{RULE}/restore", {"data": {**form, "confirmed": "yes", "expect": f"{V_MID}|{V_NEW}|-"}}),
        ("/test-devices", {"data": {**form, "name": "x", "kind": "mac", "identifier": "00-04-F2-00-00-01"}}),
        ("/test-devices/remove", {"data": {**form, "name": "x", "scope": "global"}}),
        ("/upload", {"data": cab, "headers": {**header, "Content-Type": "application/octet-stream",
                                              "X-File-Name": "UCUpdates.cab"}}),
        ("/upload", {"files": {"cab": ("UCUpdates.cab", cab)}, "data": form}),
        *((f"/catalog/{CATALOG_UPDATE}/{action}", {"data": {**form, "next": "/console/catalog"}})
          for action in ("decline", "undecline", "delete", "restore")),
    ]


def test_cookie_csrf_roles_and_sessions(install, server, tmp_path):
    cab = cab_in(tmp_path / "v3", [make_update("Polycom", "CX600", "4.0.7577.4387")]).read_bytes()
    before = rule_state(install)
    alice = Browserless(server)

    # The cookie: Secure (the default), HttpOnly, SameSite=Strict, scoped to /console.
    first = alice.get("/sign-in")
    cookie = first.headers["Set-Cookie"]
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/console"):
        assert attribute in cookie, cookie
    assert "default-src 'none'" in first.headers["Content-Security-Policy"]
    assert first.headers["X-Frame-Options"] == "DENY" and first.headers["Cache-Control"] == "no-store"

    # Sign-in itself needs the form's token.
    refused = alice.post("/sign-in", data={"name": "alice", "password": PASSWORD})
    assert refused.status_code == 400 and "security token" in refused.text
    assert alice.sign_in("alice").status_code == 303
    token = alice.csrf("/rules")

    # Every change without the token, or with another session's token, is refused with 400: nothing changes.
    stranger = Browserless(server)
    stranger_token = stranger.csrf("/sign-in")
    for bad in (None, stranger_token, "x" * 43):
        for path, kwargs in change_posts(bad, cab):
            response = alice.post(path, **kwargs)
            assert response.status_code == 400, (path, bad, response.status_code)
            assert "CSRF" in response.text or "security token" in response.text
    assert alice.post("/sign-out").status_code == 400
    assert rule_state(install) == before

    # Not signed in: pages redirect to sign-in, changes are refused (401) even with a valid token.
    page = stranger.get("/rules")
    assert page.status_code == 302 and page.headers["Location"].startswith("/console/sign-in?next=")
    for path, kwargs in change_posts(stranger_token, cab):
        assert stranger.post(path, **kwargs).status_code == 401, path

    # The operator reads everything, sees no change button, and is refused (403) on every change.
    olga = Browserless(server)
    olga.sign_in("olga")
    olga_token = olga.csrf("/rules")
    for path in ("/", "/rules", f"/rules/{RULE}", "/test-devices", "/devices", "/audit", "/logs", "/catalog"):
        response = olga.get(path)
        assert response.status_code == 200, path
        assert not re.search(r"<button[^>]*data-action", response.text)
    assert 'action="/console/test-devices"' not in olga.get("/test-devices").text
    for path, kwargs in change_posts(olga_token, cab):
        response = olga.post(path, **kwargs)
        assert response.status_code == 403, (path, response.status_code)
        assert "operator" in response.text
    assert rule_state(install) == before
    assert olga.post("/sign-out", data={"csrf_token": olga_token}).status_code == 303

    # A confirmed action with a stale expectation does nothing and shows the new effect (409).
    stale = alice.post(f"/rules/{RULE}/approve", data={"csrf_token": token, "confirmed": "yes", "expect": "a|b|c"})
    assert stale.status_code == 409 and "changed since" in stale.text
    # Without "confirmed" (no JavaScript) the confirmation page states the effect first.
    confirm = alice.post(f"/rules/{RULE}/approve", data={"csrf_token": token})
    assert confirm.status_code == 200
    assert f"All Polycom CX600 ENU phones will be offered CPE {V_NEW} (upgrade from {V_MID})." in confirm.text
    assert rule_state(install) == before
    done = alice.post(f"/rules/{RULE}/approve", data={"csrf_token": token, "confirmed": "yes",
                                                       "expect": f"{V_MID}|{V_NEW}|-"})
    assert done.status_code == 303 and rule_state(install) == (V_NEW, None, V_MID)
    # Refused by the lifecycle (nothing pending): reported, recorded, nothing changes.
    again = alice.post(f"/rules/{RULE}/approve", data={"csrf_token": token, "confirmed": "yes",
                                                        "expect": f"{V_NEW}|-|{V_MID}"})
    assert again.status_code == 303
    assert "no pending version to approve" in alice.get("/rules").text

    # The upload route: raw body with the header token (JSON answer), and refusals with the package error.
    created = alice.post("/upload", data=cab, headers={"X-CSRF-Token": token, "Accept": "application/json",
                                                       "Content-Type": "application/octet-stream",
                                                       "X-File-Name": "UCUpdates%20v3.cab"})
    assert created.status_code == 201, created.text
    assert created.json()["rules"][0]["Change"] == "new-version"
    garbage = alice.post("/upload", data=b"not a cab" * 100, headers={
        "X-CSRF-Token": token, "Accept": "application/json", "Content-Type": "application/octet-stream",
        "X-File-Name": "junk.cab"})
    assert garbage.status_code == 400 and garbage.json()["error"]["message"].startswith("junk.cab: ")
    assert "console:alice" in alice.get("/audit?action=import").text
    # Without JavaScript the page posts a multipart form: imported the same way, then the rules page.
    v4 = cab_in(tmp_path / "v4", [make_update("Polycom", "CX600", "4.0.7577.4390")])
    form = alice.post("/upload", data={"csrf_token": token}, files={"cab": ("UCUpdates.cab", v4.read_bytes())})
    assert form.status_code == 303 and form.headers["Location"] == "/console/rules"
    assert "UCUpdates.cab: imported" in alice.get("/rules").text
    assert rule_state(install)[1] == "4.0.7577.4390"

    # Removing the account (real CLI) ends its session at the next request.
    install.cli("admins", "remove", "alice")
    gone = alice.get("/rules")
    assert gone.status_code == 302 and "/sign-in" in gone.headers["Location"]

    # No open redirect after sign-in.
    add_admin(install, "alice", "admin")
    evil = Browserless(server)
    token = evil.csrf("/sign-in")
    response = evil.post("/sign-in", data={"csrf_token": token, "name": "alice", "password": PASSWORD,
                                           "next": "https://evil.example/console/"})
    landing = evil.get(response.headers["Location"].replace("/console", "", 1))
    assert landing.headers["Location"] == "/console/"


def test_sign_in_rate_limited(install, server):
    """Five failures of one name from one address: the next attempt is refused (429) without
    checking the password — even the right one — and the refusals are in the audit trail."""
    client = Browserless(server)
    for attempt in range(5):
        token = client.csrf("/sign-in")
        response = client.post("/sign-in", data={"csrf_token": token, "name": "alice", "password": f"wrong{attempt}"})
        assert response.status_code == 401 and "Wrong name or password" in response.text
    token = client.csrf("/sign-in")
    response = client.post("/sign-in", data={"csrf_token": token, "name": "alice", "password": PASSWORD})
    assert response.status_code == 429 and "Too many failed sign-ins for this name from your address" in response.text
    assert 0 < int(response.headers["Retry-After"]) <= 30
    listed = install.cli("audit", "list", "--action", "console.sign-in", "--json").stdout
    assert listed.count('"refused"') == 5


def test_values_no_field_may_hold_are_refused_at_the_door(install, server):
    """A NUL in a path part, a query or a form value (PostgreSQL refuses it in any text, so it would
    end as a 500 there): 400 with the value's name, on either database, and nothing changed."""
    alice = Browserless(server)
    assert alice.sign_in("alice").status_code == 303
    before = rule_state(install)
    for method, path, data, name in (
            ("GET", "/devices/a%00b", None, "device_id"),
            ("GET", "/devices?q=%00", None, "q"),
            ("GET", "/devices?model=CX%00600", None, "model"),
            ("GET", "/audit?who=x%00", None, "who"),
            ("POST", f"/rules/{RULE}/approve", {"confirm": "1", "note": "a\x00b"}, "note")):
        if data is not None:
            data["csrf_token"] = alice.csrf("/rules")
        answer = alice.request(method, path, data=data)
        assert answer.status_code == 400, (path, answer.status_code, answer.text[:300])
        assert f"{name} holds a NUL or an unencodable character; nothing was looked up or changed." in answer.text
    assert rule_state(install) == before
