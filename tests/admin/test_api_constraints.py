"""The OpenAPI document states every constraint the API enforces — length, pattern, range,
nullability, media type — and the API refuses what the document refuses with a JSON 400 that
says why (the cases schemathesis found: NUL in a query value, a MAC over 300 characters,
``Value: null`` for a list setting, a body that is not a cab)."""

from __future__ import annotations

import re

import pytest
from apikit import cab_for, make_api

from devupdate.admin.openapi import document


@pytest.fixture
def api_app(install):
    return make_api(install)


def _strings(schema, components, seen=()):
    """Every string schema reachable from ``schema`` (refs followed)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            yield from _strings(components[name], components, (*seen, name))
        return
    kinds = schema.get("type")
    if kinds == "string" or (isinstance(kinds, list) and "string" in kinds):
        yield schema
    for key in ("properties",):
        for sub in schema.get(key, {}).values():
            yield from _strings(sub, components, seen)
    for key in ("items",):
        if isinstance(schema.get(key), dict):
            yield from _strings(schema[key], components, seen)
    for key in ("oneOf", "anyOf", "allOf"):
        for sub in schema.get(key, []):
            yield from _strings(sub, components, seen)


def test_every_parameter_and_request_body_states_its_bounds():
    doc = document()
    components = doc["components"]["schemas"]
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            for param in operation.get("parameters", []):
                schema = param["schema"]
                if schema.get("type") == "string":
                    assert "maxLength" in schema and "pattern" in schema, (where, param["name"])
                    assert schema["pattern"].startswith("^") and schema["pattern"].endswith("$"), (where, param)
                elif schema.get("type") == "integer":
                    assert {"minimum", "maximum"} <= set(schema), (where, param["name"])
                else:
                    assert schema.get("type") == "boolean", (where, param["name"])
            body = operation.get("requestBody")
            if not body:
                continue
            for media_type, content in body["content"].items():
                if media_type == "application/json":
                    for string in _strings(content["schema"], components):
                        if "enum" not in string:
                            assert "maxLength" in string, (where, string)
                else:
                    assert media_type in ("application/vnd.ms-cab-compressed", "application/octet-stream"), where
                    assert content["schema"]["format"] == "binary" and "cabinet" in content["schema"]["description"]


def test_nul_in_a_query_value_is_outside_the_document_and_refused(api_app):
    doc = document()
    for path, name in (("/audit", "actor"), ("/audit", "target"), ("/devices", "model"), ("/logs", "type"),
                       ("/logs", "device")):
        (schema,) = [p["schema"] for p in doc["paths"]["/api/v1" + path]["get"]["parameters"] if p["name"] == name]
        assert re.fullmatch(schema["pattern"], "a\x00b") is None and re.fullmatch(schema["pattern"], "ab")
        response = api_app.get(f"{path}?{name}=a%00b")
        assert response.status_code == 400, (path, name)
        assert response.json["error"]["code"] in ("bad-parameter", "bad-text")
        assert name in response.json["error"]["message"]


def test_a_mac_over_300_characters_is_outside_the_document_and_refused(api_app):
    mac_schema = document()["components"]["schemas"]["TestDeviceNew"]["properties"]["MACAddress"]
    assert mac_schema["maxLength"] == 300
    long_mac = "00-04-f2-aa-bb-cc" + " " * 290
    response = api_app.call("POST", "/test-devices", json={"Name": "lab", "MACAddress": long_mac})
    assert response.status_code == 400
    assert response.json["error"] == {"code": "bad-mac",
                                      "message": "request body: MACAddress is longer than 300 characters"}
    # 51 pairs fit in 300 characters but not in the stored identifier: the pattern says 6 to 50 pairs
    too_many = api_app.call("POST", "/test-devices", json={"Name": "lab", "MACAddress": "ab" * 51})
    assert too_many.status_code == 400 and too_many.json["error"]["code"] == "bad-mac"
    assert "6 to 50 pairs" in too_many.json["error"]["message"]
    fifty = api_app.call("POST", "/test-devices", json={"Name": "lab", "MACAddress": "ab" * 50})
    assert fifty.status_code == 201 and fifty.json["Identifier"] == "AB" * 50


def test_null_is_a_value_only_where_the_document_says_so(api_app):
    schemas = document()["components"]["schemas"]
    nullable = {key[:-len("Value")] for key, schema in schemas.items()
                if key.endswith("Value") and key != "ConfigValue"
                and "null" in (schema["properties"]["Value"].get("type") or [])}
    assert nullable == {"LogCleanUpTimeOfDay"}
    refused = api_app.call("PUT", "/configuration/ValidLogFileExtensions", json={"Value": None})
    assert refused.status_code == 400
    assert refused.json["error"] == {"code": "bad-value", "message": "ValidLogFileExtensions: Value must be a list "
                                     "— 1–100 extensions: '.' and 1–10 letters or digits"}
    accepted = api_app.call("PUT", "/configuration/LogCleanUpTimeOfDay", json={"Value": None})
    assert accepted.status_code == 200 and accepted.json["After"] is None
    # the type each setting takes is its document's: a number of minutes, not a text to parse
    as_text = api_app.call("PUT", "/configuration/LogFlushInterval", json={"Value": "5"})
    assert as_text.status_code == 400 and as_text.json["error"]["message"] == (
        "LogFlushInterval: Value must be a whole number (digits 0-9) — 1–60 minutes")
    out_of_range = api_app.call("PUT", "/configuration/LogFlushInterval", json={"Value": 61})
    assert out_of_range.json["error"]["message"] == "LogFlushInterval: Value must be at most 60 — 1–60 minutes"
    assert api_app.call("PUT", "/configuration/LogFlushInterval", json={"Value": 60.0}).json["After"] == 60


def test_a_body_that_is_not_a_cab_is_refused_and_the_document_says_which_types_are_taken(api_app, tmp_path):
    content = document()["paths"]["/api/v1/imports"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/vnd.ms-cab-compressed", "application/octet-stream"}
    auth = api_app.auth()
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    refused = api_app.client.post("/api/v1/imports", data=png, headers={**auth, "Content-Type": "image/png"})
    assert refused.status_code == 415 and refused.json["error"]["code"] == "unsupported-media-type"
    not_a_cab = api_app.client.post("/api/v1/imports?filename=x.cab", data=png,
                                    headers={**auth, "Content-Type": "application/vnd.ms-cab-compressed"})
    assert not_a_cab.status_code == 400 and not_a_cab.json["error"]["code"] == "not-a-cabinet"
    cab = cab_for(tmp_path, "4.0.7577.4372").read_bytes()
    imported = api_app.client.post("/api/v1/imports", data=cab,
                                   headers={**auth, "Content-Type": "application/vnd.ms-cab-compressed"})
    assert imported.status_code == 201 and imported.json["Outcome"] == "imported"


def test_the_document_states_this_installations_bound_of_a_setting(install):
    """MaxLogFileSize may not exceed the smaller logs quota: the served document says so."""
    small = make_api(install, quota_logs_client=10 * 1024**2)
    served = small.get("/openapi.json").json["components"]["schemas"]["MaxLogFileSizeValue"]
    assert served["properties"]["Value"]["maximum"] == 10 * 1024**2
    assert document()["components"]["schemas"]["MaxLogFileSizeValue"]["properties"]["Value"]["maximum"] == 1024**3
    above = small.call("PUT", "/configuration/MaxLogFileSize", json={"Value": 10 * 1024**2 + 1})
    assert above.status_code == 400 and "DEVUPDATE_QUOTA_LOGS_CLIENT" in above.json["error"]["message"]
    assert small.call("PUT", "/configuration/MaxLogFileSize", json={"Value": 10 * 1024**2}).status_code == 200


def test_refusals_name_the_parameter_and_what_it_takes(api_app):
    cases = [
        ("/test-devices?site=Berlin%20Mitte", "bad-site",
         "query parameter 'site' 'Berlin Mitte' refused: letters, digits, '.', '_' or '-' (1–100)"),
        ("/test-devices?site=a&site=b", "bad-parameter", "query parameter 'site' given 2 times; give it once"),
        ("/devices?limit=%D9%A4", "bad-parameter", "query parameter 'limit' must be a whole number (digits 0-9)"),
        ("/devices?limit=501", "bad-parameter", "query parameter 'limit' must be at most 500"),
        ("/devices?outdated=1", "bad-parameter", "query parameter 'outdated' must be true or false"),
        ("/audit?target=" + "x" * 101, "bad-parameter", "query parameter 'target' is longer than 100 characters"),
        ("/rules/xyz", "bad-rule-ref", "path parameter 'rule' 'xyz' refused: a rule GUID or a unique prefix of "
         "one (4 or more characters): hex digits and '-', braces allowed"),
    ]
    for url, code, message in cases:
        response = api_app.get(url)
        assert response.status_code == 400, url
        assert response.json["error"] == {"code": code, "message": message}, url
    both = api_app.call("POST", "/test-devices", json={"Name": "lab", "MACAddress": "0004f2aabbcc",
                                                       "SerialNumber": "SN1"})
    assert both.json["error"] == {"code": "bad-identifier",
                                  "message": "request body: exactly one of MACAddress or SerialNumber"}
