"""Numbers and setting values sent to the JSON API of a real ``devupdate serve``: only ASCII digits
are numbers, and every setting keeps its documented range — refused with 400 and the reason."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.timeout(120)


class Api:
    def __init__(self, url: str, token: str):
        self.url, self.token = url + "/api/v1", token

    def call(self, method: str, path: str, body: object = None, raw: bytes | None = None) -> tuple[int, dict]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


def start(install, live_server, **env: str) -> Api:
    install.cli("db", "upgrade")
    token = install.cli("tokens", "create", "ci-admin", "--role", "admin").stdout.strip().splitlines()[-1]
    return Api(live_server(workers=1, **env).url, token)


@pytest.fixture
def api(install, live_server) -> Api:
    return start(install, live_server)


def test_query_numbers_are_ascii_digits(api):
    assert api.call("GET", "/audit?limit=5")[0] == 200
    for limit in ("\u0665", "\uff15", "5\u0660", " 5", "+5", "1_0"):
        status, body = api.call("GET", "/audit?limit=" + urllib.request.quote(limit))
        assert (limit, status, body["error"]["code"]) == (limit, 400, "bad-parameter")
        assert "whole number (digits 0-9)" in body["error"]["message"]


def test_setting_values_are_ascii_digits(api):
    for key, value in (("MaxLogFileSize", "\uff12\uff10\uff14\uff18"), ("LogFlushInterval", "\u0665min"),
                       ("LogCleanUpTimeOfDay", "\u0663:30")):
        status, body = api.call("PUT", f"/configuration/{key}", {"Value": value})
        assert (key, status, body["error"]["code"]) == (key, 400, "bad-value")
    status, body = api.call("GET", "/configuration")
    assert (body["MaxLogFileSize"], body["LogFlushInterval"], body["LogCleanUpTimeOfDay"]) == (1024000, 5, None)


def test_rule_references_need_four_characters(api):
    status, document = api.call("GET", "/openapi.json")
    [rule] = [p for p in document["paths"]["/api/v1/rules/{rule}"]["get"]["parameters"] if p["name"] == "rule"]
    assert rule["schema"]["pattern"] == r"^\{?[0-9A-Fa-f-]{4,36}\}?$"
    status, body = api.call("GET", "/rules/abc")
    assert (status, body["error"]["code"]) == (400, "bad-rule-ref")
    assert "'abc' refused: a rule GUID or a unique prefix of one (4 or more characters)" in body["error"]["message"]
    assert api.call("GET", "/rules/abcd")[0] == 404


def test_setting_ranges_over_http(install, live_server):
    """MaxLogFileSize 99999999999999999999999999999 was accepted; every form of a value out of its
    range is now 400 with the range, and nothing is stored."""
    api = start(install, live_server, DEVUPDATE_QUOTA_LOGS_CLIENT="10MiB")
    huge = "99999999999999999999999999999"
    for raw in (f'{{"Value": {huge}}}', '{"Value": 1073741825}', '{"Value": -1}', '{"Value": 1023}'):
        status, body = api.call("PUT", "/configuration/MaxLogFileSize", raw=raw.encode())
        assert (raw, status, body["error"]["code"]) == (raw, 400, "bad-value")
        assert body["error"]["message"].startswith("MaxLogFileSize: Value must be at "), body
        assert body["error"]["message"].endswith(" — 1 KiB–1 GiB"), body
    for raw in (f'{{"Value": "{huge}"}}', '{"Value": "2GiB"}', '{"Value": true}'):  # the API takes the integer
        status, body = api.call("PUT", "/configuration/MaxLogFileSize", raw=raw.encode())
        assert (raw, status) == (raw, 400) and body["error"]["code"] in ("bad-value", "bad-body")
    for raw in ('{"Value": 1e400}', '{"Value": NaN}', '{"Value": -Infinity}'):  # not JSON numbers at all
        status, body = api.call("PUT", "/configuration/MaxLogFileSize", raw=raw.encode())
        assert (raw, status) == (raw, 400) and body["error"]["code"] in ("malformed-json", "bad-value")
    status, body = api.call("PUT", "/configuration/MaxLogFileSize", {"Value": 20 * 1024**2})
    assert (status, body["error"]["message"]) == (400, "MaxLogFileSize='20971520' refused: above the logs/client "
                                                       "quota of this installation (10 MiB); choose at most 10485760 "
                                                       "or raise DEVUPDATE_QUOTA_LOGS_CLIENT")
    status, body = api.call("PUT", "/configuration/LogFlushInterval", {"Value": 10**30})
    assert (status, body["error"]["message"]) == (400, "LogFlushInterval: Value must be at most 60 — 1–60 minutes")
    assert api.call("GET", "/configuration")[1]["MaxLogFileSize"] == 1024000  # nothing stored
    status, body = api.call("PUT", "/configuration/MaxLogFileSize", {"Value": 5 * 1024**2})
    assert (status, body["After"]) == (200, 5 * 1024**2)
