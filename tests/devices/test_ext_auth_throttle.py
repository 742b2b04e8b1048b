"""The external side's password checks against ``devupdate serve`` over real HTTP: an unknown user
costs the server exactly one scrypt run, as a known one does (counted by the server itself in
``devupdate_password_hashes_total``, not timed); a source sending wrong passwords is answered
``429`` with ``Retry-After`` after the limit, shared by the workers; with the limit off, guessing
takes only the hashing slots (``503`` at once when they are taken) and internal checks keep being
answered."""

from __future__ import annotations

import base64
import re
import threading
import time

import pytest
import requests
from fleet import phonesim

pytestmark = pytest.mark.timeout(180)

EXT = "/RequestHandlerExt/ucdevice.upx"
INT = "/RequestHandler/ucdevice.upx"
PHONE = phonesim.make_fleet(1, seed=5)[0]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "text/xml; charset=utf-8"}


def hashes(server) -> int:
    """scrypt runs so far, summed over the workers (the server's own count)."""
    text = requests.get(server.url + "/metrics", timeout=10).text
    match = re.search(r"^devupdate_password_hashes_total ([0-9.e+]+)$", text, re.M)
    return int(float(match.group(1))) if match else 0


def ext_check(server, user: str, password: str) -> requests.Response:
    return requests.post(server.url + EXT, data=PHONE.request_xml(), headers=basic(user, password), timeout=30)


@pytest.fixture
def users(site):
    site.cli("users", "add", "phones", "--password-stdin", input="correct horse\n")
    return site


def test_unknown_user_costs_one_scrypt_run_like_a_known_one(users, live_server):
    server = live_server(workers=2, DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT="0")
    assert ext_check(server, "phones", "correct horse").status_code == 200
    rounds = 8
    for who in ("nobody", "phones", "nobody-else"):
        before = hashes(server)
        for attempt in range(rounds):
            response = ext_check(server, who, f"guess {attempt}")
            assert response.status_code == 401
            assert response.text == ('<?xml version="1.0" encoding="utf-8"?>\n<Error><Code>BadCredentials</Code>'
                                     "<Message>user name or password is wrong</Message></Error>\n")
            assert response.headers["WWW-Authenticate"] == 'Negotiate, NTLM, Basic realm="devupdate"'
        assert hashes(server) - before == rounds, who
    # the right password is checked once per worker, then answered from that worker's cache
    before = hashes(server)
    assert [ext_check(server, "phones", "correct horse").status_code for _ in range(6)] == [200] * 6
    assert hashes(server) - before <= 2


class Attack:
    """``clients`` threads sending wrong Basic credentials until each has been answered 429 twice
    (at most ``per_client`` requests and 60 s); every answer is kept."""

    def __init__(self, server, clients: int = 16, per_client: int = 500):
        self.server, self.per_client = server, per_client
        self.deadline = time.monotonic() + 60
        self.answers: list[requests.Response] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]

    def _client(self, n: int) -> None:
        session, limited = requests.Session(), 0
        for attempt in range(self.per_client):
            if time.monotonic() > self.deadline:
                return
            response = session.post(self.server.url + EXT, data=PHONE.request_xml(),
                                    headers=basic("phones", f"wrong {n} {attempt}"), timeout=60)
            with self.lock:
                self.answers.append(response)
            limited += response.status_code == 429
            if limited >= 2:
                return

    def __enter__(self) -> Attack:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for thread in self.threads:
            thread.join(timeout=120)

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)


def internal_checks_while(attack: Attack, server) -> list[tuple[int, float]]:
    """Internal update checks, one after another, for as long as the attack runs (at least 5)."""
    results = []
    while attack.running or len(results) < 5:
        started = time.monotonic()
        response = requests.post(server.url + INT, data=PHONE.request_xml(),
                                 headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=10)
        results.append((response.status_code, time.monotonic() - started))
    return results


def test_wrong_passwords_are_rate_limited_per_source_across_workers(users, live_server):
    server = live_server(workers=2, DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT="10",
                         DEVUPDATE_EXTERNAL_AUTH_FAILURE_WINDOW="300")
    with Attack(server) as attack:
        checks = internal_checks_while(attack, server)
    statuses = [response.status_code for response in attack.answers]
    assert set(statuses) <= {401, 429, 503}, statuses
    # ten failures per source for the whole server (both workers), a few more only while in flight
    assert 10 <= statuses.count(401) <= 10 + 4, statuses
    limited = [response for response in attack.answers if response.status_code == 429]
    assert len(limited) >= 2 * 16
    for response in limited:
        assert 1 <= int(response.headers["Retry-After"]) <= 300
        assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
        assert re.fullmatch(r'<\?xml version="1.0" encoding="utf-8"\?>\n<Error><Code>TooManyFailures</Code>'
                            r"<Message>too many failed logins from 127\.0\.0\.1; retry in \d+ s</Message></Error>\n",
                            response.text), response.text
    assert checks and all(status == 200 for status, _ in checks), checks
    assert max(seconds for _, seconds in checks) < 5, checks
    # the source is refused before its password is looked at: the right one too, and on downloads
    before = hashes(server)
    assert ext_check(server, "phones", "correct horse").status_code == 429
    download = requests.get(server.url + "/DeviceUpdateFiles_Ext/UCPhone/x.nbt", headers=basic("phones", "x"),
                            timeout=10)
    assert download.status_code == 429 and "<Code>TooManyFailures</Code>" in download.text
    assert int(download.headers["Retry-After"]) >= 1
    assert hashes(server) == before
    # the internal side does not authenticate and is not limited
    assert requests.post(server.url + INT, data=PHONE.request_xml(), timeout=10).status_code == 200


def p90(checks: list[tuple[int, float]]) -> float:
    ordered = sorted(seconds for _, seconds in checks)
    return ordered[int(0.9 * (len(ordered) - 1))]


def test_guessing_without_a_limit_takes_only_the_hashing_slots(users, live_server):
    """Limit off: 16 guessing clients on 2 workers × 4 threads. Per worker at most the hashing slots
    run scrypt and the rest of the threads but one wait for a slot; further guesses get 503 at once,
    so a thread stays free and internal checks keep being answered promptly (starved, their p90 was
    seconds)."""
    server = live_server(workers=2, DEVUPDATE_THREADS="4", DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT="0")
    with Attack(server, per_client=12) as attack:
        checks = internal_checks_while(attack, server)
    statuses = [response.status_code for response in attack.answers]
    assert set(statuses) <= {401, 503}, statuses
    busy = [response for response in attack.answers if response.status_code == 503]
    assert busy, "no guess was refused for lack of a hashing slot"
    for response in busy:
        assert response.headers["Retry-After"] == "1"
        assert "<Code>Busy</Code>" in response.text
    assert statuses.count(401) >= 1
    assert checks and all(status == 200 for status, _ in checks), checks
    assert p90(checks) < 1.0, sorted(seconds for _, seconds in checks)
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    assert f'devupdate_auth_throttled_total{{reason="busy"}} {float(len(busy))}' in metrics


def test_one_wrong_password_repeated_costs_one_scrypt_run_per_worker(users, live_server):
    """16 clients repeating the same wrong password: the first check runs scrypt, the ones arriving
    meanwhile share its result, later ones are answered from the failure cache (10 s)."""
    server = live_server(workers=2, DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT="0")
    before = hashes(server)
    answers: list[int] = []

    def client() -> None:
        session = requests.Session()
        for _ in range(5):
            answers.append(session.post(server.url + EXT, data=PHONE.request_xml(),
                                        headers=basic("phones", "the same guess"), timeout=60).status_code)
    threads = [threading.Thread(target=client) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert answers == [401] * 80
    assert 1 <= hashes(server) - before <= 4  # one per worker, once more if the burst outlasts the cache
