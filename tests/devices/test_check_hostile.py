"""Hostile and malformed update checks against a real server: each gets exactly the status and
``<Code>`` it should, never a 500, and each is written to the audit log."""

from __future__ import annotations

import base64
import socket
import time
import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest
from fleet import CX600, V1, audit_rows, client, fleet, import_release, server_env

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("site")]

CHECK = "/RequestHandler/ucdevice.upx"
EXT = "/RequestHandlerExt/ucdevice.upx"


def good(version: str = "4.0.7577.4363", **fields: str) -> bytes:
    values = {"DeviceType": "UCPhone", "MACAddress": "00-04-F2-AA-BB-CC", "SerialNumber": "CX600-0042",
              "Vendor": "Polycom", "Model": "CX600", "Revision": "A", "Locale": "ENU", **fields}
    body = "".join(f"<{k}>{v}</{k}>" for k, v in values.items())
    return (f'<?xml version="1.0" encoding="utf-8"?><Request>{body}<Modules><Module><FileName>CPE.nbt</FileName>'
            f"<Version>{version}</Version></Module></Modules></Request>").encode()


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<Request><DeviceType>&lol4;</DeviceType></Request>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Request><DeviceType>UCPhone</DeviceType><MACAddress>00-04-F2-AA-BB-CC</MACAddress><Vendor>&xxe;</Vendor>
<Model>CX600</Model><Locale>ENU</Locale></Request>"""

DOCTYPE_ONLY = b'<?xml version="1.0"?><!DOCTYPE Request SYSTEM "http://evil.example/x.dtd">' + good()[38:]

CASES = [
    ("not-xml", b"this is not xml", 400, "MalformedXml"),
    ("truncated", good()[:-20], 400, "MalformedXml"),
    ("wrong-root", b"<Envelope><DeviceType>UCPhone</DeviceType></Envelope>", 400, "MalformedXml"),
    ("empty", b"", 400, "EmptyRequest"),
    ("billion-laughs", BILLION_LAUGHS, 400, "ForbiddenXml"),
    ("external-entity", EXTERNAL_ENTITY, 400, "ForbiddenXml"),
    ("external-dtd", DOCTYPE_ONLY, 400, "ForbiddenXml"),
    ("missing-identity", good(MACAddress="", SerialNumber=""), 400, "MissingIdentity"),
    ("bad-mac-short", good(MACAddress="00-04-F2-AA-BB"), 400, "BadMacAddress"),
    ("bad-mac-hex", good(MACAddress="00-04-F2-AA-BB-ZZ"), 400, "BadMacAddress"),
    ("bad-serial", good(MACAddress="", SerialNumber="CX600/../0042"), 400, "BadSerialNumber"),
    ("unknown-locale", good(Locale="XYZ"), 400, "UnknownLocale"),
    ("missing-locale", good(Locale=""), 400, "UnknownLocale"),
    ("missing-model", good(Model=""), 400, "MissingField"),
    ("bad-version", good(version="4.0;DROP"), 400, "BadModule"),
    ("too-large-declared", b"<Request>" + b" " * (64 * 1024) + b"</Request>", 413, "TooLarge"),
]


def post(url: str, path: str, body: bytes, headers: dict[str, str] | None = None):
    import http.client
    from urllib.parse import urlsplit

    conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "text/xml", **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def code_of(body: bytes) -> str:
    root = ET.fromstring(body)
    assert root.tag == "Error" and [c.tag for c in root] == ["Code", "Message"]
    assert root.findtext("Message")
    return root.findtext("Code")


@pytest.fixture
def server(install, live_server, tmp_path):
    release = import_release(install, tmp_path, V1)[CX600]
    install.cli("rules", "approve", release.rule_id)
    install.cli("users", "add", "phones", "--password-stdin", input="s3cret-pass\n")
    return live_server(workers=2, **server_env(DEVUPDATE_TRUSTED_PROXIES="127.0.0.1/32"))


def test_malformed_checks(install, server):
    for name, body, status, code in CASES:
        got_status, headers, got_body = post(server.url, CHECK, body)
        assert (name, got_status, code_of(got_body)) == (name, status, code)
        assert headers["Content-Type"] == "text/xml; charset=utf-8"
        assert headers["Cache-Control"] == "no-store"
    rows = audit_rows(install)
    assert [row["Result"] for row in rows] == [f"{status} {code}" for _, _, status, code in CASES]
    assert all(row["User Host Address"] == "127.0.0.1" for row in rows)
    # what could be read of a refused request is logged with it
    bad_mac = rows[[c[0] for c in CASES].index("bad-mac-hex")]
    assert (bad_mac["Mac Address"], bad_mac["Model"], bad_mac["Locale"]) == ("00-04-F2-AA-BB-ZZ", "CX600", "ENU")
    assert "root:" not in server.output()


def test_an_error_quoting_characters_xml_cannot_hold_is_still_xml(install, server):
    """The GET form carries any character; U+FFFE and U+FFFF in a module name are quoted by the
    refusal's message, which must still parse (found by tests/fuzz)."""
    import http.client
    from urllib.parse import urlsplit

    fields = "DeviceType=UCPhone&MACAddress=0004F2AABBCC&Vendor=Polycom&Model=CX600&Locale=ENU"
    conn = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=30)
    for module in ("CPE%EF%BF%BE.nbt;x", "CPE%EF%BF%BF.nbt;%EF%BF%BE"):
        conn.request("GET", f"{CHECK}?{fields}&Module={module}")
        response = conn.getresponse()
        body = response.read()
        assert (response.status, code_of(body)) == (400, "BadModule")
        assert "module CPE\ufffd.nbt: " in ET.fromstring(body).findtext("Message")
    conn.close()


def test_ten_megabytes_refused_before_reading_it(install, server):
    """A 10 MB body is answered 413 after the headers and a first slice, without waiting for the rest."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /RequestHandler/ucdevice.upx HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                     b"Content-Length: 10485760\r\n\r\n" + b"<Request>" + b"A" * 65536)
        started = time.monotonic()
        answer = b""
        while b"</Error>" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        assert time.monotonic() - started < 5
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert code_of(body) == "TooLarge"

    # chunked, no length: read up to the limit, then refused
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /RequestHandler/ucdevice.upx HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"A" * 32768
        answer = b""
        try:
            for _ in range(320):  # 10 MB
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(10)
        try:
            while b"</Error>" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert code_of(answer.partition(b"\r\n\r\n")[2]) == "TooLarge"
    # a body shorter than announced (the client stops sending): 400, not a 500
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /RequestHandler/ucdevice.upx HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
                     + good()[:100])
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert code_of(answer.partition(b"\r\n\r\n")[2]) == "IncompleteBody"
    assert [row["Result"] for row in audit_rows(install)] == ["413 TooLarge", "413 TooLarge", "400 IncompleteBody"]


def test_external_credentials(install, server):
    body = fleet(1)[0].request_xml()

    def auth(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    cases = [({}, 401, "AuthenticationRequired"),
             ({"Authorization": "Bearer abc"}, 401, "AuthenticationRequired"),
             ({"Authorization": "Basic !!!notbase64"}, 401, "AuthenticationRequired"),
             (auth("phones", "wrong-password"), 401, "BadCredentials"),
             (auth("nobody", "s3cret-pass"), 401, "BadCredentials")]
    for headers, status, code in cases:
        got_status, got_headers, got_body = post(server.url, EXT, body, headers)
        assert (got_status, code_of(got_body)) == (status, code)
        assert got_headers["WWW-Authenticate"] == 'Basic realm="devupdate"'
    got_status, _, got_body = post(server.url, EXT, body, auth("phones", "s3cret-pass"))
    assert got_status == 200 and b"https://ucupdates.contoso.com/DeviceUpdateFiles_Ext/" in got_body
    rows = audit_rows(install)
    assert [row["Result"] for row in rows] == [f"{s} {c}" for _, s, c in cases] + ["200 OK"]
    assert rows[3]["User ID"] == "phones" and rows[4]["User ID"] == "nobody"
    # the GET form is guarded the same way
    cl = client(server)
    assert cl.check(fleet(1)[0], path=EXT, get=True).status == 401


def test_internal_path_from_outside(install, server):
    """Behind a trusted proxy, X-Forwarded-For decides: an outside address gets 403 on the internal path."""
    body = fleet(1)[0].request_xml()
    status, _, got = post(server.url, CHECK, body, {"X-Forwarded-For": "203.0.113.9"})
    assert (status, code_of(got)) == (403, "NotInternal")
    status, _, got = post(server.url, CHECK, body, {"X-Forwarded-For": "203.0.113.9, 10.20.30.40"})
    assert status == 200  # the hop the trusted proxy saw is internal
    status, _, got = post(server.url, CHECK, body, {"X-Forwarded-For": "10.1.2.3"})
    assert status == 200
    rows = audit_rows(install)
    assert [(r["User Host Address"], r["Result"]) for r in rows] == [
        ("203.0.113.9", "403 NotInternal"), ("10.20.30.40", "200 OK"), ("10.1.2.3", "200 OK")]
    # GET form too
    import http.client

    conn = http.client.HTTPConnection(server.url.split("//")[1], timeout=10)
    conn.request("GET", CHECK + "?" + fleet(1)[0].query(), headers={"X-Forwarded-For": "198.51.100.1"})
    response = conn.getresponse()
    assert (response.status, code_of(response.read())) == (403, "NotInternal")


def test_forwarded_for_ignored_without_trusted_proxy(install, live_server, tmp_path):
    server = live_server(workers=1, **server_env())
    status, _, _ = post(server.url, CHECK, fleet(1)[0].request_xml(), {"X-Forwarded-For": "203.0.113.9"})
    assert status == 200
    assert audit_rows(install)[0]["User Host Address"] == "127.0.0.1"


def test_encodings_and_tolerance(install, server):
    """UTF-16 with BOM, odd element case and unknown elements are accepted (spec §3)."""
    text = good().decode().replace('encoding="utf-8"', 'encoding="utf-16"')
    status, _, got = post(server.url, CHECK, b"\xff\xfe" + text.encode("utf-16-le"))
    assert status == 200, got
    odd = (b"<request><DEVICETYPE>UCPhone</DEVICETYPE><macaddress>00:04:f2:aa:bb:cc</macaddress>"
           b"<vendor>polycom</vendor><MODEL>cx600</MODEL><revision>a</revision><locale>enu</locale>"
           b"<Firmware>x</Firmware><modules><module><filename>CPE.nbt</filename><version>4.0.7577.4363</version>"
           b"</module></modules></request>")
    status, _, got = post(server.url, CHECK, odd)
    assert status == 200 and b"<NumOfFiles>2</NumOfFiles>" in got
    # GET with no parameters at all
    cl = client(server)
    status, _, got = cl.request("GET", server.url + CHECK)
    assert (status, code_of(got)) == (400, "MissingIdentity")
    status, _, got = cl.request("GET", server.url + CHECK + "?MACAddress=0004F2AABBCC&DeviceType=UCPhone"
                                "&Vendor=Polycom&Model=CX600&Locale=ENU&Module=CPE.nbt;bad")
    assert (status, code_of(got)) == (400, "BadModule")


# Arabic-Indic, fullwidth and Devanagari digits: int(), float() and \d take them all as 0–9
UNICODE_VERSIONS = ["\u0664.0.7577.4363", "4.0.\uff17\uff15\uff17\uff17.4363", "4.0.7577.\u096a\u0969\u096c\u0969"]


def test_versions_take_ascii_digits_only(install, server):
    """The importer refuses a version like ٤.0.0.0; the check must too (it was answered 200 with files)."""
    for version in UNICODE_VERSIONS:
        status, _, got = post(server.url, CHECK, good(version=version))
        assert (version, status, code_of(got)) == (version, 400, "BadModule")
        conn_status, _, got = client(server).request(
            "GET", server.url + CHECK + "?DeviceType=UCPhone&MACAddress=0004F2AABBCC&Vendor=Polycom&Model=CX600"
            "&Revision=A&Locale=ENU&Module=" + quote(f"CPE.nbt;{version}"))
        assert (version, conn_status, code_of(got)) == (version, 400, "BadModule")
    status, _, got = post(server.url, CHECK, good(version="4.0.7577.4363"))
    assert status == 200 and b"<NumOfFiles>2</NumOfFiles>" in got
    assert [row["Result"] for row in audit_rows(install)] == ["400 BadModule"] * 6 + ["200 OK"]
