"""The OpenAPI 3.1 document of the device API (``/api/device/v1``, ``/api/device-ext/v1``). Its own
document, apart from the admin API's: devices and their vendors read this one. The tests validate
real answers against the schemas here, so the document and the service cannot drift apart."""

from __future__ import annotations

from typing import Any

from devupdate.devices.jsonapi import MAX_CODE, MAX_MESSAGE, NEXT_CHECK_SECONDS, STATES

_TEXT = {"type": ["string", "null"], "maxLength": 256}


def schemas() -> dict[str, Any]:
    device = {
        "type": "object", "required": ["type", "brand", "model", "locale"],
        "description": "The device's identity, as in the Lync update check: mac or serial (or both) is required.",
        "properties": {
            "type": {**_TEXT, "description": "DeviceType, e.g. UCPhone"},
            "brand": {**_TEXT, "description": "The rule's Brand (the Lync check's Vendor)"},
            "model": _TEXT, "revision": _TEXT,
            "locale": {**_TEXT, "description": "Windows three-letter language code, e.g. ENU"},
            "mac": {**_TEXT, "description": "12 hex digits; separators - : . allowed"},
            "serial": {**_TEXT, "description": "letters, digits, - and _"},
            "user": {**_TEXT, "description": "the signed-in user, if any"}}}
    installed = {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "maxLength": 100, "description": "a package name the check answered (or a "
                 "Lync module file name such as CPE.nbt)"},
        "version": {"type": ["string", "null"], "pattern": r"^[0-9]{1,10}(\.[0-9]{1,10}){0,3}$"}}}
    file = {"type": "object", "required": ["name", "url", "size", "sha256"], "properties": {
        "name": {"type": "string"}, "url": {"type": "string", "format": "uri"},
        "size": {"type": "integer", "minimum": 0}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "signature": {"type": ["string", "null"], "description": "the catalog file that signs this image"},
        "timestamp": {"type": "string", "description": "when the image was imported (ISO 8601 UTC)"}}}
    package = {"type": "object", "required": ["name", "version", "optional", "files"], "properties": {
        "name": {"type": "string", "description": "the rule's UpdateType; report status under this name"},
        "rule": {"type": "string", "description": "the rule's GUID"},
        "version": {"type": "string"}, "optional": {"type": "boolean"},
        "installed": {"type": ["string", "null"], "description": "the version the device reported, if any"},
        "current": {"type": "boolean", "description": "the device already runs this version: nothing to do"},
        "files": {"type": "array", "items": {"$ref": "#/components/schemas/File"}}}}
    report = {"type": "object", "required": ["type"], "properties": {
        "type": {"const": "status"}, "package": {"type": "string"}, "version": {"type": "string"}}}
    return {
        "Device": device, "Installed": installed, "File": file, "Package": package, "ReportRequest": report,
        "CheckRequest": {"type": "object", "required": ["device"], "properties": {
            "device": {"$ref": "#/components/schemas/Device"},
            "installed": {"type": ["array", "null"], "maxItems": 64,
                          "items": {"$ref": "#/components/schemas/Installed"}}}},
        "CheckAnswer": {"type": "object", "required": ["packages", "reports", "next_check_seconds"],
                        "additionalProperties": False, "properties": {
                            "packages": {"type": "array", "items": {"$ref": "#/components/schemas/Package"}},
                            "reports": {"type": "array", "items": {"$ref": "#/components/schemas/ReportRequest"}},
                            "next_check_seconds": {"type": "integer", "minimum": 60,
                                                   "examples": [NEXT_CHECK_SECONDS]}}},
        "StatusRequest": {"type": "object", "required": ["device", "package", "version", "state"], "properties": {
            "device": {"$ref": "#/components/schemas/Device"},
            "package": {"type": "string", "maxLength": 100}, "version": {"type": "string", "maxLength": 64},
            "state": {"enum": list(STATES)},
            "code": {"type": ["string", "integer", "null"], "maxLength": MAX_CODE},
            "message": {"type": ["string", "null"], "maxLength": MAX_MESSAGE}}},
        "StatusAnswer": {"type": "object", "required": ["accepted", "package", "version", "state"],
                         "additionalProperties": False, "properties": {
                             "accepted": {"const": True}, "package": {"type": "string"},
                             "version": {"type": "string"}, "state": {"enum": list(STATES)}}},
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
    }


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


_ERRORS = {"400": _error("malformed request: the error's code and message say what to fix (bad JSON, nesting "
                         "deeper than the shape, a duplicate key, a wrong type, control characters, a bad MAC)"),
           "401": _error("external side: credentials required or wrong (WWW-Authenticate says how)"),
           "403": _error("internal side from outside the internal networks, or the external side over plain HTTP"),
           "413": _error("body over 64 KiB"), "415": _error("not application/json"),
           "429": _error("too many failed logins from this source (Retry-After)"),
           "503": _error("busy or the credential store is away (Retry-After)")}


def _operations(side: str) -> dict[str, Any]:
    security: list[dict[str, list[str]]] = [{"basic": []}] if side == "Ext" else []
    check = {"post": {
        "operationId": f"check{side}", "summary": "Every package this device should have",
        "description": "The full list, including packages the device already runs (current: true); a status "
                       "report is asked for each package it does not run yet.",
        "security": security,
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/CheckRequest"}}}},
        "responses": {"200": {"description": "the packages", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/CheckAnswer"}}}}, **_ERRORS}}}
    status = {"post": {
        "operationId": f"status{side}", "summary": "Report download or install progress of a package",
        "description": "Idempotent: one state per device, package and version is kept; sending a report twice "
                       "changes nothing, and a late 'downloading' never replaces 'installed' or 'failed'.",
        "security": security,
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/StatusRequest"}}}},
        "responses": {"202": {"description": "taken (written within seconds)", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/StatusAnswer"}}}},
            "404": _error("the device's family has no rule with that package name"), **_ERRORS}}}
    return {"check": check, "status": status}


def document() -> dict[str, Any]:
    from devupdate.devices.deviceapi import EXTERNAL_PREFIX, INTERNAL_PREFIX

    paths: dict[str, Any] = {}
    for prefix, side in ((INTERNAL_PREFIX, "Int"), (EXTERNAL_PREFIX, "Ext")):
        for name, item in _operations(side).items():
            paths[f"{prefix}/{name}"] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "devupdate device API", "version": "1",
                 "description": "Pull-model update checks and status reports for devices that speak JSON. "
                                "/api/device/v1 answers the internal networks without credentials; "
                                "/api/device-ext/v1 (what a reverse proxy publishes) needs them."},
        "paths": paths,
        "components": {"schemas": schemas(), "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}},
    }
