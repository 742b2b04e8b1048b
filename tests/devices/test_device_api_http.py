"""The device API (pull model) against a real ``devupdate serve``: every field of the check's answer
and of a status report over HTTP, both sides with the access rules of ``ucdevice.upx``, hostile JSON
(depth, size, types, NUL, surrogates, duplicate keys) refused with a reason and never a 500, status
reports idempotent, and every answer valid against the API's own OpenAPI document."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json

import jsonschema
import pytest
from fleet import CX600, V0, V1, V2, audit_rows, client, fleet, import_release, server_env
from helpers.tools import wait_for

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("site")]

CHECK, STATUS = "/api/device/v1/check", "/api/device/v1/status"
EXT_CHECK, EXT_STATUS = "/api/device-ext/v1/check", "/api/device-ext/v1/status"
EXTERNAL_BASE = "https://ucupdates.contoso.com"
INTERNAL_BASE = "http://ucupdates-r2.contoso.com"


def auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def post(url: str, path: str, body: bytes, headers: dict[str, str] | None = None,
         content_type: str | None = "application/json") -> tuple[int, dict[str, str], bytes]:
    host = url.split("//", 1)[1]
    conn = http.client.HTTPConnection(host, timeout=30)
    sent = dict(headers or {})
    if content_type:
        sent["Content-Type"] = content_type
    conn.request("POST", path, body=body, headers=sent)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def document(body: dict) -> bytes:
    return json.dumps(body).encode()


def identity(**fields) -> dict:
    return {"type": "UCPhone", "brand": "Polycom", "model": "CX600", "revision": "A", "locale": "ENU",
            "mac": "00-04-F2-AA-BB-CC", "serial": "CX600-0042", **fields}


def check_body(version: str | None = V0, **fields) -> dict:
    return {"device": identity(**fields), "installed": [{"name": "CPE", "version": version}] if version else []}


@pytest.fixture
def server(install, live_server, tmp_path):
    releases = {"v1": import_release(install, tmp_path, V1)[CX600]}
    install.cli("rules", "approve", releases["v1"].rule_id)
    releases["v2"] = import_release(install, tmp_path, V2)[CX600]  # pending: test devices only
    install.cli("users", "add", "phones", "--password-stdin", input="s3cret-pass\n")
    server = live_server(workers=2, **server_env(DEVUPDATE_TRUSTED_PROXIES="127.0.0.1/32"))
    server.releases = releases
    return server


@pytest.fixture(scope="module")
def spec():
    from devupdate.devices.deviceapi_openapi import document as openapi

    return openapi()


def valid(spec: dict, name: str, value: dict) -> None:
    schema = {**spec["components"]["schemas"][name], "components": spec["components"]}
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())


def expected_package(release, base: str, side: str, installed: str | None) -> dict:
    prefix = "/".join((*release.family, release.version))
    files = [{"name": name, "url": f"{base}/DeviceUpdateFiles_{side}/{prefix}/{name}", "size": len(release.files[name]),
              "sha256": hashlib.sha256(release.files[name]).hexdigest(), "signature": signature,
              "timestamp": release.imported}
             for name, signature in ((release.image, release.catalog), (release.catalog, None))]
    return {"name": "CPE", "rule": release.rule_id, "version": release.version, "optional": False,
            "installed": installed, "current": installed == release.version, "files": files}


def test_check_answers_every_field_on_both_sides(install, server, spec):
    v1, v2 = server.releases["v1"], server.releases["v2"]
    status, headers, body = post(server.url, CHECK, document(check_body()))
    assert status == 200, body
    assert headers["Content-Type"] == "application/json" and headers["Cache-Control"] == "no-store"
    answer = json.loads(body)
    valid(spec, "CheckAnswer", answer)
    assert answer == {"packages": [expected_package(v1, INTERNAL_BASE, "Int", V0)],
                      "reports": [{"type": "status", "package": "CPE", "version": V1}],
                      "next_check_seconds": 86400}
    # the files advertised are the files served
    cl = client(server)
    for item in answer["packages"][0]["files"]:
        assert hashlib.sha256(cl.request("GET", item["url"])[2]).hexdigest() == item["sha256"]
    # current: the full list still, nothing asked
    answer = json.loads(post(server.url, CHECK, document(check_body(V1)))[2])
    assert answer == {"packages": [expected_package(v1, INTERNAL_BASE, "Int", V1)], "reports": [],
                      "next_check_seconds": 86400}
    # a Lync module name identifies the package too; no installed list at all is fine
    answer = json.loads(post(server.url, CHECK, document({"device": identity(), "installed": [
        {"name": "CPE.nbt", "version": V1}]}))[2])
    assert answer["packages"][0]["current"] is True
    answer = json.loads(post(server.url, CHECK, document({"device": identity()}))[2])
    assert answer["packages"][0]["installed"] is None and answer["reports"][0]["version"] == V1
    # an unknown family: nothing
    assert json.loads(post(server.url, CHECK, document(check_body(model="VVX400")))[2]) == {
        "packages": [], "reports": [], "next_check_seconds": 86400}
    # a test device gets the pending version (same selection as ucdevice.upx)
    install.cli("test-devices", "add", "lab", "--mac", "00-04-F2-AA-BB-CC")
    def pending_offered() -> dict | None:  # both workers: each reloads its own snapshot
        answers = [json.loads(post(server.url, CHECK, document(check_body()))[2]) for _ in range(4)]
        return answers[-1] if all(a["packages"][0]["version"] == V2 for a in answers) else None

    answer = wait_for(pending_offered)
    assert answer and answer["packages"] == [expected_package(v2, INTERNAL_BASE, "Int", V0)]
    # the external side: credentials, and _Ext URLs on the public external name
    status, headers, body = post(server.url, EXT_CHECK, document(check_body(mac="00-04-F2-00-00-01")))
    assert (status, json.loads(body)["error"]["code"]) == (401, "AuthenticationRequired")
    assert headers["WWW-Authenticate"] == 'Basic realm="devupdate"'
    status, _, body = post(server.url, EXT_CHECK, document(check_body(mac="00-04-F2-00-00-01")),
                           auth("phones", "wrong-password"))
    assert (status, json.loads(body)["error"]["code"]) == (401, "BadCredentials")
    status, _, body = post(server.url, EXT_CHECK, document(check_body(mac="00-04-F2-00-00-01")),
                           auth("phones", "s3cret-pass"))
    assert status == 200
    assert json.loads(body)["packages"] == [expected_package(v1, EXTERNAL_BASE, "Ext", V0)]
    # the internal side from outside (behind the trusted proxy)
    status, _, body = post(server.url, CHECK, document(check_body()), {"X-Forwarded-For": "203.0.113.9"})
    assert (status, json.loads(body)["error"]["code"]) == (403, "NotInternal")
    status, _, body = post(server.url, STATUS, document({"device": identity(), "package": "CPE", "version": V1,
                                                         "state": "installed"}), {"X-Forwarded-For": "203.0.113.9"})
    assert (status, json.loads(body)["error"]["code"]) == (403, "NotInternal")
    # every check has its audit row, the device its inventory entry
    rows = audit_rows(install)
    assert [row["Result"] for row in rows[-4:]] == ["401 AuthenticationRequired", "401 BadCredentials", "200 OK",
                                                    "403 NotInternal"]
    assert (rows[-2]["Mac Address"], rows[-2]["User ID"], rows[-2]["Response Modules"].count(";")) == (
        "0004F2000001", "phones", 6)
    assert wait_for(lambda: devices(install) == {"0004F2AABBCC": "internal", "0004F2000001": "external"})
    # the document itself is served on both prefixes
    conn = http.client.HTTPConnection(server.url.split("//")[1])
    for prefix in ("/api/device/v1", "/api/device-ext/v1"):
        conn.request("GET", f"{prefix}/openapi.json")
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read()) == spec


HOSTILE = [
    ("not-json", b"{not json", 400, "BadJson"),
    ("not-utf8", b'{"device": "\xff\xfe"}', 400, "BadEncoding"),
    ("array", b"[]", 400, "BadJson"),
    ("empty", b"", 400, "EmptyRequest"),
    ("nan", b'{"device": {"type": NaN}}', 400, "BadJson"),
    ("duplicate-key", b'{"device": {"mac": "00-04-F2-AA-BB-CC", "mac": "00-04-F2-AA-BB-CD"}}', 400, "DuplicateKey"),
    ("deep", b'{"device": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "TooDeep"),
    ("deep-in-device", document({"device": {**identity(), "type": {"a": {"b": 1}}}}), 400, "TooDeep"),
    ("deep-unbalanced", b"[" * 64000, 400, "TooDeep"),
    ("too-large", document({"device": identity(), "pad": "x" * 70000}), 413, "TooLarge"),
    ("device-string", document({"device": "UCPhone"}), 400, "BadType"),
    ("device-missing", document({"installed": []}), 400, "BadType"),
    ("type-number", document({"device": identity(type=7)}), 400, "BadType"),
    ("mac-list", document({"device": identity(mac=["00"])}), 400, "BadType"),
    ("mac-bool", document({"device": identity(mac=True)}), 400, "BadType"),
    ("installed-object", document({"device": identity(), "installed": {"name": "CPE"}}), 400, "BadType"),
    ("installed-strings", document({"device": identity(), "installed": ["CPE"]}), 400, "BadType"),
    ("version-number", document({"device": identity(), "installed": [{"name": "CPE", "version": 4.0}]}), 400,
     "BadType"),
    ("nul-in-model", document({"device": identity(model="CX600\u0000")}), 400, "BadField"),
    ("nul-in-user", document({"device": identity(user="alice\u0000@contoso.com")}), 400, "BadField"),
    ("nul-in-name", document({"device": identity(), "installed": [{"name": "CPE\u0000", "version": V0}]}), 400,
     "BadField"),
    ("surrogate", b'{"device": {"type": "UCPhone\\ud800", "brand": "Polycom"}}', 400, "BadField"),
    ("long-field", document({"device": identity(model="M" * 300)}), 400, "BadField"),
    ("missing-identity", document({"device": identity(mac="", serial=None)}), 400, "MissingIdentity"),
    ("bad-mac", document({"device": identity(mac="00-04-F2-AA-BB")}), 400, "BadMacAddress"),
    ("bad-locale", document({"device": identity(locale="XYZ")}), 400, "UnknownLocale"),
    ("bad-version", document(check_body("4.0;DROP")), 400, "BadModule"),
    ("too-many", document({"device": identity(), "installed": [{"name": f"M{i}", "version": "1"}
                                                               for i in range(65)]}), 400, "TooManyModules"),
    ("huge-integer", b'{"device": {"type": ' + b"9" * 5000 + b"}}", 400, "BadJson"),
]

HOSTILE_STATUS = [
    ("bad-state", {"state": "bricked"}, 400, "BadState"),
    ("state-number", {"state": 3}, 400, "BadState"),
    ("no-package", {"package": None}, 400, "MissingField"),
    ("package-object", {"package": {"x": 1}}, 400, "BadType"),
    ("package-number", {"package": 5}, 400, "BadType"),
    ("no-version", {"version": ""}, 400, "MissingField"),
    ("bad-version", {"version": "1.x"}, 400, "BadModule"),
    ("code-bool", {"code": True}, 400, "BadType"),
    ("code-float", {"code": 1.5}, 400, "BadType"),
    ("code-huge", {"code": 2**70}, 400, "BadField"),
    ("nul-message", {"message": "flash\u0000failed"}, 400, "BadField"),
    ("long-message", {"message": "m" * 1025}, 400, "BadField"),
    ("unknown-package", {"package": "UCM"}, 404, "UnknownPackage"),
]


def test_hostile_json_is_refused_with_a_reason(install, server):
    for name, body, status, code in HOSTILE:
        got_status, headers, got = post(server.url, CHECK, body)
        assert (name, got_status, json.loads(got)["error"]["code"]) == (name, status, code), got
        assert headers["Content-Type"] == "application/json"
    base = {"device": identity(), "package": "CPE", "version": V1, "state": "failed", "code": 12, "message": "x"}
    for name, change, status, code in HOSTILE_STATUS:
        got_status, _, got = post(server.url, STATUS, document({**base, **change}))
        assert (name, got_status, json.loads(got)["error"]["code"]) == (name, status, code), got
    for name, body, status, code in HOSTILE[:8]:
        got_status, _, got = post(server.url, STATUS, body)
        assert (name, got_status, json.loads(got)["error"]["code"]) == (name, status, code), got
    # another media type; another method
    got_status, _, got = post(server.url, CHECK, document(check_body()), content_type="text/xml")
    assert (got_status, json.loads(got)["error"]["code"]) == (415, "UnsupportedMediaType")
    conn = http.client.HTTPConnection(server.url.split("//")[1])
    conn.request("GET", CHECK)
    response = conn.getresponse()
    assert (response.status, response.getheader("Allow"), json.loads(response.read())["error"]["code"]) == (
        405, "POST", "MethodNotAllowed")
    # every refused check has its audit row; nothing reached the inventory or the reports
    rows = audit_rows(install)
    assert len(rows) == len(HOSTILE) + 1
    assert all(row["Result"].startswith(("400 ", "413 ", "415 ")) for row in rows)
    assert "Traceback" not in server.output()
    assert install.cli("devices", "list", "--json").stdout.strip() == "[]"
    from devupdate import db
    from devupdate.devices.reports import DeviceReport

    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    try:
        assert DeviceReport.select().count() == 0
    finally:
        db.database.close()


def devices(install) -> dict[str, str]:
    from devupdate import db
    from devupdate.devices.inventory import Device

    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    try:
        return {d.device_id: d.network for d in Device.select()}
    finally:
        db.database.close()


def reports(install) -> list[tuple]:
    from devupdate import db
    from devupdate.devices.reports import DeviceReport

    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    try:
        return [(r.device_id, r.rule_id, r.package, r.version, r.state, r.code, r.message)
                for r in DeviceReport.select().order_by(DeviceReport.device_id, DeviceReport.version)]
    finally:
        db.database.close()


def test_status_reports_are_idempotent_and_ordered(install, server, spec):
    v1 = server.releases["v1"]
    phones = fleet(3)
    cl = client(server)
    ext = client(server)
    ext.auth = "Basic " + base64.b64encode(b"phones:s3cret-pass").decode()
    a, b, c = phones
    for state in ("downloading", "downloaded", "installed"):
        result = cl.report(a, "CPE", V1, state)
        assert (result.status, result.document) == (202, {"accepted": True, "package": "CPE", "version": V1,
                                                          "state": state})
        valid(spec, "StatusAnswer", result.document)
    # twice the same, then a late "downloading": still installed, one row
    assert cl.report(a, "CPE", V1, "installed").status == 202
    assert cl.report(a, "cpe", V1, "downloading").status == 202
    # a failure with code and message, on the external side, sent three times
    for _ in range(3):
        assert ext.report(b, "CPE", V1, "failed", code=-2147024784, message="flash write failed: disk full",
                          external=True).status == 202
    assert cl.report(c, "CPE", V1, "failed", code="E_SIG").status == 202
    assert cl.report(c, "CPE", V1, "installed").status == 202  # a retry that worked
    unauthenticated = cl.report(a, "CPE", V1, "failed", external=True)
    assert (unauthenticated.status, unauthenticated.document["error"]["code"]) == (401, "AuthenticationRequired")
    expected = sorted([
        (a.device_id, v1.rule_id, "CPE", V1, "installed", "", ""),
        (b.device_id, v1.rule_id, "CPE", V1, "failed", "-2147024784", "flash write failed: disk full"),
        (c.device_id, v1.rule_id, "CPE", V1, "installed", "", ""),
    ])
    assert wait_for(lambda: reports(install) == expected, timeout=15), reports(install)
    # resent after they were written: nothing changes
    assert cl.report(a, "CPE", V1, "downloaded").status == 202
    assert ext.report(b, "CPE", V1, "failed", code=-2147024784, message="flash write failed: disk full",
                      external=True).status == 202
    assert cl.check_json(a).status == 200 and ext.check_json(b, external=True).status == 200
    server.stop()  # the shutdown flush writes whatever is pending
    assert reports(install) == expected
    # the compliance view shows each device's latest report beside what it runs
    listed = {d["DeviceId"]: d for d in json.loads(install.cli("devices", "list", "--json").stdout)}
    assert listed[b.device_id]["Updates"][0]["LastReport"] == {
        "Version": V1, "State": "failed", "Code": "-2147024784", "Message": "flash write failed: disk full",
        "Time": listed[b.device_id]["Updates"][0]["LastReport"]["Time"]}
    assert listed[a.device_id]["Updates"][0]["LastReport"]["State"] == "installed"


def test_the_external_side_takes_ntlm_like_ucdevice_upx(install, server):
    """The device API's external side is under the same access decision as ucdevice.upx: the same
    challenges, and the real three-leg NTLM handshake on one kept-alive connection gets the check."""
    spnego = pytest.importorskip("spnego")
    install.cli("users", "add", "ntlm-phone", "--password-stdin", input="correct horse\n")
    conn = http.client.HTTPConnection(server.url.split("//", 1)[1], timeout=30)
    body = document(check_body(mac="00-04-F2-00-00-02"))

    def send(authorization: str | None) -> http.client.HTTPResponse:
        headers = {"Content-Type": "application/json", **({"Authorization": authorization} if authorization else {})}
        conn.request("POST", EXT_CHECK, body=body, headers=headers)
        return conn.getresponse()

    bare = send(None)
    assert (bare.status, json.loads(bare.read())["error"]["code"]) == (401, "AuthenticationRequired")
    assert bare.headers.get_all("WWW-Authenticate") == ["Negotiate", "NTLM", 'Basic realm="devupdate"']
    client = spnego.client("ntlm-phone", "correct horse", hostname="ucupdates.contoso.com", service="HTTP",
                           protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)
    first = send("NTLM " + base64.b64encode(client.step()).decode())
    assert first.status == 401
    first.read()
    token = next(v for v in first.headers.get_all("WWW-Authenticate") if v.startswith("NTLM "))
    last = send("NTLM " + base64.b64encode(client.step(base64.b64decode(token.split(" ", 1)[1]))).decode())
    answer = json.loads(last.read())
    assert last.status == 200, answer
    assert answer["packages"] == [expected_package(server.releases["v1"], EXTERNAL_BASE, "Ext", V0)]
    conn.close()
    assert audit_rows(install)[-1]["User ID"] == "ntlm-phone"


def inventory(install) -> dict[str, tuple[dict[str, str], int]]:
    from devupdate import db
    from devupdate.devices.inventory import Device

    db.open_database(install.settings().effective_database_url).connect(reuse_if_open=True)
    try:
        return {d.device_id: (json.loads(d.versions), d.checks) for d in Device.select()}
    finally:
        db.database.close()


def test_installed_reports_feed_the_inventory_and_the_compliance_view(install, server):
    """A device reporting ``installed`` makes the inventory show that version for the rule's module,
    under the name the device reports it by, as its next check would; a later check is the device's
    own word again. Reports after a written check, reports in the same batch as a check, and a report
    of a device that never checked."""
    a, b, c, d = fleet(4)  # CPE.nbt V0
    cl = client(server)
    b.modules = {"CPE": V0, "Other.bin": "1.0"}  # the device API's package name, and a module of no rule
    assert cl.check(a).status == 200 and cl.check_json(b).status == 200
    assert wait_for(lambda: set(inventory(install)) == {a.device_id, b.device_id}, timeout=15)
    assert cl.check(c).status == 200  # still pending in its worker when the report arrives
    for phone in (a, b, c, d):
        result = cl.report(phone, "CPE", V1, "installed")
        assert (result.status, result.document["state"]) == (202, "installed")
    assert cl.report(a, "CPE", V1, "downloading").status == 202  # other states change no version
    expected = {a.device_id: ({"CPE.nbt": V1}, 1), b.device_id: ({"CPE": V1, "Other.bin": "1.0"}, 1),
                c.device_id: ({"CPE.nbt": V1}, 1), d.device_id: ({"CPE": V1}, 0)}
    assert wait_for(lambda: inventory(install) == expected, timeout=15), inventory(install)
    listed = {x["DeviceId"]: x for x in json.loads(install.cli("devices", "list", "--json").stdout)}
    assert {i: (x["Status"], x["Updates"][0]["InstalledVersion"], x["Checks"]) for i, x in listed.items()} == {
        a.device_id: ("Current", V1, 1), b.device_id: ("Current", V1, 1), c.device_id: ("Current", V1, 1),
        d.device_id: ("Current", V1, 0)}
    # the next check says V0 again (it fell back): the inventory follows the device
    assert cl.check(a).status == 200
    expected[a.device_id] = ({"CPE.nbt": V0}, 2)
    assert wait_for(lambda: inventory(install) == expected, timeout=15), inventory(install)
    # a report for a package of no rule of the family changes nothing
    assert cl.report(a, "Other", "1.0", "installed").status == 404
    server.stop()
    assert inventory(install) == expected
