"""External users from a real LDAP directory (Debian's ``slapd``, started by the test on a free
loopback port) through ``devupdate serve``: Basic binds as the user, the group filter refuses
members of no group, connections are pooled, LDAPS and StartTLS verify the directory's
certificate, and a directory that is down or silent is a 503 with the reason — never a 500 —
while internal checks keep being answered."""

from __future__ import annotations

import base64
import socket
import statistics
import threading
import time

import pytest
import requests
from fleet import V0, fleet, server_env
from helpers.slapd import PEOPLE, PHONES_GROUP, SERVICE_DN, SERVICE_PASSWORD, Slapd
from helpers.tools import free_port

pytestmark = pytest.mark.timeout(240)

EXT = "/RequestHandlerExt/ucdevice.upx"
INT = "/RequestHandler/ucdevice.upx"
USERS = {"alice": "alice's secret", "bob": "bob's secret"}


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "text/xml; charset=utf-8"}


def code_of(response: requests.Response) -> str:
    return response.text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in response.text else ""


def directory_env(url: str, **extra: str) -> dict[str, str]:
    return server_env(**{"DEVUPDATE_EXTERNAL_USER_SOURCES": "directory", "DEVUPDATE_DIRECTORY_URL": url,
                         "DEVUPDATE_DIRECTORY_USER_BASE": PEOPLE, "DEVUPDATE_DIRECTORY_BIND_DN": SERVICE_DN,
                         "DEVUPDATE_DIRECTORY_BIND_PASSWORD": SERVICE_PASSWORD,
                         "DEVUPDATE_DIRECTORY_REQUIRED_GROUP": PHONES_GROUP, "DEVUPDATE_DIRECTORY_TIMEOUT": "2",
                         "DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT": "0", **extra})


@pytest.fixture
def slapd(tmp_path):
    server = Slapd(tmp_path / "ldap", USERS, members=["alice"]).start()
    yield server
    server.stop()


def check(server, headers: dict[str, str] | None, side: str = EXT) -> requests.Response:
    body = fleet(1, installed=V0)[0].request_xml()
    return requests.post(server.url + side, data=body, headers=headers or {"Content-Type": "text/xml"}, timeout=30)


def test_basic_against_the_directory_with_the_group_filter(site, slapd, live_server):
    server = live_server(workers=2, **directory_env(slapd.url, DEVUPDATE_DIRECTORY_POOL_SIZE="2"))
    bare = check(server, None)
    # the directory hands out no NT hashes: only Basic is offered
    assert bare.status_code == 401 and bare.headers["WWW-Authenticate"] == 'Basic realm="devupdate"'
    assert check(server, basic("alice", USERS["alice"])).status_code == 200
    for user, password in (("alice", "wrong"), ("bob", USERS["bob"]), ("nobody", "x"), ("al*", USERS["alice"]),
                           ("alice)(uid=*", USERS["alice"]), ("alice", "")):
        refused = check(server, basic(user, password))
        assert (refused.status_code, code_of(refused)) == (401, "BadCredentials"), user
    # connections are kept and reused: never more than pool size × workers, however many checks
    for attempt in range(20):
        assert check(server, basic("alice" if attempt % 2 else "bob", f"guess {attempt}")).status_code == 401
    assert 1 <= slapd.connections() <= 4


def test_the_database_and_the_directory_together(site, slapd, live_server):
    site.cli("users", "add", "phones", "--password-stdin", input="correct horse\n")
    server = live_server(workers=1, **directory_env(slapd.url, DEVUPDATE_EXTERNAL_USER_SOURCES="database,directory"))
    assert check(server, basic("phones", "correct horse")).status_code == 200
    assert check(server, basic("alice", USERS["alice"])).status_code == 200
    assert check(server, basic("bob", USERS["bob"])).status_code == 401
    assert "NTLM" in check(server, None).headers["WWW-Authenticate"]  # the database's users have NT hashes


def test_a_directory_that_is_down_is_a_503_with_the_reason_and_internal_checks_go_on(site, slapd, live_server):
    server = live_server(workers=1, **directory_env(slapd.url))
    assert check(server, basic("alice", USERS["alice"])).status_code == 200
    slapd.stop()
    refused = check(server, basic("alice", "another password"))  # not cached: asks the directory
    assert refused.status_code == 503 and code_of(refused) == "Unavailable"
    assert "the directory at ldap://127.0.0.1" in refused.text and refused.headers["Retry-After"] == "5"
    assert check(server, None, INT).status_code == 200
    slapd.start()
    deadline = time.monotonic() + 15  # refused at once for a few seconds, then asked again
    while (answer := check(server, basic("bob", "guess"))).status_code != 401:
        assert answer.status_code == 503 and time.monotonic() < deadline
        time.sleep(0.2)
    assert check(server, basic("alice", USERS["alice"])).status_code == 200


def test_a_silent_directory_costs_its_timeout_once_and_never_holds_internal_checks(site, live_server):
    """A directory that accepts connections and never answers: the first check waits for the timeout
    (2 s), the next are refused at once; internal checks keep their speed meanwhile."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", free_port()))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        url = f"ldap://127.0.0.1:{listener.getsockname()[1]}"
        server = live_server(workers=1, DEVUPDATE_THREADS="4", **directory_env(url))
        internal = [check(server, None, INT) for _ in range(5)]
        assert all(r.status_code == 200 for r in internal)
        results: list[tuple[int, str, float]] = []

        def external(i: int) -> None:
            started = time.monotonic()
            response = check(server, basic("alice", f"pw {i}"))
            results.append((response.status_code, code_of(response), time.monotonic() - started))
        threads = [threading.Thread(target=external, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        timings = []
        while any(thread.is_alive() for thread in threads):
            started = time.monotonic()
            assert check(server, None, INT).status_code == 200
            timings.append(time.monotonic() - started)
        for thread in threads:
            thread.join()
        assert {status for status, _, _ in results} <= {503} and len(results) == 8
        assert {code for _, code, _ in results} <= {"Unavailable", "Busy"}
        slowest = max(seconds for _, _, seconds in results)
        print(f"silent directory: slowest external refusal {slowest:.2f} s; internal checks meanwhile "
              f"median {statistics.median(timings) * 1000:.1f} ms, max {max(timings) * 1000:.1f} ms "
              f"over {len(timings)}")
        assert slowest < 6
        assert max(timings) < 1.5
    finally:
        stop.set()
        holder.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_ldaps_and_starttls_verify_the_directorys_certificate(site, tmp_path, live_server):
    from devupdate.tls.certs import create_ca, create_server_cert

    ca = create_ca("directory test CA")
    issued = create_server_cert(ca, ["localhost", "127.0.0.1"])
    cert, key, ca_file = tmp_path / "ldap.crt", tmp_path / "ldap.key", tmp_path / "ca.pem"
    cert.write_bytes(issued.cert_pem())
    key.write_bytes(issued.key_pem())
    key.chmod(0o600)
    ca_file.write_bytes(ca.cert_pem())
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(create_ca("another CA").cert_pem())
    slapd = Slapd(tmp_path / "ldap", USERS, members=["alice"], tls=(cert, key)).start()
    try:
        for url, extra in ((slapd.ldaps_url, {}), (slapd.url, {"DEVUPDATE_DIRECTORY_START_TLS": "true"})):
            good = live_server(workers=1, **directory_env(url, DEVUPDATE_DIRECTORY_CA_FILE=str(ca_file), **extra))
            assert check(good, basic("alice", USERS["alice"])).status_code == 200, url
            assert check(good, basic("bob", USERS["bob"])).status_code == 401
            good.stop()
            wrong = live_server(workers=1, **directory_env(url, DEVUPDATE_DIRECTORY_CA_FILE=str(other_ca), **extra))
            refused = check(wrong, basic("alice", USERS["alice"]))
            assert refused.status_code == 503 and "the directory at" in refused.text, refused.text
            wrong.stop()
    finally:
        slapd.stop()


def test_an_unknown_name_costs_the_directory_what_a_known_one_does(site, slapd, monkeypatch):
    """In process against the real slapd: a search and a bind for a known name with a wrong
    password, an unknown name, and a known name outside the group alike."""
    import ldap3

    from devupdate.devices.directory import DirectoryConfig, DirectoryUserStore

    calls: list[str] = []
    for name in ("search", "rebind"):
        original = getattr(ldap3.Connection, name)
        monkeypatch.setattr(ldap3.Connection, name,
                            lambda self, *a, _o=original, _n=name, **k: calls.append(_n) or _o(self, *a, **k))
    store = DirectoryUserStore(DirectoryConfig(urls=(slapd.url,), user_base=PEOPLE, bind_dn=SERVICE_DN,
                                               bind_password=SERVICE_PASSWORD, required_group=PHONES_GROUP))
    assert store.verify("alice", USERS["alice"])
    seen = {}
    for user, password in (("alice", "wrong"), ("nobody", "wrong"), ("bob", USERS["bob"])):
        calls.clear()
        assert not store.verify(user, password)
        seen[user] = calls.count("rebind"), calls.count("search")
    # every check: the service bind, the user search, the group search, the user's bind (for an
    # unknown name, as a DN that does not exist)
    assert seen == {"alice": (2, 2), "nobody": (2, 2), "bob": (2, 2)}
    store.close()
