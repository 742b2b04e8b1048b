"""The machinery of the JSON API under ``/api/v1``: the route table, authentication and roles, the
request checks and the error bodies. Every feature's views (``views_*.py``) declare their routes
with :func:`route`; the OpenAPI document (``openapi.py``) is generated from the same table.

- Authentication: ``Authorization: Bearer <secret>`` of a token from ``devupdate tokens create``;
  ``operator`` tokens may read, ``admin`` tokens may also change. Missing or unknown → ``401``,
  an operator on a change → ``403``. Changes are recorded in the audit trail as ``token:<name>``.
- Errors are ``{"error": {"code": …, "message": …}}`` with the status of the refusal
  (``DevupdateError.status``): ``400`` bad input (malformed JSON included), ``404``, ``409``
  precondition, ``413`` too large, ``507`` over quota.
- Parameters and JSON bodies are checked against the route's schemas (the document's) before the
  view runs, so the API refuses exactly what the document refuses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from devupdate import numbers
from devupdate.admin import validation
from devupdate.admin.schemas import SCHEMAS, SITE_SCHEMA
from devupdate.admin.tokens import authenticate
from devupdate.errors import DevupdateError, TooLarge
from devupdate.web.bodies import TOO_LARGE, BodyError, read_all, refuse_encoding

log = logging.getLogger("devupdate.api")

PREFIX = "/api/v1"
MAX_JSON_BODY = 1 << 20
MAX_PAGE = 500
MAX_OFFSET = numbers.MAX_OFFSET

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
    body_optional: bool = False  # no body (or an empty one) is the empty object: every field has a default

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
_JSON_ENDPOINTS: set[str] = set()  # routes that take a JSON body: read as JSON whatever the Content-Type


def route(method: str, path: str, *, role: str | None, summary: str, params: tuple[Param, ...] = (),
          body: str | None = None, body_optional: bool = False, responses: dict[int, str | None]) -> Callable:
    """Register a view on the blueprint and in ``ROUTES`` (the OpenAPI document's source)."""
    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        entry = Route(method, path, view, role, summary, params, body, responses, body_optional)
        endpoint = f"{bp.name}.{view.__name__}"
        ROUTES.append(entry)
        _ROUTE_OF[endpoint] = entry
        _ROLE_OF[endpoint] = role
        _QUERY_OF[endpoint] = frozenset(p.name for p in params if p.where == "query")
        if body and body != "cab":
            _JSON_ENDPOINTS.add(endpoint)
        rule = re.sub(r"\{(\w+)\}", r"<\1>", path)
        bp.add_url_rule(rule, view.__name__, view, methods=[method], strict_slashes=False)
        return view
    return decorate


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


def clean(text: str, what: str) -> str:
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
    return clean(value, f"query parameter {name!r}")


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
        clean(value, "a JSON string")
    elif isinstance(value, dict):
        for key, item in value.items():
            clean(key, "a JSON key")
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
    """The parsed JSON body, ``None`` when there is none (``g.json_body_absent``: not even a JSON
    ``null``); malformed → 400, over 1 MiB → 413."""
    try:
        refuse_encoding(request.environ)
        data = read_all(request.stream, limit=MAX_JSON_BODY, announced=request.content_length)
    except BodyError as exc:
        if exc.reason == TOO_LARGE:
            raise TooLarge(f"JSON bodies are limited to {MAX_JSON_BODY} bytes", code="body-too-large") from None
        raise DevupdateError(exc.message, code=_BODY_CODES[exc.reason], status=exc.status) from None
    g.json_body_absent = not data.strip()
    if g.json_body_absent:
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


@overload
def body_text(body: dict[str, Any], key: str, *, required: Literal[True], max_length: int = 300) -> str: ...
@overload
def body_text(body: dict[str, Any], key: str, *, required: bool = False, max_length: int = 300) -> str | None: ...
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


def only_keys(body: dict[str, Any], *allowed: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise DevupdateError(f"unknown field {unknown[0][:40]!r}; expected {', '.join(allowed)}", code="bad-body")


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
        raw: str | None
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
        if entry.body_optional and g.get("json_body_absent", True):  # no body at all, not a JSON null
            g.json_body = {}
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


# --- unknown paths and methods ------------------------------------------------------------------

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_FALLBACK = f"{bp.name}.unknown"


def _allowed_methods(path: str) -> list[str]:
    """The methods the API's own routes accept on ``path`` (not the catch-all below)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in _METHODS:
        with contextlib.suppress(HTTPException):
            endpoint, _ = adapter.match(path, method=method)
            if endpoint != _FALLBACK:
                allowed.append(method)
    if "GET" in allowed:
        allowed.append("HEAD")
    return allowed + ["OPTIONS"] if allowed else []


def unknown(rest: str) -> Response:
    """Paths and methods the API does not have, as JSON (``404``/``405``) instead of HTML."""
    allowed = _allowed_methods(request.path)
    if allowed:
        raise MethodNotAllowed(valid_methods=allowed)
    raise NotFound(f"no API route {request.method} {request.path}; the routes are in {PREFIX}/openapi.json")


def add_fallback() -> None:
    """Register :func:`unknown` for every other path, once, after every route (``api.py`` does)."""
    bp.add_url_rule("/<path:rest>", "unknown", unknown, methods=_METHODS)
    bp.add_url_rule("/", "unknown", unknown, defaults={"rest": ""}, methods=_METHODS)
