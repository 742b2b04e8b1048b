"""NTLM and Negotiate on the external side over real HTTP against ``devupdate serve``: a client doing
the real three-leg handshake (pyspnego's initiator on one kept-alive connection, and ``curl --ntlm``)
gets the update check and the ``_Ext`` download; a wrong password, an unknown user, an
AUTHENTICATE message replayed on another connection (or on its own after use), a handshake split
across connections, LM/NTLMv1 responses and a user without an NT hash are refused; failures count
against the source like Basic's."""

from __future__ import annotations

import base64
import http.client
import statistics
import time

import pytest
import spnego
from fleet import CX600, V0, V1, assert_answer, fleet, import_release, server_env
from helpers.curl import Curl

pytestmark = pytest.mark.timeout(180)

EXT = "/RequestHandlerExt/ucdevice.upx"
PASSWORD = "correct horse"


class Answer:
    def __init__(self, response: http.client.HTTPResponse):
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()
        self.challenges = response.headers.get_all("WWW-Authenticate") or []

    def code(self) -> str:
        text = self.body.decode("utf-8", "replace")
        return text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""


class Connection(http.client.HTTPConnection):
    """One kept-alive connection (closed when a ``with`` block ends)."""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(server) -> Connection:
    return Connection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)


def send(conn: http.client.HTTPConnection, authorization: str | None, *, path: str = EXT,
         body: bytes | None = None) -> Answer:
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    if authorization:
        headers["Authorization"] = authorization
    conn.request("POST" if body is not None else "GET", path, body=body, headers=headers)
    return Answer(conn.getresponse())


def initiator(user: str, password: str, scheme: str):
    protocol = "ntlm" if scheme == "NTLM" else "negotiate"
    options = spnego.NegotiateOptions.use_ntlm if scheme == "NTLM" else spnego.NegotiateOptions.use_negotiate
    return spnego.client(user, password, hostname="ucupdates.contoso.com", service="HTTP", protocol=protocol,
                         options=options)


def token_of(answer: Answer, scheme: str) -> bytes:
    assert answer.status == 401, (answer.status, answer.body)
    values = [c for c in answer.challenges if c.startswith(scheme + " ")]
    assert len(values) == 1, answer.challenges
    return base64.b64decode(values[0].split(" ", 1)[1])


def negotiate(conn, client, scheme: str, **request) -> Answer:
    """Legs 1 and 2: NEGOTIATE out, CHALLENGE back (the client steps it)."""
    first = send(conn, f"{scheme} {base64.b64encode(client.step()).decode()}", **request)
    assert first.code() == "AuthenticationContinue"
    return first


def handshake(conn, user: str, password: str, scheme: str = "NTLM", **request) -> tuple[Answer, str]:
    """The three legs on ``conn``; returns the last answer and the AUTHENTICATE header sent."""
    client = initiator(user, password, scheme)
    challenge = token_of(negotiate(conn, client, scheme, **request), scheme)
    authenticate = f"{scheme} {base64.b64encode(client.step(challenge)).decode()}"
    return send(conn, authenticate, **request), authenticate


@pytest.fixture
def released(site, tmp_path):
    """V1 approved for the CX600 family, and a user 'phones' added with the real CLI."""
    release = import_release(site, tmp_path, V1)[CX600]
    site.cli("rules", "approve", release.rule_id)
    site.cli("users", "add", "phones", "--password-stdin", input=PASSWORD + "\n")
    return release


@pytest.mark.parametrize("scheme", ["NTLM", "Negotiate"])
def test_the_three_legs_on_one_connection_get_the_check_and_the_ext_download(released, live_server, scheme):
    server = live_server(workers=2, **server_env())
    phone = fleet(1, installed=V0)[0]
    conn = connect(server)
    bare = send(conn, None, body=phone.request_xml())
    assert bare.status == 401 and bare.code() == "AuthenticationRequired"
    assert bare.challenges == ["Negotiate", "NTLM", 'Basic realm="devupdate"']
    answer, _ = handshake(conn, "phones", PASSWORD, scheme, body=phone.request_xml())
    assert answer.status == 200, answer.body
    result = type("R", (), {"status": answer.status, "body": answer.body,
                            "headers": {k.lower(): v for k, v in answer.headers.items()}})()
    assert_answer(result, released.expected("Ext"))
    # the download: its own handshake, on the same kept-alive connection (three more legs)
    path = "/DeviceUpdateFiles_Ext/" + "/".join((*released.family, V1, released.image))
    refused = send(conn, None, path=path)
    assert refused.status == 401
    download, _ = handshake(conn, "phones", PASSWORD, scheme, path=path)
    assert download.status == 200 and download.body == released.files[released.image]
    conn.close()
    # and a domain-qualified name is the same user
    conn = connect(server)
    answer, _ = handshake(conn, "CONTOSO\\phones", PASSWORD, scheme, body=phone.request_xml())
    assert answer.status == 200
    conn.close()


def test_curl_ntlm_gets_the_check_and_the_download(released, live_server, tmp_path):
    server = live_server(workers=2, **server_env())
    curl = Curl(tmp_path)
    request = tmp_path / "request.xml"
    request.write_bytes(fleet(1, installed=V0)[0].request_xml())
    status, headers, body, _ = curl("--ntlm", "-u", f"phones:{PASSWORD}", "--data-binary", f"@{request}",
                                    "-H", "Content-Type: text/xml; charset=utf-8", server.url + EXT)
    assert status == 200 and b"<NumOfFiles>2</NumOfFiles>" in body, body
    url = server.url + "/DeviceUpdateFiles_Ext/" + "/".join((*released.family, V1, released.image))
    status, headers, body, _ = curl("--ntlm", "-u", f"phones:{PASSWORD}", url)
    assert status == 200 and body == released.files[released.image]
    status, headers, body, _ = curl("--ntlm", "-u", "phones:wrong horse", url)
    assert status == 401 and b"<Code>BadCredentials</Code>" in body
    status, headers, body, _ = curl("--ntlm", "-u", f"nobody:{PASSWORD}", url)
    assert status == 401 and b"<Code>BadCredentials</Code>" in body


def test_the_handshake_holds_over_the_tls_listener(site, released, live_server, tmp_path):
    """``serve --tls`` runs its own arbiter of the same worker over TLS sockets: the three legs hold
    there too (pyspnego and curl), and plain HTTP is refused before any NTLM message is looked at."""
    import ssl

    from helpers.tools import free_port, wait_port

    env = {**server_env(), "DEVUPDATE_PUBLIC_EXTERNAL_URL": "https://ucupdates.contoso.com",
           "DEVUPDATE_TLS_PORT": str(free_port())}
    site.cli("cert", "create", **env)
    server = live_server(workers=1, args=("--tls",), **env)
    port = int(env["DEVUPDATE_TLS_PORT"])
    wait_port(port)
    body = fleet(1, installed=V0)[0].request_xml()
    with connect(server) as plain:
        token = base64.b64encode(initiator("phones", PASSWORD, "NTLM").step()).decode()
        refused = send(plain, f"NTLM {token}", body=body)
        assert (refused.status, refused.code()) == (403, "HttpsRequired")
    context = ssl.create_default_context(cafile=str(site.home / "tls" / "ca.crt"))
    context.check_hostname = False  # the certificate names the public hosts; the chain is still verified
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    try:
        answer, _ = handshake(conn, "phones", PASSWORD, "Negotiate", body=body)
        assert answer.status == 200 and b"<NumOfFiles>2</NumOfFiles>" in answer.body
        answer, _ = handshake(conn, "phones", PASSWORD, "NTLM", body=body)
        assert answer.status == 200
    finally:
        conn.close()
    curl = Curl(tmp_path)
    request = tmp_path / "request.xml"
    request.write_bytes(body)
    status, _, answer_body, _ = curl("--ntlm", "-u", f"phones:{PASSWORD}", "--cacert",
                                     str(site.home / "tls" / "ca.crt"), "--resolve",
                                     f"ucupdates.contoso.com:{port}:127.0.0.1", "--data-binary", f"@{request}",
                                     "-H", "Content-Type: text/xml", f"https://ucupdates.contoso.com:{port}{EXT}")
    assert status == 200 and b"<NumOfFiles>2</NumOfFiles>" in answer_body


def test_wrong_unknown_replayed_split_and_weak_responses_are_refused(released, live_server):
    server = live_server(workers=2, DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT="0", **server_env())
    body = fleet(1, installed=V0)[0].request_xml()
    with connect(server) as conn:
        assert handshake(conn, "phones", "wrong horse", body=body)[0].code() == "BadCredentials"
        assert handshake(conn, "nobody", PASSWORD, body=body)[0].code() == "BadCredentials"
        good, authenticate = handshake(conn, "phones", PASSWORD, body=body)
        assert good.status == 200
        # used once: the same AUTHENTICATE again on its own connection finds no handshake
        again = send(conn, authenticate, body=body)
        assert (again.status, again.code()) == (401, "NoHandshake")
    # replayed on another connection — with no handshake there, and with one of its own
    with connect(server) as other:
        assert send(other, authenticate, body=body).code() == "NoHandshake"
        negotiate(other, initiator("phones", PASSWORD, "NTLM"), "NTLM", body=body)
        replay = send(other, authenticate, body=body)
        assert (replay.status, replay.code()) == (401, "BadCredentials")
    # a handshake split across connections: NEGOTIATE on one, AUTHENTICATE on another
    client = initiator("phones", PASSWORD, "NTLM")
    first, second = connect(server), connect(server)
    challenge = token_of(negotiate(first, client, "NTLM", body=body), "NTLM")
    split = send(second, f"NTLM {base64.b64encode(client.step(challenge)).decode()}", body=body)
    assert (split.status, split.code()) == (401, "NoHandshake")
    # ... and the first connection's context was not touched by it: it is still pending there,
    # but the AUTHENTICATE the client made was for it, so it completes on its own connection only
    first.close()
    second.close()
    metrics = __import__("requests").get(server.url + "/metrics", timeout=10).text
    assert 'devupdate_sign_in_failures_total{reason="no-handshake",surface="device"} 3.0' in metrics
    assert 'devupdate_sign_in_failures_total{reason="bad-credentials",surface="device"} 3.0' in metrics
    # a scheme mismatch between the legs is no handshake either
    with connect(server) as conn:
        client = initiator("phones", PASSWORD, "NTLM")
        challenge = token_of(negotiate(conn, client, "NTLM", body=body), "NTLM")
        mixed = send(conn, f"Negotiate {base64.b64encode(client.step(challenge)).decode()}", body=body)
        assert mixed.code() == "NoHandshake"
        assert send(conn, "NTLM %%%", body=body).code() == "BadToken"


def test_lm_and_ntlmv1_responses_are_refused(released, live_server, monkeypatch):
    server = live_server(workers=1, DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT="0", **server_env())
    body = fleet(1, installed=V0)[0].request_xml()
    for level in ("0", "1"):  # the initiator sends LM and NTLMv1 responses (LmCompatibilityLevel 0/1)
        monkeypatch.setenv("LM_COMPAT_LEVEL", level)
        with connect(server) as conn:
            answer, _ = handshake(conn, "phones", PASSWORD, body=body)
            assert (answer.status, answer.code()) == (401, "BadCredentials"), level
    monkeypatch.setenv("LM_COMPAT_LEVEL", "3")
    with connect(server) as conn:
        assert handshake(conn, "phones", PASSWORD, body=body)[0].status == 200


def test_failed_handshakes_count_against_the_source(released, live_server):
    server = live_server(workers=2, DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT="3", **server_env())
    body = fleet(1, installed=V0)[0].request_xml()
    codes = []
    for _ in range(3):
        with connect(server) as conn:
            codes.append(handshake(conn, "phones", "wrong horse", body=body)[0].code())
    assert codes == ["BadCredentials"] * 3
    with connect(server) as conn:
        answer = send(conn, f"NTLM {base64.b64encode(initiator('phones', PASSWORD, 'NTLM').step()).decode()}",
                      body=body)
        assert answer.status == 429 and int(answer.headers["Retry-After"]) > 0


def test_a_user_without_an_nt_hash_gets_one_with_the_next_password(site, released, live_server):
    """Users whose password was set before NT hashes were kept (or while NTLM was off) sign in with
    Basic only until their password is set again."""
    from devupdate import db
    from devupdate.devices.users import ExternalUser

    site.cli("users", "add", "legacy", "--password-stdin", input=PASSWORD + "\n",
             DEVUPDATE_EXTERNAL_AUTH_SCHEMES="Basic")
    db.open_database(site.settings().effective_database_url).connect(reuse_if_open=True)
    try:
        assert ExternalUser.get_by_id("legacy").nt_hash is None
        assert ExternalUser.get_by_id("phones").nt_hash.startswith("nt$")
    finally:
        db.database.close()
    listed = site.cli("users", "list", "--json").stdout
    assert '"NTLM": false' in listed and '"NTLM": true' in listed
    server = live_server(workers=1, DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT="0", **server_env())
    body = fleet(1, installed=V0)[0].request_xml()
    with connect(server) as conn:
        assert handshake(conn, "legacy", PASSWORD, body=body)[0].code() == "BadCredentials"
        basic = "Basic " + base64.b64encode(f"legacy:{PASSWORD}".encode()).decode()
        assert send(conn, basic, body=body).status == 200
    site.cli("users", "add", "legacy", "--replace", "--password-stdin", input=PASSWORD + "\n")
    with connect(server) as conn:
        deadline = time.monotonic() + 10  # the server reads a user again within its lookup time
        while (answer := handshake(conn, "legacy", PASSWORD, body=body)[0]).status != 200:
            assert time.monotonic() < deadline, answer.body
            time.sleep(0.2)


def test_nt_hashes_wrapped_with_the_key_verify_only_with_it(site, released, live_server):
    key = "ab" * 32
    site.cli("users", "add", "wrapped", "--password-stdin", input=PASSWORD + "\n", DEVUPDATE_NT_HASH_KEY=key)
    body = fleet(1, installed=V0)[0].request_xml()
    keyed = live_server(workers=1, DEVUPDATE_NT_HASH_KEY=key, **server_env())
    with connect(keyed) as conn:
        assert handshake(conn, "wrapped", PASSWORD, body=body)[0].status == 200
        assert handshake(conn, "phones", PASSWORD, body=body)[0].status == 200  # stored before: plain
    keyed.stop()
    unkeyed = live_server(workers=1, DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT="0", **server_env())
    with connect(unkeyed) as conn:
        assert handshake(conn, "wrapped", PASSWORD, body=body)[0].code() == "BadCredentials"


def test_an_unknown_user_costs_what_a_known_one_does(released, live_server):
    """The server verifies an unknown name's response against a random hash: the same work as a
    known name with a wrong password (median time of the AUTHENTICATE leg over real HTTP)."""
    server = live_server(workers=1, DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT="0", **server_env())
    timings: dict[str, list[float]] = {"phones": [], "nobody": []}
    with connect(server) as conn:
        for round_ in range(30):
            for who in sorted(timings, reverse=bool(round_ % 2)):  # each goes first every other round
                client = initiator(who, "wrong horse", "NTLM")
                challenge = token_of(negotiate(conn, client, "NTLM"), "NTLM")
                authenticate = f"NTLM {base64.b64encode(client.step(challenge)).decode()}"
                started = time.perf_counter()
                answer = send(conn, authenticate)
                timings[who].append(time.perf_counter() - started)
                assert answer.code() == "BadCredentials"
    known, unknown = (statistics.median(timings[who]) for who in ("phones", "nobody"))
    print(f"AUTHENTICATE leg, median of 30: known name {known * 1000:.2f} ms, unknown {unknown * 1000:.2f} ms")
    assert 1 / 3 < unknown / known < 3  # loopback on a shared machine is noisy; the exact check is below


def test_an_unknown_name_is_verified_against_a_random_hash(monkeypatch):
    """In process, exactly: one store lookup and one NTLMv2 response computation for a known name
    with a wrong password, an unknown name, and a name in a domain that is not accepted."""
    from spnego import _ntlm as impl

    from devupdate.devices.ntlm import Handshakes
    from devupdate.devices.users import nt_hash_of
    from devupdate.web.connection import Connection

    looked_up: list[str] = []

    class Store:
        def verify(self, name, password):
            return False

        def nt_hash(self, name):
            looked_up.append(name)
            return nt_hash_of(PASSWORD) if name == "phones" else None

    computed: list[int] = []
    original = impl.compute_response_v2
    monkeypatch.setattr(impl, "compute_response_v2", lambda *a: computed.append(1) or original(*a))
    handshakes = Handshakes(Store(), domains=("CONTOSO",))
    for user, password, expect in (("phones", PASSWORD, "phones"), ("CONTOSO\\phones", PASSWORD, "phones"),
                                   ("phones", "wrong horse", ""), ("nobody", PASSWORD, ""),
                                   ("FABRIKAM\\phones", PASSWORD, "")):
        client, connection = initiator(user, password, "NTLM"), Connection()
        start = handshakes.step("NTLM", base64.b64encode(client.step()).decode(), connection)
        authenticate = base64.b64encode(client.step(base64.b64decode(start.challenge.split(" ", 1)[1]))).decode()
        looked_up.clear()
        computed.clear()  # the initiator's own computation is not the server's
        step = handshakes.step("NTLM", authenticate, connection)
        assert (step.user, len(computed)) == (expect, 1), user
        assert looked_up == ([] if user.startswith("FABRIKAM") else [user.split("\\")[-1]])
    assert handshakes.pending() == 0


def test_pending_handshakes_are_bounded_expire_and_die_with_their_connection(monkeypatch):
    from devupdate.devices import ntlm
    from devupdate.web.connection import Connection

    class Store:
        def verify(self, name, password):
            return False

        def nt_hash(self, name):
            from devupdate.devices.users import nt_hash_of

            return nt_hash_of(PASSWORD)

    clock = [1000.0]
    monkeypatch.setattr(ntlm.time, "monotonic", lambda: clock[0])
    handshakes = ntlm.Handshakes(Store(), ttl=30, max_pending=2)

    def start(connection):
        client = initiator("phones", PASSWORD, "NTLM")
        step = handshakes.step("NTLM", base64.b64encode(client.step()).decode(), connection)
        return client, base64.b64decode(step.challenge.split(" ", 1)[1])

    def finish(connection, client, challenge):
        return handshakes.step("NTLM", base64.b64encode(client.step(challenge)).decode(), connection)

    a, b, c = Connection(), Connection(), Connection()
    pending_a, pending_b = start(a), start(b)
    pending_c = start(c)  # the third: the oldest (a's) is dropped
    assert handshakes.pending() == 2
    assert finish(a, *pending_a).code == "NoHandshake"
    assert finish(b, *pending_b).user == "phones"
    b.close()
    c.close()  # its context goes with it
    assert handshakes.pending() == 0
    assert finish(c, *pending_c).code == "NtlmNeedsConnection"
    d = Connection()
    pending_d = start(d)
    clock[0] += 31
    assert finish(d, *pending_d).code == "HandshakeExpired"
    # a server that does not track connections is told to use Basic
    assert handshakes.step("NTLM", base64.b64encode(initiator("phones", PASSWORD, "NTLM").step()).decode(),
                           None).code == "NtlmNeedsConnection"


def test_connection_schemes_are_offered_only_where_connections_are_kept(site):
    """The Flask test client keeps no connections: its 401 offers Basic alone, and an NTLM message
    there is told to use Basic."""
    from devupdate.app import create_app

    app = create_app(site.runtime(), background=False)
    client = app.test_client()
    refused = client.get(EXT)
    assert refused.status_code == 401 and refused.headers.get_all("WWW-Authenticate") == ['Basic realm="devupdate"']
    token = base64.b64encode(initiator("phones", PASSWORD, "NTLM").step()).decode()
    answer = client.get(EXT, headers={"Authorization": f"NTLM {token}"})
    assert answer.status_code == 401 and b"NtlmNeedsConnection" in answer.data


def test_the_nt_hash_migration_adds_its_column_to_a_database_from_before(database):
    """A database from before NT hashes: its users keep signing in with Basic; none has an NT hash."""
    from playhouse.migrate import SchemaMigrator, migrate

    from devupdate import schema
    from devupdate.devices.users import DatabaseUserStore, ExternalUser, hash_password
    from devupdate.schema import SchemaVersion

    table = ExternalUser._meta.table_name
    migrate(SchemaMigrator.from_database(database.obj).drop_column(table, "nt_hash"))
    ours = next(m.version for m in schema.MIGRATIONS if m.apply is schema._external_user_nt_hash)
    SchemaVersion.update(version=ours - 1).execute()  # as the version before it left the database
    database.execute_sql(f'INSERT INTO "{table}" (name, password_hash, created_at, updated_at) '
                         "VALUES (%s, %s, %s, %s)" if not schema.is_sqlite() else
                         f'INSERT INTO "{table}" (name, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?)',
                         ("old-phone", hash_password(PASSWORD), "2026-01-01 00:00:00", "2026-01-01 00:00:00"))
    assert "nt_hash" not in {c.name for c in database.get_columns(table)}
    assert schema.upgrade()[0] == f"applied migration {ours}: external users: the NT hash beside the scrypt hash (NTLM)"
    assert "nt_hash" in {c.name for c in database.get_columns(table)}
    store = DatabaseUserStore()
    assert store.verify("old-phone", PASSWORD) and store.nt_hash("old-phone") is None
    assert store.listing() == [("old-phone", False)]
    store.add("old-phone", PASSWORD, replace=True)
    assert DatabaseUserStore().nt_hash("old-phone") is not None


def test_hostile_tokens_are_401_with_a_code_never_500(released, live_server):
    """Truncated, garbled and oversized NTLM / SPNEGO messages at either leg: a 401 in the device
    protocol's XML, and the server keeps answering."""
    import random

    server = live_server(workers=1, DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT="0", **server_env())
    rng = random.Random(13)
    negotiate_message = initiator("phones", PASSWORD, "NTLM").step()
    hostile = [b"NTLMSSP\x00", b"NTLMSSP\x00\x01\x00\x00\x00", negotiate_message[:20], b"NTLMSSP\x00\x03\x00\x00\x00",
               b"NTLMSSP\x00\x03\x00\x00\x00" + bytes(rng.randrange(256) for _ in range(200)),
               b"NTLMSSP\x00\x07\x00\x00\x00", b"\x60\x03\x06\x01\x00", b"\xa1\x00", b"\x60" + b"\xff" * 40,
               b"\xa1\x82\xff\xff" + b"\x00" * 10, bytes(rng.randrange(256) for _ in range(3000))]
    with connect(server) as conn:
        for token in hostile:
            for scheme in ("NTLM", "Negotiate"):
                # alone, and as the last leg of a real handshake's start
                answer = send(conn, f"{scheme} {base64.b64encode(token).decode()}")
                assert answer.status == 401 and answer.code() in ("BadToken", "NoHandshake", "BadCredentials",
                                                                  "AuthenticationContinue"), (token, answer.body)
                client = initiator("phones", PASSWORD, scheme)
                negotiate(conn, client, scheme)
                answer = send(conn, f"{scheme} {base64.b64encode(token).decode()}")
                assert answer.status == 401 and answer.code(), (token, answer.body)
        assert handshake(conn, "phones", PASSWORD, body=fleet(1, installed=V0)[0].request_xml())[0].status == 200
