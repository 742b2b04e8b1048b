"""Every JSON listing of a real ``devupdate serve`` pages alike: ``limit``, an opaque keyset cursor in
the ``Next`` link (and ``Link: rel=next``), ``Total`` where it is cheap. A page after the cursor is
stable while rows arrive before it; a cursor or limit the API did not make is a 400 with the reason."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest
from test_device_listing import row

from devupdate.devices.inventory import upsert

pytestmark = pytest.mark.timeout(120)
API = "/api/v1"


class Http:
    def __init__(self, url: str, token: str):
        self.url, self.token = url, token

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict, object]:
        """(status, headers, JSON body) of ``path`` (``/api/v1/…``, as a Next link gives it)."""
        data = None if body is None else json.dumps(body).encode()
        path = path if path.startswith(API) else API + path
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read())

    def get(self, path: str) -> dict:
        status, _, body = self.call("GET", path)
        assert status == 200, body
        assert isinstance(body, dict)
        return body


@pytest.fixture
def http(install, live_server) -> Http:
    install.cli("db", "upgrade")
    token = install.cli("tokens", "create", "ci-admin", "--role", "admin").stdout.strip().splitlines()[-1]
    return Http(live_server(workers=1).url, token)


def cursor(*parts: object) -> str:
    raw = json.dumps(list(parts), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def device(name: str, serial: str) -> dict:
    return {"Name": name, "Scope": "global", "IdentifierType": "SerialNumber", "Identifier": serial.upper()}


def test_test_devices_page_by_a_stable_cursor(http):
    for name in ("b", "d", "f", "h", "j"):
        assert http.call("POST", "/test-devices", {"Name": name, "SerialNumber": f"S{name}"})[0] == 201
    status, headers, first = http.call("GET", f"{API}/test-devices?limit=2")
    after_d = cursor("test-devices", "", "global", "d")
    assert (status, first) == (200, {"Items": [device("b", "Sb"), device("d", "Sd")], "Limit": 2, "Total": 5,
                                     "Next": f"{API}/test-devices?limit=2&cursor={after_d}"})
    assert headers["Link"] == f'<{API}/test-devices?limit=2&cursor={after_d}>; rel="next"'

    # rows arriving before the cursor do not shift the next page; one after it is in it
    for name in ("a", "c", "e"):
        http.call("POST", "/test-devices", {"Name": name, "SerialNumber": f"S{name}"})
    second = http.get(first["Next"])
    after_f = cursor("test-devices", "", "global", "f")
    assert second == {"Items": [device("e", "Se"), device("f", "Sf")], "Limit": 2, "Total": 8,
                      "Next": f"{API}/test-devices?limit=2&cursor={after_f}"}
    assert http.call("DELETE", "/test-devices/f")[0] == 200  # the cursor's own row may go
    last = http.get(second["Next"])
    assert last == {"Items": [device("h", "Sh"), device("j", "Sj")], "Limit": 2, "Total": 7, "Next": None}
    # filters travel in the Next link
    sited = http.get(f"{API}/test-devices?site=x&limit=1")
    assert sited == {"Items": [], "Limit": 1, "Total": 0, "Next": None}


def test_audit_pages_newest_first_without_repeats_while_events_arrive(http):
    for name in ("p0", "p1", "p2", "p3", "p4"):
        http.call("POST", "/test-devices", {"Name": name, "SerialNumber": name.upper()})
    first = http.get(f"{API}/audit?action=test-device.&limit=2")
    assert [e["Target"] for e in first["Items"]] == ["global/p4", "global/p3"]
    assert (first["Limit"], first["Total"]) == (2, 5)
    newest = first["Items"][-1]["Id"]
    assert first["Next"] == f"{API}/audit?action=test-device.&limit=2&cursor={cursor('audit', '', newest)}"
    http.call("POST", "/test-devices", {"Name": "p5", "SerialNumber": "P5"})  # a newer event: not on later pages
    second = http.get(first["Next"])
    assert [e["Target"] for e in second["Items"]] == ["global/p2", "global/p1"] and second["Total"] == 6
    third = http.get(second["Next"])
    assert ([e["Target"] for e in third["Items"]], third["Next"]) == (["global/p0"], None)


def test_devices_page_in_any_sort_order(install, http):
    install.runtime()
    upsert([row(f"0004F20000{i:02d}", mac=f"0004F20000{i:02d}", days_ago=i / 10, checks=i % 3) for i in range(7)])
    for sort in ("device", "-device", "checks", "-checks", "last-seen", "-last-seen", "user"):
        whole = [d["DeviceId"] for d in http.get(f"{API}/devices?sort={sort}&limit=500")["Items"]]
        page, seen = http.get(f"{API}/devices?sort={sort}&limit=3"), []
        assert page["Total"] == 7
        while True:
            seen += [d["DeviceId"] for d in page["Items"]]
            if page["Next"] is None:
                break
            page = http.get(page["Next"])
        assert seen == whole and len(whole) == 7, sort
    # the status filter needs every row's versions: no Total then
    assert http.get(f"{API}/devices?status=unmanaged&limit=2")["Total"] is None


LIMITS = [
    ("limit=0", "bad-parameter", "query parameter 'limit' must be at least 1"),
    ("limit=501", "bad-parameter", "query parameter 'limit' must be at most 500"),
    ("limit=-1", "bad-parameter", "query parameter 'limit' must be at least 1"),
    ("limit=ten", "bad-parameter", "query parameter 'limit' must be a whole number (digits 0-9)"),
    ("cursor=", "bad-parameter", "query parameter 'cursor' '' refused: the opaque position from the previous page's "
                                 "Next link"),
    ("cursor=" + "A" * 2401, "bad-parameter", "query parameter 'cursor' is longer than 2400 characters"),
    ("cursor=%2B%2F", "bad-parameter", "query parameter 'cursor' '+/' refused: the opaque position from the "
                                       "previous page's Next link"),
]
HINT = "; start again without a cursor, or use the Next link of the previous page as it is"
CURSORS = [
    ("/rules", "A", "is not one this API made (not base64url)"),
    ("/rules", base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("="), "is not one this API made (damaged)"),
    ("/rules", cursor(), "is not one this API made (damaged)"),
    ("/rules", base64.urlsafe_b64encode(b'{"a":1}').decode().rstrip("="), "is not one this API made (damaged)"),
    ("/rules", base64.urlsafe_b64encode(b"[" * 1500).decode(), "is not one this API made (damaged)"),
    ("/test-devices", cursor("audit", "", 5), "belongs to another listing ('audit'), not 'test-devices'"),
    ("/audit", cursor("audit", "", "5"), "holds a position that is not a whole number"),
    ("/audit", cursor("audit", "", True), "holds a position that is not a whole number"),
    ("/audit", cursor("audit", "", 2**70), "holds a position that is not a whole number"),
    ("/audit", cursor("audit", "", 1, 2), "is not one this API made (wrong length)"),
    ("/tokens", cursor("tokens", "", "x\u0000"), "holds a NUL or an unencodable character"),
    ("/tokens", cursor("tokens", "", "x" * 301), "holds a position that is not a short text"),
    ("/devices?sort=-checks", cursor("devices", "checks", 1, "A"), "was made for sort='checks', not sort='-checks'"),
    ("/devices?sort=last-seen", cursor("devices", "last-seen", "yesterday", "A"),
     "holds a position that is not a time"),
    ("/devices?sort=checks", cursor("devices", "checks", [1], "A"), "holds a position that is not a whole number"),
]


def test_hostile_limits_and_cursors_are_refused_with_the_reason(http):
    for query, code, message in LIMITS:
        status, _, body = http.call("GET", f"{API}/rules?{query}")
        assert (status, body) == (400, {"error": {"code": code, "message": message}}), query[:40]
    for path, value, reason in CURSORS:
        status, _, body = http.call("GET", f"{API}{path}{'&' if '?' in path else '?'}cursor={value}")
        assert (status, body) == (400, {"error": {"code": "bad-cursor",
                                                  "message": f"query parameter 'cursor' {reason}{HINT}"}}), path
