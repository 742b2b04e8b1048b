"""The OpenAPI 3.1 document of ``/api/v1``, generated from the API's route table (``api.ROUTES``)
and the response shapes below — which are the shapes the service functions return (``rule_dict``,
``ImportResult.as_dict``, ``device_dict``, ``configuration.show``, ``device_status``,
``event_dict``, ``LogFile.as_dict``, ``usage_rows``). The schemathesis test holds the two together.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from devupdate.admin import api
from devupdate.configuration import OPTIONS as CONFIG_OPTIONS

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NULLABLE_STRING = {"type": ["string", "null"]}
ANY: dict[str, Any] = {}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required}


def _array(item: str | dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": _ref(item) if isinstance(item, str) else item}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_VERSIONS = ("Approved", "Pending", "Restore")
_RULE = {
    "Id": STRING, "Identity": STRING, "DeviceType": STRING, "Brand": STRING, "Model": STRING,
    "Revision": STRING, "Locale": STRING, "UpdateType": STRING,
    **{f"{state}Version": NULLABLE_STRING for state in _VERSIONS},
    **{f"{state}{what}": NULLABLE_STRING for state in _VERSIONS for what in ("Time", "By")},
}
_USAGE = {"Area": STRING, "UsedBytes": INTEGER, "QuotaBytes": {"type": ["integer", "null"]},
          "UsedPercent": {"type": ["number", "null"]}, "Objects": INTEGER, "Warning": {"type": "boolean"},
          "Full": {"type": "boolean"}}
# The formats the service accepts (rules/test_devices.py): separators anywhere in a MAC, blanks around.
# maxLength comes first: it is checked before the pattern.
MAC = {"type": "string", "maxLength": 300,
       "pattern": r"^[ \t]*([-:.]*[0-9A-Fa-f][-:.]*[0-9A-Fa-f]){6,50}[-:.]*[ \t]*$",
       "description": "a MAC address: 6 to 50 pairs of hex digits, separated by '-', ':', '.' or not",
       "examples": ["00-04-F2-AA-BB-CC"]}
SERIAL = {"type": "string", "maxLength": 300, "pattern": r"^[ \t]*[A-Za-z0-9_-]{1,100}[ \t]*$",
          "description": "a serial number: 1–100 letters, digits, '-' or '_'", "examples": ["64167F2A8B31"]}
SITE = api.SITE_SCHEMA
NAME = api.TEST_DEVICE.schema


def _one_identifier(extra: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """Exactly one of MACAddress / SerialNumber, nothing else."""
    return {"type": "object", "properties": {**extra, "MACAddress": MAC, "SerialNumber": SERIAL},
            "required": required, "additionalProperties": False,
            "oneOf": [{"required": ["MACAddress"]}, {"required": ["SerialNumber"]}],
            "description": "exactly one of MACAddress or SerialNumber"}


SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": _object({"code": STRING, "message": STRING})}),
    "Rule": _object(_RULE),
    "RuleList": _array("Rule"),
    "RuleDetail": _object({**_RULE, "Versions": _array(_object({
        "Version": STRING, "ImportedTime": NULLABLE_STRING, "UnreferencedSince": NULLABLE_STRING,
        "Files": _array(_object({"FileName": STRING, "Role": STRING, "SHA256": STRING}))}))}),
    "RemovedRule": _object({"Id": STRING, "Key": STRING,
                            **{f"{state}Version": NULLABLE_STRING for state in _VERSIONS}}),
    "ImportResult": _object({
        "Outcome": {"enum": ["imported", "nothing-new"]}, "FileName": STRING, "Size": INTEGER, "SHA256": STRING,
        "Rules": _array(_object({"Id": STRING, "Version": STRING,
                                 "Change": {"enum": ["created", "new-version", "pending", "unchanged"]}})),
        "Findings": _array(STRING), "ImportId": {"type": ["integer", "null"]}}),
    "ImportLimits": _object({"MaxCabSize": INTEGER, "Areas": _array("AreaUsage")}),
    "AreaUsage": _object(_USAGE),
    "UsageList": _array("AreaUsage"),
    "TestDevice": _object({"Name": STRING, "Scope": STRING, "IdentifierType": {"enum": ["MACAddress", "SerialNumber"]},
                           "Identifier": STRING}),
    "TestDeviceList": _array("TestDevice"),
    "TestDeviceNew": _one_identifier({"Name": NAME, "Site": SITE}, ["Name"]),
    "TestDeviceIdentifier": _one_identifier({}, []),
    "Configuration": _object({
        "Scope": STRING, "MaxLogFileSize": INTEGER, "MaxLogCacheLimit": INTEGER, "LogFlushInterval": INTEGER,
        "LogCleanUpInterval": INTEGER, "LogCleanUpTimeOfDay": NULLABLE_STRING,
        "ValidLogFileTypes": _array(STRING), "ValidLogFileExtensions": _array(STRING)}),
    # what every setting's value can be; each setting's own is in the operation that sets it
    "ConfigValue": {**_object({"Value": {"description": "a string, a number, a list of strings, or null (none)",
                                         "anyOf": [STRING, {"type": "number"}, _array(STRING), {"type": "null"}]}}),
                    "additionalProperties": False},
    **{f"{key}Value": {**_object({"Value": option.value_schema}), "additionalProperties": False}
       for key, option in CONFIG_OPTIONS.items()},  # an installation's own bounds: document(quotas)
    "ConfigChange": _object({"Scope": STRING, "Key": STRING, "Before": ANY, "After": ANY}),
    "Device": _object({
        "DeviceId": STRING, "MACAddress": NULLABLE_STRING, "SerialNumber": NULLABLE_STRING, "DeviceType": STRING,
        "Brand": STRING, "Model": STRING, "Revision": STRING, "Locale": STRING,
        "Versions": {"type": "object", "additionalProperties": STRING}, "UserID": NULLABLE_STRING,
        "Address": STRING, "Network": STRING, "TestDevice": {"type": "boolean"}, "FirstSeen": NULLABLE_STRING,
        "LastSeen": NULLABLE_STRING, "Checks": INTEGER, "Status": {"enum": ["Current", "Outdated", "Unmanaged"]},
        "Updates": _array(_object({"RuleId": STRING, "UpdateType": STRING, "InstalledVersion": NULLABLE_STRING,
                                   "ApprovedVersion": STRING, "Status": {"enum": ["Current", "Outdated"]}}))}),
    "DeviceList": _array("Device"),
    "AuditEvent": _object({"Id": INTEGER, "Time": STRING, "Actor": STRING, "Action": STRING, "Target": STRING,
                           "Outcome": STRING, "Before": ANY, "After": ANY, "Detail": ANY}),
    "AuditPage": _object({"Events": _array("AuditEvent"), "Limit": INTEGER, "Offset": INTEGER,
                          "NextOffset": {"type": ["integer", "null"]}}),
    "LogFile": _object({"Type": STRING, "DeviceId": STRING, "FileName": STRING, "Path": STRING, "Size": INTEGER,
                        "LastWriteTime": STRING}),
    "LogFileList": _array("LogFile"),
}

_DESCRIPTIONS = {200: "OK", 201: "Created", 400: "Bad request: malformed JSON, a bad parameter or a refused value",
                 401: "No valid bearer token", 403: "The token's role may not do this (operator tokens only read)",
                 404: "Not found", 409: "A precondition does not hold", 413: "Too large", 415: "Wrong media type",
                 507: "Over the filestore quota"}


def _responses(entry: api.Route) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, schema in sorted(entry.responses.items()):
        response: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "")}
        if schema:
            response["content"] = {"application/json": {"schema": _ref(schema)}}
        elif entry.endpoint == "openapi_document":
            response["content"] = {"application/json": {"schema": {"type": "object"}}}
        elif status == 200:
            response["content"] = {"application/octet-stream": {"schema": {}}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": STRING, "description": "Bearer challenge"}}
        out[str(status)] = response
    return out


def _operation(entry: api.Route) -> dict[str, Any]:
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
                                    "content": {media_type: cab for media_type in api.CAB_MEDIA_TYPES}}
    elif entry.body:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": _ref(entry.body)}}}
    return operation


def config_value_schema(key: str) -> dict[str, Any]:
    """The body ``PUT /configuration/<key>`` takes: ``{"Value": …}`` of that setting's type."""
    return SCHEMAS[f"{key}Value"]


def _per_setting(entry: api.Route) -> dict[str, dict[str, Any]]:
    """``PUT /configuration/{key}`` as one operation per setting: each value has its own type and range."""
    out = {}
    for key in CONFIG_OPTIONS:
        operation = _operation(entry)
        operation["operationId"] = f"{entry.endpoint}_{key}"
        operation["summary"] = f"Change {key} (globally or for a site)"
        operation["parameters"] = [p for p in operation["parameters"] if p["name"] != "key"]
        operation["requestBody"]["content"]["application/json"]["schema"] = _ref(f"{key}Value")
        out[entry.path.replace("{key}", key)] = operation
    return out


def document(quotas: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The document; with an installation's filestore ``quotas``, the setting bounds that depend on
    them are its own (what ``PUT /configuration/MaxLogFileSize`` takes there)."""
    return _document(tuple(sorted(quotas.items())) if quotas else ())


@functools.cache
def _document(quotas: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    from devupdate.configuration import value_schema

    schemas = {**SCHEMAS, **{f"{key}Value": {**_object({"Value": value_schema(key, dict(quotas))}),
                                             "additionalProperties": False} for key in CONFIG_OPTIONS}}
    paths: dict[str, dict[str, Any]] = {}
    for entry in api.ROUTES:
        if entry.endpoint == "set_configuration":
            for path, operation in _per_setting(entry).items():
                paths.setdefault(api.PREFIX + path, {})[entry.method.lower()] = operation
            continue
        paths.setdefault(api.PREFIX + entry.path, {})[entry.method.lower()] = _operation(entry)
    return {
        "openapi": "3.1.0",
        "info": {"title": "devupdate administration API", "version": "1",
                 "description": "Rules, imports, test devices, configuration, device compliance, audit trail, "
                                "device logs and filestore usage. Authenticate with 'Authorization: Bearer <token>' "
                                "(devupdate tokens create NAME --role admin|operator)."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearerAuth": []}],
    }
