"""The JSON API under ``/api/v1`` (issue 5): views translate HTTP ⇄ the service functions the CLI
calls, and nothing else.

- Authentication: ``Authorization: Bearer <secret>`` of a token from ``devupdate tokens create``;
  ``operator`` tokens may read, ``admin`` tokens may also change. Missing or unknown → ``401``,
  an operator on a change → ``403``. Changes are recorded in the audit trail as ``token:<name>``.
- Errors are ``{"error": {"code": …, "message": …}}`` with the status of the refusal
  (``DevupdateError.status``): ``400`` bad input (malformed JSON included), ``404``, ``409``
  precondition, ``413`` too large, ``507`` over quota.
- ``POST /imports`` takes the cab as the raw request body, streamed into the filestore's
  ``incoming`` area (quota-checked, never held in memory), then imported from there. The import is
  idempotent: sending the same cab again answers ``200`` with ``Outcome: nothing-new``.
- Every route is declared once in ``ROUTES`` (method, path, role, parameters, responses); the
  OpenAPI document (``openapi.py``) is generated from the same table.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from devupdate import numbers
from devupdate.admin import validation
from devupdate.errors import DevupdateError, TooLarge
from devupdate.web.bodies import TOO_LARGE, BodyError, read_all, refuse_encoding

log = logging.getLogger("devupdate.api")

PREFIX = "/api/v1"
MAX_JSON_BODY = 1 << 20
MAX_PAGE = 500
MAX_OFFSET = 10**9

bp = Blueprint("api_v1", __name__, url_prefix=PREFIX)


# --- the route table ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str
    where: str = "query"  # query | path
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI form: /rules/{rule}
    view: Callable[..., Response]
    role: str | None  # None: public; operator: read; admin: change
    summary: str
    params: tuple[Param, ...] = ()
    body: str | None = None  # JSON schema name, or "cab" for the raw .cab body
    responses: dict[int, str | None] = field(default_factory=dict)  # status -> schema name ("" = no JSON)

    @property
    def endpoint(self) -> str:
        return self.view.__name__

    @property
    def changes(self) -> bool:
        return self.role == "admin"


ROUTES: list[Route] = []
_ROUTE_OF: dict[str, Route] = {}
_ROLE_OF: dict[str, str | None] = {}
_QUERY_OF: dict[str, frozenset[str]] = {}


def route(method: str, path: str, *, role: str | None, summary: str, params: tuple[Param, ...] = (),
          body: str | None = None, responses: dict[int, str | None]) -> Callable:
    """Register a view on the blueprint and in ``ROUTES`` (the OpenAPI document's source)."""
    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        entry = Route(method, path, view, role, summary, params, body, responses)
        ROUTES.append(entry)
        _ROUTE_OF[f"{bp.name}.{view.__name__}"] = entry
        _ROLE_OF[f"{bp.name}.{view.__name__}"] = role
        _QUERY_OF[f"{bp.name}.{view.__name__}"] = frozenset(p.name for p in params if p.where == "query")
        rule = re.sub(r"\{(\w+)\}", r"<\1>", path)
        bp.add_url_rule(rule, view.__name__, view, methods=[method], strict_slashes=False)
        return view
    return decorate


# Text the service stores or compares: no NUL (databases refuse it). Lengths are in characters and
# keep the longest valid request line (every character percent-encoded as 4 UTF-8 bytes) within
# the 4 KiB the HTTP server reads.
NO_NUL = r"^[^\x00]*$"
RULE = Param("rule", {"type": "string", "maxLength": 38, "pattern": r"^\{?[0-9A-Fa-f-]{4,36}\}?$",
                      "description": "a rule GUID or a unique prefix of one (4 or more characters): hex digits "
                                     "and '-', braces allowed",
                      "examples": ["5a1d2c3e-0b7f-4f0e-9c39-2c1b7e0e5d11", "5a1d2c3e"]},
             "Rule GUID or a unique GUID prefix (a prefix matching several rules: 409)", "path", True)
SITE_SCHEMA = {"type": "string", "maxLength": 100, "pattern": r"^[A-Za-z0-9_.-]{1,100}$",
               "description": "letters, digits, '.', '_' or '-' (1–100)"}
SITE = Param("site", SITE_SCHEMA, "Site scope (default: global)")
LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}, "Page size")
OFFSET = Param("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
               "Items to skip")

READ = {400: "Error", 401: "Error"}
CHANGE = {400: "Error", 401: "Error", 403: "Error"}
JSON_CHANGE = {**CHANGE, 413: "Error"}
# The code of a refused value, per parameter or body field (others: bad-parameter / bad-body).
PARAM_CODES = {"rule": "bad-rule-ref", "site": "bad-site"}
FIELD_CODES = {"MACAddress": "bad-mac", "SerialNumber": "bad-serial", "Name": "bad-name", "Site": "bad-site",
               "oneOf": "bad-identifier"}


# --- request helpers ----------------------------------------------------------------------------

def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, default=str, allow_nan=False)
    return Response(body + "\n", status=status, mimetype="application/json", headers=headers)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def _clean(text: str, what: str) -> str:
    """Refuse what no field may hold (databases reject NUL; lone surrogates cannot be encoded)."""
    if "\x00" in text or any("\ud800" <= ch <= "\udfff" for ch in text):
        raise DevupdateError(f"{what} contains a NUL or an unencodable character", code="bad-text")
    return text


def query_text(name: str, max_length: int = 300) -> str | None:
    """A query parameter; None when absent (an empty value stays empty: ``site=`` is refused, not global)."""
    value = request.args.get(name)
    if value is None:
        return None
    if len(value) > max_length:
        raise DevupdateError(f"query parameter {name!r} is longer than {max_length} characters",
                             code="bad-parameter")
    return _clean(value, f"query parameter {name!r}")


def query_int(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    try:
        number = numbers.whole(value)
    except ValueError:
        raise DevupdateError(f"query parameter {name!r} must be a whole number (digits 0-9)",
                             code="bad-parameter") from None
    if not low <= number <= high:
        raise DevupdateError(f"query parameter {name!r} must be between {low} and {high}", code="bad-parameter")
    return number


def query_bool(name: str) -> bool:
    value = request.args.get(name)
    if value is None:
        return False
    value = value.strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise DevupdateError(f"query parameter {name!r} must be true or false", code="bad-parameter")


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > 20:
        raise DevupdateError("JSON body nested too deeply", code="malformed-json")
    if isinstance(value, str):
        _clean(value, "a JSON string")
    elif isinstance(value, dict):
        for key, item in value.items():
            _clean(key, "a JSON key")
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise DevupdateError("JSON numbers must be finite", code="malformed-json")


def _is_json_type() -> bool:
    mimetype = request.mimetype or ""
    return mimetype == "application/json" or mimetype.endswith("+json")


_BODY_CODES = {"incomplete": "incomplete-body", "framing": "malformed-body", "encoding": "unsupported-encoding"}


def _read_json_body() -> Any:
    """The parsed JSON body, ``None`` when there is none; malformed → 400, over 1 MiB → 413."""
    try:
        refuse_encoding(request.environ)
        data = read_all(request.stream, limit=MAX_JSON_BODY, announced=request.content_length)
    except BodyError as exc:
        if exc.reason == TOO_LARGE:
            raise TooLarge(f"JSON bodies are limited to {MAX_JSON_BODY} bytes", code="body-too-large") from None
        raise DevupdateError(exc.message, code=_BODY_CODES[exc.reason], status=exc.status) from None
    if not data.strip():
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, integers past 4300 digits
        raise DevupdateError(f"request body is not valid JSON: {exc}", code="malformed-json") from None
    _check_json(value)
    return value


def json_body() -> dict[str, Any]:
    """The JSON object a change needs; anything else is a 400 naming what was expected."""
    value = g.get("json_body")
    if not isinstance(value, dict):
        raise DevupdateError("send a JSON object as the request body (Content-Type: application/json)",
                             code="bad-body")
    return value


def body_text(body: dict[str, Any], key: str, *, required: bool = False, max_length: int = 300) -> str | None:
    if key not in body:
        if required:
            raise DevupdateError(f"{key} is required", code="bad-body")
        return None
    value = body[key]
    if not isinstance(value, str):
        raise DevupdateError(f"{key} must be a string", code="bad-body")
    if len(value) > max_length:
        raise DevupdateError(f"{key} is longer than {max_length} characters", code="bad-body")
    return value


def principal():
    return g.api_principal


def runtime():
    return current_app.extensions["devupdate"]


# --- authentication, roles, body checks ---------------------------------------------------------

def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate_request():
    """The token of the current request (``Principal``) or None; sets ``g.api_principal``."""
    from devupdate.admin.tokens import authenticate

    if "api_principal" not in g:
        secret = _bearer()
        g.api_principal = authenticate(secret) if secret else None
    return g.api_principal


CHALLENGE = 'Bearer realm="devupdate"'


@bp.before_request
def _guard() -> Response | None:
    if request.method == "OPTIONS":
        allowed = _allowed_methods(request.path)
        if not allowed:
            return error_response(404, "not-found", f"no API route {request.path}")
        return Response(status=204, headers={"Allow": ", ".join(allowed)})
    role = _ROLE_OF.get(request.endpoint or "", "operator")
    if role is None:
        return None
    found = authenticate_request()
    if found is None:
        return error_response(401, "unauthenticated", "send 'Authorization: Bearer <token>' with a token from "
                              "'devupdate tokens create'", {"WWW-Authenticate": CHALLENGE})
    g.log_user = found.actor
    if role == "admin" and not found.may_change:
        return error_response(403, "forbidden", f"token {found.name!r} has the operator role, which may only "
                              "read; changes need an admin token")
    unknown_params = sorted(set(request.args) - _QUERY_OF.get(request.endpoint or "", frozenset()))
    if unknown_params and request.endpoint in _QUERY_OF:
        known = ", ".join(sorted(_QUERY_OF[request.endpoint])) or "none"
        raise DevupdateError(f"unknown query parameter {unknown_params[0][:40]!r} (this route takes: {known})",
                             code="bad-parameter")
    if _is_json_type() or request.endpoint in _JSON_ENDPOINTS:
        g.json_body = _read_json_body()  # malformed JSON is refused on every route, after the role check
    entry = _ROUTE_OF.get(request.endpoint or "")
    if entry is not None:
        _check_request(entry)
    return None


def _check_request(entry: Route) -> None:
    """Parameters and JSON body against the route's schemas (the OpenAPI document's), before the view."""
    path_values = request.view_args or {}
    for param in entry.params:
        if param.where == "query":
            values = request.args.getlist(param.name)
            if len(values) > 1:
                raise DevupdateError(f"query parameter {param.name!r} given {len(values)} times; give it once",
                                     code="bad-parameter")
            if not values:
                continue
            raw = values[0]
        else:
            raw = path_values.get(param.name)
            if raw is None:
                continue
        validation.check(param.schema, validation.from_text(param.schema, raw),
                         f"{param.where} parameter {param.name!r}", code=PARAM_CODES.get(param.name, "bad-parameter"))
    if entry.body and entry.body != "cab":
        from devupdate.admin.openapi import SCHEMAS

        validation.check(SCHEMAS[entry.body], json_body(), "request body", code="bad-body", codes=FIELD_CODES)


@bp.errorhandler(DevupdateError)
def _refusal(exc: DevupdateError) -> Response:
    headers = {"Connection": "close"} if exc.status in (413, 507) else None
    return error_response(exc.status, exc.code, exc.message, headers)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    code = re.sub(r"[^a-z0-9]+", "-", (exc.name or "error").lower()).strip("-")
    headers = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    return error_response(exc.code or 500, code, exc.description or exc.name, headers)


@bp.errorhandler(Exception)
def _crash(exc: Exception) -> Response:
    log.exception("API %s %s failed", request.method, request.path)
    return error_response(500, "internal-error", "the request failed on the server; see the server log")


# --- rules --------------------------------------------------------------------------------------

def _rule_json(rule) -> dict[str, Any]:
    from devupdate.rules.lifecycle import rule_dict

    return rule_dict(rule, runtime().settings.effective_service_name)


@route("GET", "/rules", role="operator", summary="All update rules", responses={200: "RuleList", **READ})
def list_rules() -> Response:
    from devupdate.rules import lifecycle

    return json_response([_rule_json(rule) for rule in lifecycle.list_rules()])


@route("GET", "/rules/{rule}", role="operator", summary="One rule with its imported versions", params=(RULE,),
       responses={200: "RuleDetail", **READ, 404: "Error", 409: "Error"})
def show_rule(rule: str) -> Response:
    from devupdate.rules import lifecycle

    found = lifecycle.resolve(_clean(rule, "rule"))
    return json_response({**_rule_json(found), "Versions": lifecycle.rule_versions(found.id)})


def _rule_action(name: str, summary: str) -> None:
    def view(rule: str) -> Response:
        from devupdate.rules import lifecycle

        changed = getattr(lifecycle, name)(_clean(rule, "rule"), principal().actor)
        return json_response(_rule_json(changed))
    view.__name__ = f"{name}_rule"
    route("POST", f"/rules/{{rule}}/{name}", role="admin", summary=summary, params=(RULE,),
          responses={200: "Rule", **CHANGE, 404: "Error", 409: "Error"})(view)


_rule_action("approve", "Approve the pending version (the approved one becomes the restore version)")
_rule_action("reset", "Reject the pending version; test devices go back to the approved one")
_rule_action("restore", "Roll back to the restore version (none: the fleet is offered nothing)")


@route("DELETE", "/rules/{rule}", role="admin", summary="Delete a rule (its images leave after the grace period)",
       params=(RULE,), responses={200: "RemovedRule", **CHANGE, 404: "Error", 409: "Error"})
def remove_rule(rule: str) -> Response:
    from devupdate.rules import lifecycle

    return json_response(lifecycle.remove(_clean(rule, "rule"), principal().actor))


# --- imports ------------------------------------------------------------------------------------

CAB_MEDIA_TYPES = ("application/vnd.ms-cab-compressed", "application/octet-stream")

def _upload_name() -> str:
    from devupdate.devices.logs import safe_name

    raw = query_text("filename", 255)
    if not raw:
        return "upload.cab"
    try:
        return safe_name(raw)
    except DevupdateError:
        return "upload.cab"


@route("GET", "/imports/limits", role="operator", summary="Upload limits: largest cab accepted, area usage",
       responses={200: "ImportLimits", **READ})
def import_limits() -> Response:
    from devupdate.content.usage import usage_rows

    rt = runtime()
    areas = [row for row in usage_rows(rt.store) if row["Area"] in ("incoming", "images")]
    return json_response({"MaxCabSize": rt.settings.max_cab_size, "Areas": areas})


@route("POST", "/imports", role="admin", summary="Import a .cab sent as the request body",
       params=(Param("filename", {"type": "string", "maxLength": 255, "pattern": NO_NUL},
                     "Name recorded for the upload (reduced to a safe base name)"),),
       body="cab",
       responses={201: "ImportResult", 200: "ImportResult", **CHANGE, 409: "Error", 413: "Error", 415: "Error",
                  507: "Error"})
def import_cab() -> Response:
    from devupdate.imports.upload import import_upload

    if (request.mimetype or "") not in ("", *CAB_MEDIA_TYPES):
        return error_response(415, "unsupported-media-type", "send the .cab itself as the request body "
                              "(Content-Type: application/octet-stream)")
    try:
        refuse_encoding(request.environ)
    except BodyError as exc:
        return error_response(415, "unsupported-encoding", exc.message)
    rt = runtime()
    result = import_upload(rt.store, rt.settings, request.stream, size=request.content_length,
                           file_name=_upload_name(), actor=principal().actor)
    return json_response(result.as_dict(), 201 if result.outcome == "imported" else 200)


# --- test devices -------------------------------------------------------------------------------

TEST_DEVICE = Param("name", {"type": "string", "maxLength": 200, "pattern": r"^[^\x00-\x1f/]{1,200}$",
                             "description": "1–200 characters, no control characters, no '/'"},
                    "Test device name", "path", True)


def only_keys(body: dict[str, Any], *allowed: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise DevupdateError(f"unknown field {unknown[0][:40]!r}; expected {', '.join(allowed)}", code="bad-body")


def _identifier(body: dict[str, Any]) -> dict[str, str | None]:
    return {"mac": body_text(body, "MACAddress"), "serial": body_text(body, "SerialNumber")}


@route("GET", "/test-devices", role="operator", summary="Registered test devices", params=(SITE,),
       responses={200: "TestDeviceList", **READ})
def list_test_devices() -> Response:
    from devupdate.rules import test_devices

    return json_response([test_devices.device_dict(d) for d in test_devices.list_devices(query_text("site"))])


@route("POST", "/test-devices", role="admin", summary="Register a test device", body="TestDeviceNew",
       responses={201: "TestDevice", **JSON_CHANGE, 409: "Error"})
def add_test_device() -> Response:
    from devupdate.rules import test_devices

    body = json_body()
    only_keys(body, "Name", "MACAddress", "SerialNumber", "Site")
    name = body_text(body, "Name", required=True)
    device = test_devices.add(name, **_identifier(body), site=body_text(body, "Site"), actor=principal().actor)
    return json_response(test_devices.device_dict(device), 201)


@route("PUT", "/test-devices/{name}", role="admin", summary="Change a test device's MAC address or serial",
       params=(TEST_DEVICE, SITE), body="TestDeviceIdentifier",
       responses={200: "TestDevice", **JSON_CHANGE, 404: "Error", 409: "Error"})
def set_test_device(name: str) -> Response:
    from devupdate.rules import test_devices

    body = json_body()
    only_keys(body, "MACAddress", "SerialNumber")
    device = test_devices.set_identifier(_clean(name, "name"), **_identifier(body), site=query_text("site"),
                                         actor=principal().actor)
    return json_response(test_devices.device_dict(device))


@route("DELETE", "/test-devices/{name}", role="admin", summary="Unregister a test device", params=(TEST_DEVICE, SITE),
       responses={200: "TestDevice", **CHANGE, 404: "Error"})
def remove_test_device(name: str) -> Response:
    from devupdate.rules import test_devices

    return json_response(test_devices.remove(_clean(name, "name"), site=query_text("site"), actor=principal().actor))


# --- configuration ------------------------------------------------------------------------------

# The document has one operation per setting (its value schema differs); the route takes any case.
CONFIG_KEY = Param("key", {"type": "string", "maxLength": 100}, "Setting name (case-insensitive)", "path", True)


@route("GET", "/configuration", role="operator", summary="The device-update configuration in force",
       params=(SITE,), responses={200: "Configuration", **READ})
def show_configuration() -> Response:
    from devupdate import configuration

    return json_response(configuration.show(query_text("site")))


@route("PUT", "/configuration/{key}", role="admin", summary="Change one setting (globally or for a site)",
       params=(CONFIG_KEY, SITE), body="ConfigValue", responses={200: "ConfigChange", **JSON_CHANGE})
def set_configuration(key: str) -> Response:
    from devupdate import configuration
    from devupdate.admin.openapi import config_value_schema

    name = configuration.canonical_key(key)
    # the body's shape was checked against ConfigValue (bad-body); what is left is the value itself
    validation.check(config_value_schema(name), json_body(), name, code="bad-value")
    value = json_body()["Value"]
    if value is None:
        text = "none"
    elif isinstance(value, list):
        text = " ".join(value)
    elif isinstance(value, float):  # 2048.0 is the integer 2048 in JSON
        text = str(int(value))
    else:
        text = str(value)
    change = configuration.set_value(name, text, site=query_text("site"), actor=principal().actor,
                                     quotas=runtime().settings.quotas)
    return json_response(change)


# --- devices (inventory and compliance) ---------------------------------------------------------

@route("GET", "/devices", role="operator", summary="Known devices with their compliance status",
       params=(Param("model", {"type": "string", "maxLength": 100, "pattern": NO_NUL},
                     "Only this model (case-insensitive)"),
               Param("outdated", {"type": "boolean"}, "Only devices running something other than an approved "
                     "version"), LIMIT, OFFSET),
       responses={200: "DeviceList", **READ})
def list_devices() -> Response:
    from devupdate.devices.compliance import list_devices as service_list

    rows = service_list(model=query_text("model", 100), outdated=query_bool("outdated"),
                        limit=query_int("limit", 50, 1, MAX_PAGE), offset=query_int("offset", 0, 0, MAX_OFFSET))
    return json_response(rows)


# --- audit trail --------------------------------------------------------------------------------

@route("GET", "/audit", role="operator", summary="The admin audit trail, newest first",
       params=(LIMIT, OFFSET,
               Param("action", {"type": "string", "maxLength": 50, "pattern": NO_NUL},
                     "Action prefix, e.g. 'rule.' or 'import'"),
               Param("actor", {"type": "string", "maxLength": 100, "pattern": NO_NUL},
                     "Only this actor, e.g. token:uploader"),
               Param("target", {"type": "string", "maxLength": 100, "pattern": NO_NUL},
                     "Target contains this text")),
       responses={200: "AuditPage", **READ})
def list_audit() -> Response:
    from devupdate.audit.trail import list_events

    limit, offset = query_int("limit", 50, 1, MAX_PAGE), query_int("offset", 0, 0, MAX_OFFSET)
    events = list_events(limit=limit + 1, offset=offset, action=query_text("action", 50),
                         actor=query_text("actor", 100), target=query_text("target", 100))
    more = len(events) > limit
    return json_response({"Events": events[:limit], "Limit": limit, "Offset": offset,
                          "NextOffset": offset + limit if more else None})


# --- device logs --------------------------------------------------------------------------------

def LOG_PART(length: int) -> dict[str, Any]:  # noqa: N802 - reads as a constant
    """A stored log's type, device id or file name: what the upload endpoint writes (safe names)."""
    return {"type": "string", "maxLength": length, "pattern": rf"^[A-Za-z0-9._-]{{1,{length}}}$",
            "description": "letters, digits, '.', '_' or '-'"}


@route("GET", "/logs", role="operator", summary="Device logs uploaded by phones",
       params=(Param("type", {"type": "string", "maxLength": 40, "pattern": NO_NUL}, "Only this log type, e.g. Watson"),
               Param("device", {"type": "string", "maxLength": 80, "pattern": NO_NUL},
                     "Only this device: MAC or serial")),
       responses={200: "LogFileList", **READ})
def list_logs() -> Response:
    from devupdate.devices.logs import list_logs as service_list

    files = service_list(runtime().store, log_type=query_text("type", 40), device=query_text("device", 80))
    return json_response([item.as_dict() for item in files])


@route("GET", "/logs/{type}/{device}/{name}", role="operator", summary="Download one device log",
       params=(Param("type", LOG_PART(40), "Log type", "path", True),
               Param("device", LOG_PART(80), "Device id (MAC or SN-<serial>)", "path", True),
               Param("name", LOG_PART(200), "File name", "path", True)),
       responses={200: "", **READ, 404: "Error"})
def download_log(type: str, device: str, name: str) -> Response:  # noqa: A002 - the path parameter's name
    from devupdate.devices.logs import CLIENT_AREA
    from devupdate.devices.logs import list_logs as service_list

    store = runtime().store
    for item in service_list(store, log_type=_clean(type, "type"), device=_clean(device, "device")):
        if item.name == name:
            try:
                handle = store.open_named(CLIENT_AREA, item.relpath)
            except Exception:  # noqa: BLE001 - removed by cleanup since it was listed
                break
            response = Response(_file_chunks(handle), mimetype="application/octet-stream",
                                direct_passthrough=True)
            response.headers["Content-Length"] = str(item.size)
            response.headers["Content-Disposition"] = f'attachment; filename="{item.name}"'
            response.headers["X-Content-Type-Options"] = "nosniff"
            return response
    return error_response(404, "no-such-log", f"no log {type}/{device}/{name}; see GET {PREFIX}/logs")


def _file_chunks(handle):
    with handle:
        while chunk := handle.read(1 << 16):
            yield chunk


# --- filestore ----------------------------------------------------------------------------------

@route("GET", "/filestore/usage", role="operator", summary="Bytes used per filestore area against its quota",
       responses={200: "UsageList", **READ})
def filestore_usage() -> Response:
    from devupdate.content.usage import usage_rows

    return json_response(usage_rows(runtime().store))


# --- the document and unknown paths -------------------------------------------------------------

@route("GET", "/openapi.json", role=None, summary="This API's OpenAPI 3.1 document", responses={200: ""})
def openapi_document() -> Response:
    from devupdate.admin.openapi import document

    return json_response(document(runtime().settings.quotas))


_JSON_ENDPOINTS = {f"{bp.name}.{view}" for view in ("add_test_device", "set_test_device", "set_configuration")}
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _allowed_methods(path: str) -> list[str]:
    """The methods the API's own routes accept on ``path`` (not the catch-all below)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in _METHODS:
        with contextlib.suppress(HTTPException):
            endpoint, _ = adapter.match(path, method=method)
            if endpoint != f"{bp.name}.unknown":
                allowed.append(method)
    if "GET" in allowed:
        allowed.append("HEAD")
    return allowed + ["OPTIONS"] if allowed else []


@bp.route("/", defaults={"rest": ""}, methods=_METHODS)
@bp.route("/<path:rest>", methods=_METHODS)
def unknown(rest: str) -> Response:
    """Paths and methods the API does not have, as JSON (``404``/``405``) instead of HTML."""
    allowed = _allowed_methods(request.path)
    if allowed:
        raise MethodNotAllowed(valid_methods=allowed)
    raise NotFound(f"no API route {request.method} {request.path}; the routes are in {PREFIX}/openapi.json")


def install(app) -> None:
    """Register the API on the app (called from ``create_app``)."""
    app.register_blueprint(bp)
