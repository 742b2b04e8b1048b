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

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture
def api(install, live_server) -> Api:
    install.cli("db", "upgrade")
    token = install.cli("tokens", "create", "ci-admin", "--role", "admin").stdout.strip().splitlines()[-1]
    return Api(live_server(workers=1).url, token)


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
