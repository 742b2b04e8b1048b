"""The OpenAPI 3.1 document of ``/api/v1``, generated from the route table (``routing.ROUTES``) that
every feature's views fill and from the shapes in ``schemas.py``; and the route that serves it.
The schemathesis test holds the document and the service together.

The document must describe every route, whichever module was imported first, so this module
imports every feature's views itself and lists them in the order of ``FEATURES`` (not in the order
their modules happened to be imported).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from flask import Response

from devupdate.admin import (
    views_accounts,
    views_audit,
    views_configuration,
    views_devices,
    views_filestore,
    views_imports,
    views_logs,
    views_maintenance,
    views_request_logs,
    views_rules,
    views_test_devices,
    views_wsus,
    views_wsus_compliance,
    views_wsus_sync,
    views_wsus_targeting,
)
from devupdate.admin.routing import PREFIX, ROUTES, Route, json_response, route, runtime
from devupdate.admin.schemas import CAB_MEDIA_TYPES, SCHEMAS, STRING, ref, setting_body
from devupdate.configuration import OPTIONS as CONFIG_OPTIONS
from devupdate.configuration import value_schema

#: every feature's API views, in the order the document lists their paths
FEATURES = (views_rules, views_imports, views_test_devices, views_configuration, views_devices, views_audit,
            views_logs, views_filestore, views_maintenance, views_accounts,
            views_wsus, views_wsus_targeting, views_wsus_compliance, views_wsus_sync,
            views_request_logs)
_RANK = {module.__name__: rank for rank, module in enumerate(FEATURES)}


def _listed(entry: Route) -> int:
    """Where ``entry`` comes in the document: by feature, in declaration order within one (this
    module's own route last)."""
    return _RANK.get(entry.view.__module__, len(FEATURES))


_DESCRIPTIONS = {200: "OK", 201: "Created", 400: "Bad request: malformed JSON, a bad parameter or a refused value",
                 401: "No valid bearer token", 403: "The token's role may not do this (operator tokens only read)",
                 404: "Not found", 409: "A precondition does not hold", 413: "Too large", 415: "Wrong media type",
                 507: "Over the filestore quota"}


def _responses(entry: Route) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, schema in sorted(entry.responses.items()):
        response: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "")}
        if schema:
            response["content"] = {"application/json": {"schema": ref(schema)}}
        elif entry.endpoint == "openapi_document":
            response["content"] = {"application/json": {"schema": {"type": "object"}}}
        elif status == 200 and entry.endpoint.endswith("_csv"):
            response["content"] = {"text/csv": {"schema": {"type": "string"}}}
        elif status == 200:
            response["content"] = {"application/octet-stream": {"schema": {}}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": STRING, "description": "Bearer challenge"}}
        out[str(status)] = response
    return out


def _operation(entry: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": entry.endpoint, "summary": entry.summary,
        "description": {None: "Public.", "operator": "Any token (operator or admin).",
                        "admin": "Admin tokens only; recorded in the audit trail as token:<name>."}[entry.role],
        "responses": _responses(entry),
    }
    if entry.role is None:
        operation["security"] = []
    if entry.params:
        operation["parameters"] = [{"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                                    "description": p.description, "schema": p.schema} for p in entry.params]
    if entry.body == "cab":
        cab = {"schema": {"type": "string", "format": "binary",
                          "description": "a Microsoft cabinet (starts with 'MSCF') with the vendor's update "
                                         "description; anything else is refused with 400"}}
        operation["requestBody"] = {"required": True, "description": "The .cab file itself, streamed",
                                    "content": {media_type: cab for media_type in CAB_MEDIA_TYPES}}
    elif entry.body:
        operation["requestBody"] = {"required": not entry.body_optional,
                                    "content": {"application/json": {"schema": ref(entry.body)}}}
    return operation


def _per_setting(entry: Route) -> dict[str, dict[str, Any]]:
    """``PUT /configuration/{key}`` as one operation per setting: each value has its own type and range."""
    out = {}
    for key in CONFIG_OPTIONS:
        operation = _operation(entry)
        operation["operationId"] = f"{entry.endpoint}_{key}"
        operation["summary"] = f"Change {key} (globally or for a site)"
        operation["parameters"] = [p for p in operation["parameters"] if p["name"] != "key"]
        operation["requestBody"]["content"]["application/json"]["schema"] = ref(f"{key}Value")
        out[entry.path.replace("{key}", key)] = operation
    return out


def document(quotas: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The document; with an installation's filestore ``quotas``, the setting bounds that depend on
    them are its own (what ``PUT /configuration/MaxLogFileSize`` takes there)."""
    return _document(tuple(sorted(quotas.items())) if quotas else ())


@functools.cache
def _document(quotas: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    schemas = {**SCHEMAS, **{f"{key}Value": setting_body(value_schema(key, dict(quotas))) for key in CONFIG_OPTIONS}}
    paths: dict[str, dict[str, Any]] = {}
    for entry in sorted(ROUTES, key=_listed):
        if entry.endpoint == "set_configuration":
            for path, operation in _per_setting(entry).items():
                paths.setdefault(PREFIX + path, {})[entry.method.lower()] = operation
            continue
        paths.setdefault(PREFIX + entry.path, {})[entry.method.lower()] = _operation(entry)
    return {
        "openapi": "3.1.0",
        "info": {"title": "devupdate administration API", "version": "1",
                 "description": "Rules, imports, test devices, configuration, device compliance, audit trail, "
                                "device logs, filestore usage and maintenance, tokens and accounts, and the WSUS "
                                "update catalog. Listings page alike: limit, an opaque cursor from the previous "
                                "page's Next link, Total where it is cheap to count. Authenticate with "
                                "'Authorization: Bearer <token>' "
                                "(devupdate tokens create NAME --role admin|operator)."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearerAuth": []}],
    }


@route("GET", "/openapi.json", role=None, summary="This API's OpenAPI 3.1 document", responses={200: ""})
def openapi_document() -> Response:
    return json_response(document(runtime().settings.quotas))
