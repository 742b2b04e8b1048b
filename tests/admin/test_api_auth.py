"""Every API route: no token → 401, an operator token on a change → 403, malformed JSON → 400;
tokens are stored hashed and a revoked one stops working at once."""

from __future__ import annotations

import hashlib
import re

import pytest
from apikit import API, make_api

from devupdate.admin import api

EXPECTED_ROUTES = {
    ("GET", "/rules"), ("GET", "/rules/{rule}"), ("POST", "/rules/{rule}/approve"), ("POST", "/rules/{rule}/reset"),
    ("POST", "/rules/{rule}/restore"), ("DELETE", "/rules/{rule}"), ("GET", "/imports/limits"), ("POST", "/imports"),
    ("GET", "/test-devices"), ("POST", "/test-devices"), ("PUT", "/test-devices/{name}"),
    ("DELETE", "/test-devices/{name}"), ("GET", "/configuration"), ("PUT", "/configuration/{key}"),
    ("POST", "/bulk/rules/approve"), ("POST", "/bulk/rules/reset"), ("GET", "/audit/export"),
    ("GET", "/devices"), ("GET", "/audit"), ("GET", "/logs"), ("GET", "/logs/{type}/{device}/{name}"),
    ("GET", "/filestore/usage"), ("GET", "/openapi.json"),
    ("GET", "/wsus/updates"), ("GET", "/wsus/updates/{update}"), ("POST", "/wsus/updates/{update}/decline"),
    ("POST", "/wsus/updates/{update}/undecline"), ("DELETE", "/wsus/updates/{update}"),
    ("POST", "/wsus/updates/{update}/restore"), ("GET", "/wsus/categories"),
    ("POST", "/wsus/products/{product}/select"), ("POST", "/wsus/products/{product}/unselect"),
    ("GET", "/wsus/report/computers"), ("GET", "/wsus/report/computers/{computer}"), ("GET", "/wsus/report/updates"),
    ("GET", "/wsus/report/groups"),
    ("GET", "/wsus/groups"), ("POST", "/wsus/groups"), ("POST", "/wsus/groups/{group}/rename"),
    ("DELETE", "/wsus/groups/{group}"), ("GET", "/wsus/computers"), ("GET", "/wsus/computers/{computer}"),
    ("PUT", "/wsus/computers/{computer}/groups"), ("GET", "/wsus/approvals"),
    ("GET", "/wsus/updates/{update}/approvals"), ("PUT", "/wsus/updates/{update}/approvals/{group}"),
    ("DELETE", "/wsus/updates/{update}/approvals/{group}"), ("GET", "/wsus/eulas"),
    ("POST", "/wsus/eulas/{eula}/accept"), ("GET", "/wsus/auto-approval"), ("PUT", "/wsus/auto-approval/{rule}"),
    ("POST", "/wsus/auto-approval/{rule}/pause"), ("POST", "/wsus/auto-approval/{rule}/resume"),
    ("GET", "/wsus/targeting"), ("PUT", "/wsus/targeting"),
    ("GET", "/devices/{device}"), ("GET", "/rollouts"), ("GET", "/rules/{rule}/rollout"),
    ("POST", "/rules/{rule}/rollout"), ("POST", "/rules/{rule}/rollout/abort"),
    ("POST", "/rules/{rule}/rollout/advance"), ("POST", "/rules/{rule}/rollout/resume"),
    ("GET", "/wsus/sync"), ("POST", "/wsus/sync"), ("GET", "/wsus/needed"), ("POST", "/wsus/needed"),
    ("DELETE", "/wsus/needed/{update}"),
    ("GET", "/activity"), ("GET", "/rules/{rule}/adoption"), ("GET", "/wsus/sync/files"), ("GET", "/wsus/sync/runs"),
    ("GET", "/request-logs"), ("GET", "/request-logs/{name}"),
    ("POST", "/wsus/sync/files/retry"),
    ("DELETE", "/configuration"), ("GET", "/configurations"), ("POST", "/files/cleanup"),
    ("POST", "/logs/cleanup"), ("POST", "/filestore/verify"),
    ("GET", "/tokens"), ("POST", "/tokens"), ("DELETE", "/tokens/{name}"), ("GET", "/admins"), ("POST", "/admins"),
    ("DELETE", "/admins/{name}"), ("GET", "/users"), ("POST", "/users"), ("DELETE", "/users/{name}"),
}
PROTECTED = [r for r in api.ROUTES if r.role is not None]
CHANGES = [r for r in api.ROUTES if r.role == "admin"]


def concrete(path: str) -> str:
    """A URL for a route, its placeholders filled with plausible values."""
    values = {"rule": "5a1d2c3e", "name": "lab-phone", "key": "MaxLogFileSize", "type": "Watson",
              "device": "0004F2AABBCC", "update": "a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe",
              "product": "8c3fcc84-7410-4a95-8b89-a166a0190486", "group": "a0a08746-4dbe-4a37-9adf-9e7652c0b421",
              "computer": "6f8c7a3e-0d1b-4c52-9a8e-3b2f1e0c9d7a", "eula": "0c2f7a1e-5b3d-4e8f-9a6c-1d2e3f4a5b6c"}
    return API + re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


@pytest.fixture
def api_app(install):
    return make_api(install)


def test_the_route_table_is_the_issue_list():
    assert {(r.method, r.path) for r in api.ROUTES} == EXPECTED_ROUTES
    assert {r.path for r in CHANGES} == {"/rules/{rule}/approve", "/rules/{rule}/reset", "/rules/{rule}/restore",
                                         "/rules/{rule}", "/imports", "/test-devices", "/test-devices/{name}",
                                         "/configuration/{key}", "/wsus/updates/{update}/decline",
                                         "/wsus/updates/{update}/undecline", "/wsus/updates/{update}",
                                         "/wsus/updates/{update}/restore", "/wsus/products/{product}/select",
                                         "/wsus/products/{product}/unselect", "/wsus/groups",
                                         "/wsus/groups/{group}/rename", "/wsus/groups/{group}",
                                         "/wsus/computers/{computer}/groups",
                                         "/wsus/updates/{update}/approvals/{group}",
                                         "/wsus/eulas/{eula}/accept", "/wsus/auto-approval/{rule}",
                                         "/wsus/auto-approval/{rule}/pause", "/wsus/auto-approval/{rule}/resume",
                                         "/wsus/targeting", "/rules/{rule}/rollout",
                                         "/rules/{rule}/rollout/abort", "/rules/{rule}/rollout/advance",
                                         "/rules/{rule}/rollout/resume", "/wsus/sync", "/wsus/needed",
                                         "/wsus/needed/{update}", "/bulk/rules/approve", "/bulk/rules/reset",
                                         "/wsus/sync/files/retry", "/configuration", "/files/cleanup",
                                         "/logs/cleanup", "/filestore/verify", "/tokens", "/tokens/{name}",
                                         "/admins", "/admins/{name}", "/users", "/users/{name}"}


def test_every_route_refuses_without_a_token(api_app):
    client = api_app.client
    for route in PROTECTED:
        for headers in ({}, {"Authorization": "Bearer dut_not-a-real-token"}, {"Authorization": "Basic YTpi"},
                        {"Authorization": f"Bearer {api_app.admin}x"}, {"Authorization": "Bearer"}):
            response = client.open(concrete(route.path), method=route.method, headers=headers, data=b"{}",
                                   content_type="application/json")
            where = f"{route.method} {route.path} with {headers}"
            assert response.status_code == 401, (where, response.data)
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), where
            assert response.json["error"]["code"] == "unauthenticated", where


def test_an_operator_token_may_not_change(api_app):
    from devupdate.audit.models import AuditEvent

    before = AuditEvent.select().count()
    for route in CHANGES:
        response = api_app.client.open(concrete(route.path), method=route.method, headers=api_app.auth("operator"),
                                       json={"Name": "x", "MACAddress": "00-04-f2-aa-bb-cc", "Value": "4096"})
        assert response.status_code == 403, (route.method, route.path, response.data)
        assert response.json["error"]["code"] == "forbidden"
    assert AuditEvent.select().count() == before  # refused before any service function ran


def test_malformed_json_is_a_400_on_every_route(api_app):
    for route in PROTECTED:
        for body in (b"{", b'{"Name": }', b"\xff\xfe", b'{"Name": "a"} trailing', b"[" * 100_000,
                     b'{"Value": ' + b"9" * 5000 + b"}", b'{"Value": NaN}'):
            response = api_app.client.open(concrete(route.path), method=route.method, headers=api_app.auth("admin"),
                                           data=body, content_type="application/json")
            assert response.status_code == 400, (route.method, route.path, body[:20], response.data)
            assert response.json["error"]["code"] == "malformed-json"


def test_an_operator_token_may_read(api_app):
    for route in PROTECTED:
        if route.role != "operator":
            continue
        response = api_app.client.open(concrete(route.path), method=route.method, headers=api_app.auth("operator"))
        assert response.status_code in (200, 404), (route.path, response.data)  # 404: no such rule or log
        if response.status_code == 404:
            assert "{" in route.path


def test_json_bodies_that_are_not_objects_are_refused_with_the_shape_wanted(api_app):
    for body in (b"[]", b'"text"', b"42", b"null", b""):
        response = api_app.call("POST", "/test-devices", data=body, content_type="application/json")
        assert response.status_code == 400
        assert response.json["error"]["code"] == "bad-body"
    response = api_app.call("PUT", "/configuration/MaxLogFileSize", json={"Value": {"nested": 1}})
    assert response.status_code == 400 and response.json["error"]["code"] == "bad-body"
    response = api_app.call("POST", "/test-devices", data=b'{"Name": "a\\u0000b", "MACAddress": "0004f2aabbcc"}',
                            content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["code"] == "bad-text"


def test_unknown_paths_and_methods_answer_json(api_app):
    response = api_app.get("/nothing-here")
    assert response.status_code == 404 and response.json["error"]["code"] == "not-found"
    response = api_app.call("PATCH", "/rules")
    assert response.status_code == 405 and response.headers["Allow"] == "GET, HEAD, OPTIONS"
    options = api_app.client.options(API + "/rules/abc")
    assert options.status_code == 204 and options.headers["Allow"] == "GET, DELETE, HEAD, OPTIONS"
    assert api_app.client.get(API + "/nothing-here").status_code == 401  # no route list for strangers


def test_tokens_are_stored_hashed_and_revocation_is_immediate(api_app):
    from devupdate.admin import tokens
    from devupdate.admin.tokens import ApiToken
    from devupdate.audit.trail import list_events

    stored = ApiToken.get(ApiToken.name == "ci-admin")
    assert stored.hash == hashlib.sha256(api_app.admin.encode()).hexdigest()
    assert api_app.admin not in str(list(ApiToken.select().tuples()))
    assert api_app.get("/rules", role="admin").status_code == 200
    assert ApiToken.get(ApiToken.name == "ci-admin").last_used_at is not None
    tokens.revoke("ci-admin", actor="test")
    response = api_app.get("/rules", role="admin")
    assert response.status_code == 401
    assert [e["Action"] for e in list_events(action="token.")] == ["token.revoke", "token.create", "token.create"]
