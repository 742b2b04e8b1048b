"""schemathesis against ``/api/v1/openapi.json``: requests generated from the document to every
operation — valid ones (positive) and ones the document refuses (negative) — with every check on:
no server error; status, content type, headers and body as documented; every valid request
accepted (``positive_data_acceptance``: no 400 for what the document allows) and every invalid one
refused with a 4xx (``negative_data_rejection``). Bounded for the suite: 30 examples per
operation, derandomized (the same requests every run, under a minute). ``DEVUPDATE_SCHEMATHESIS_EXAMPLES=500``
runs longer and draws new requests each time.

The in-process app is the fastest way to send thousands of requests; the longest valid requests
are also sent to the real ``devupdate serve`` over HTTP (``test_longest_valid_requests_pass_…``)."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import schemathesis
from apikit import API, cab_for, make_api
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from devupdate.admin.openapi import document
from devupdate.admin.schemas import CAB_MEDIA_TYPES, NO_NUL
from devupdate.admin.views_test_devices import TEST_DEVICE
from devupdate.audit.trail import TEXT_PATTERN

EXAMPLES = int(os.environ.get("DEVUPDATE_SCHEMATHESIS_EXAMPLES", "30"))
EXPLORE = "DEVUPDATE_SCHEMATHESIS_EXAMPLES" in os.environ
MODELS = ((("Polycom", "CX600"),), (("HP", "4110"),), (("Polycom", "CX600"), ("HP", "4110")), (("Yealink", "T58"),))


@functools.cache
def _cab(index: int) -> bytes:
    """A vendor-like cab (signed catalogs): versions and models vary with ``index``."""
    with tempfile.TemporaryDirectory() as directory:
        return cab_for(Path(directory), f"4.0.7577.{4370 + index // len(MODELS)}", models=MODELS[index % len(MODELS)],
                       size=2_000).read_bytes()


# The document says the body is a cabinet; JSON Schema cannot say what one is, so schemathesis draws
# real ones for the cab media types (and mutates the request around them for negative cases).
schemathesis.openapi.media_type(CAB_MEDIA_TYPES[0], st.integers(0, 11).map(_cab),
                                aliases=CAB_MEDIA_TYPES[1:])


@pytest.fixture
def api_schema(install, tmp_path):
    # logs quotas below MaxLogFileSize's own bound: the served document states this installation's
    api_app = make_api(install, quota_logs_client=10 * 1024**2, quota_logs_audit=20 * 1024**2)
    api_app.upload(cab_for(tmp_path, "4.0.7577.4372", models=(("Polycom", "CX600"), ("HP", "4110"))))
    api_app.call("POST", "/test-devices", json={"Name": "lab", "SerialNumber": "SN1"})
    schema = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", api_app.app)
    schema.config.update(headers={"Authorization": f"Bearer {api_app.admin}"})
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.timeout(0 if EXPLORE else 900)  # every operation in one test (~150 s here), and the API keeps growing
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not EXPLORE, suppress_health_check=list(HealthCheck),
          database=None)
def test_api_conforms_to_its_openapi_document(case):
    _opaque_cursor(case)
    case.call_and_validate()  # every check, positive_data_acceptance and negative_data_rejection included


def _opaque_cursor(case) -> None:
    """A cursor is opaque: the document can only give its alphabet and length, and a text of that shape the
    API did not make is refused (400 bad-cursor, tests/admin/test_api_paging_live.py). A valid case
    therefore pages from the start; invalid cursors are still sent."""
    from schemathesis.core.parameters import ParameterLocation

    if case.query and "cursor" in case.query and not (case.meta and case.meta.is_negative_at(ParameterLocation.QUERY)):
        del case.query["cursor"]
        if case.meta:
            case.meta.mark_dirty(ParameterLocation.QUERY)


# --- the longest valid requests through the real server ----------------------------------------

WIDE = "\U0001f600"  # 4 UTF-8 bytes, 12 characters percent-encoded: the longest a character gets
FREE_TEXT = {NO_NUL, TEXT_PATTERN, TEST_DEVICE.schema["pattern"]}


def _longest_requests() -> list[tuple[str, str]]:
    """(method, url) per operation with a free-text parameter, every free-text parameter at its maxLength
    of wide characters, every other parameter at a valid value."""
    valid = {"rule": "5a1d2c3e", "site": "s" * 100, "limit": "500", "offset": "1000000000", "outdated": "true",
             "type": "W" * 40, "device": "D" * 80, "name": "n" * 200, "state": "superseded",
             "status": "outdated", "sort": "-last-seen", "not_seen_since": "9999w", "since": "2026-12-01",
             "until": "2099-12-31T23:59:59Z"}
    out = []
    for path, methods in document()["paths"].items():
        for method, operation in methods.items():
            # a cursor is only ever one the API made (see _opaque_cursor)
            params = [p for p in operation.get("parameters", []) if p["name"] != "cursor"]
            if not any(p["schema"].get("pattern") in FREE_TEXT for p in params):
                continue
            values = {p["name"]: (WIDE * p["schema"]["maxLength"] if p["schema"].get("pattern") in FREE_TEXT
                                  else valid[p["name"]]) for p in params}
            url = path
            for p in params:
                if p["in"] == "path":
                    url = url.replace("{" + p["name"] + "}", quote(values[p["name"]], safe=""))
            query = "&".join(f"{p['name']}={quote(values[p['name']], safe='')}" for p in params if p["in"] == "query")
            out.append((method.upper(), url + (f"?{query}" if query else "")))
    return out


def test_longest_valid_requests_pass_through_the_real_server(install, live_server, tmp_path):
    """The document's maximum lengths fit in what ``devupdate serve`` reads of a request line: each
    is answered by the API (JSON, as documented), never by the server's own 414."""
    from devupdate.admin import tokens

    install.runtime()
    _, admin = tokens.create("ci-admin", "admin", actor="test")
    server = live_server(workers=1)
    cab = cab_for(tmp_path, "4.0.7577.4372").read_bytes()
    sent = _longest_requests()
    assert {(m, u.split("?")[0].split("/")[3]) for m, u in sent} >= {
        ("GET", "devices"), ("GET", "audit"), ("GET", "logs"), ("POST", "imports"), ("PUT", "test-devices"),
        ("DELETE", "test-devices"), ("GET", "wsus")}
    for method, url in sent:
        assert len(url.encode()) > 2_000 or "imports" not in url
        body = cab if url.startswith(f"{API}/imports") else None
        headers = {"Authorization": f"Bearer {admin}"}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        kwargs = {"json": {"SerialNumber": "SN1"}} if method == "PUT" else {"data": body}
        response = requests.request(method, server.url + url, headers=headers, timeout=30, **kwargs)
        expected = "text/csv; charset=utf-8" if "/audit/export" in url else "application/json"
        assert response.headers["Content-Type"] == expected, (method, url[:80], response.text[:200])
        assert response.status_code in (200, 201, 404), (method, url[:80], response.status_code, response.text)
