"""Console sign-in over real HTTP against ``devupdate serve``: a guesser locks one name for its own
source only, with a lock that doubles; the right password from another source — or another admin
from the same proxy — still signs in; unknown names cost one scrypt run like known ones; a POST
from another site is refused by its ``Origin`` (or ``Referer``)."""

from __future__ import annotations

import re

import pytest
import requests
from consolekit import PASSWORD, Browserless, add_admin, setup_install
from helpers.tools import wait_for

pytestmark = pytest.mark.timeout(180)

ATTACKER, ADMIN = "198.51.100.66", "198.51.100.10"


def sign_in(server, name: str, password: str, source: str | None = None) -> requests.Response:
    """One sign-in through the form; ``source`` is the client address the trusted proxy forwards."""
    client = Browserless(server)
    headers = {"X-Forwarded-For": source} if source else {}
    token = client.csrf("/sign-in")
    return client.post("/sign-in", data={"csrf_token": token, "name": name, "password": password}, headers=headers)


def hashes(server) -> int:
    response = requests.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200, (response.status_code, response.text[:300])
    match = re.search(r"^devupdate_password_hashes_total ([0-9.e+]+)$", response.text, re.M)
    return int(float(match.group(1))) if match else 0  # no line yet: nothing hashed


@pytest.fixture
def admins(install):
    setup_install(install)
    add_admin(install, "alice", "admin")
    add_admin(install, "bob", "admin")
    return install


def test_lock_is_per_name_and_source_and_grows(admins, live_server):
    server = live_server(workers=2, DEVUPDATE_TRUSTED_PROXIES="127.0.0.1/32", DEVUPDATE_CONSOLE_LOCKOUT_FAILURES="3",
                         DEVUPDATE_CONSOLE_LOCKOUT_SECONDS="1")
    for attempt in range(3):
        response = sign_in(server, "alice", f"guess {attempt}", ATTACKER)
        assert response.status_code == 401 and "Wrong name or password." in response.text
    locked = sign_in(server, "alice", PASSWORD, ATTACKER)  # the right password, from the guessing source
    assert locked.status_code == 429
    assert "Too many failed sign-ins for this name from your address; try again in 1 second" in locked.text
    assert locked.headers["Retry-After"] == "1"
    # alice from her own address signs in; the guesser's other names are still checked
    assert sign_in(server, "alice", PASSWORD, ADMIN).status_code == 303
    assert sign_in(server, "bob", "guess", ATTACKER).status_code == 401
    # each failure after a lock doubles it: 1 s, 2 s, 4 s
    waits = [int(locked.headers["Retry-After"])]
    for _ in range(2):
        def past_the_lock() -> tuple | None:  # (a Response is falsy when it is an error)
            response = sign_in(server, "alice", "another guess", ATTACKER)
            return None if response.status_code == 429 else (response,)
        wrong = wait_for(past_the_lock, timeout=20, interval=0.2)
        assert wrong and wrong[0].status_code == 401
        again = sign_in(server, "alice", PASSWORD, ATTACKER)
        assert again.status_code == 429
        waits.append(int(again.headers["Retry-After"]))
    assert waits[0] < waits[1] < waits[2] and waits[2] in (3, 4), waits
    trail = admins.cli("audit", "list", "--action", "console.sign-in", "--json").stdout
    assert trail.count(f'"Address": "{ATTACKER}"') == 6  # 5 failures checked for alice, 1 for bob
    assert trail.count(f'"Address": "{ADMIN}"') == 1


def test_one_guesser_behind_the_proxy_does_not_lock_out_the_other_admins(admins, live_server):
    """No trusted proxy: everyone is 127.0.0.1, as behind a single reverse proxy."""
    server = live_server(workers=2)
    answers = [sign_in(server, "alice", f"guess {attempt}").status_code for attempt in range(12)]
    assert sign_in(server, "bob", PASSWORD).status_code == 303
    assert answers == [401] * 5 + [429] * 7
    assert sign_in(server, "nobody", "guess").status_code == 401


def test_unknown_names_cost_one_scrypt_run_like_known_ones(admins, live_server):
    server = live_server(workers=2, DEVUPDATE_CONSOLE_LOCKOUT_FAILURES="100")
    for name in ("ghost", "alice", "phantom"):
        before = hashes(server)
        for attempt in range(6):
            response = sign_in(server, name, f"guess {attempt}")
            assert response.status_code == 401 and "Wrong name or password." in response.text
        assert hashes(server) - before == 6, name


def test_posts_from_another_site_are_refused(admins, live_server):
    server = live_server(workers=2, DEVUPDATE_CONSOLE_TRUSTED_ORIGINS="https://updates.contoso.com")
    own = server.url  # http://127.0.0.1:PORT
    alice = Browserless(server)
    assert alice.sign_in("alice").status_code == 303
    token = alice.csrf("/test-devices")

    def add(name: str, **headers: str) -> requests.Response:
        return alice.post("/test-devices", headers=headers, data={"csrf_token": token, "name": name, "kind": "mac",
                                                                  "identifier": "00-04-F2-00-00-0" + name[-1]})

    for headers, shown in (({"Origin": "https://evil.example"}, "https://evil.example:443"),
                           ({"Origin": own.replace("127.0.0.1", "localhost")}, own.replace("127.0.0.1", "localhost")),
                           ({"Origin": f"http://127.0.0.1:{server.port + 1}"}, f"http://127.0.0.1:{server.port + 1}"),
                           ({"Origin": "null"}, "null"),
                           ({"Referer": "http://evil.example/page.html"}, "http://evil.example:80")):
        refused = add("lab1", **headers)
        assert refused.status_code == 403, headers
        assert "Request from another site" in refused.text and "nothing was changed" in refused.text
        if shown:
            assert f"This form was sent from {shown}, not from this console" in refused.text
    # the sign-in form too (login CSRF)
    stranger = Browserless(server)
    form = stranger.csrf("/sign-in")
    login = stranger.post("/sign-in", headers={"Origin": "https://evil.example"},
                          data={"csrf_token": form, "name": "alice", "password": PASSWORD})
    assert login.status_code == 403
    assert "lab1" not in alice.get("/test-devices").text
    # our own origin, a Referer from our own pages, a trusted origin, or no header at all: accepted
    assert add("lab1", Origin=own).status_code == 303
    assert add("lab2", Referer=own + "/console/test-devices").status_code == 303
    assert add("lab3", Origin="https://updates.contoso.com").status_code == 303
    assert add("lab4").status_code == 303
    page = alice.get("/test-devices").text
    assert all(name in page for name in ("lab1", "lab2", "lab3", "lab4"))
