"""The device API's JSON (``/api/device/v1``, the pull model): parsing checks and status reports into
plain values, rendering answers. Pure: no Flask, no database.

The request's identity goes through the very validation the Lync XML check uses
(:func:`devupdate.devices.request.build_request`), and the answer is rendered from
:func:`devupdate.selection.targets`, so both protocols say the same about what a device should have.
Hostile input is refused with a reason: bodies over 64 KiB, nesting deeper than the shape, duplicate
keys, NaN/Infinity, a value of the wrong type, control characters (NUL included) and lone surrogates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from devupdate.devices.request import MAX_REQUEST_BYTES, RequestError, build_request, validate_module
from devupdate.devices.response import file_url
from devupdate.selection import DeviceRequest, Module, Target

CONTENT_TYPE = "application/json"
NEXT_CHECK_SECONDS = 86_400  # phones check every 24 hours (device-protocol.md §1)
MAX_DEPTH = 3  # {"installed": [{...}]}: nothing a device sends nests deeper
STATES = ("downloading", "downloaded", "installed", "failed")
#: a later report of one device, package and version replaces an earlier one only at the same rank or
#: higher, so a resent or late "downloading" never undoes "installed"; "failed" and "installed" replace
#: each other (a device may fail after installing, or install on a retry)
RANK = {"downloading": 1, "downloaded": 2, "installed": 3, "failed": 3}
MAX_CODE = 64
MAX_MESSAGE = 1024

_DEVICE_FIELDS = {"type": "devicetype", "brand": "vendor", "model": "model", "revision": "revision",
                  "locale": "locale", "mac": "macaddress", "serial": "serialnumber", "user": "userid"}


def _bad(code: str, message: str, status: int = 400) -> RequestError:
    return RequestError(code, message, status)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _bad("DuplicateKey", f"key {key[:40]!r} appears twice in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise _bad("BadJson", f"{name} is not a JSON number")


def _depth(value: Any, level: int = 1) -> None:
    if level > MAX_DEPTH:
        raise _bad("TooDeep", f"JSON nested deeper than {MAX_DEPTH} levels; see the device API's OpenAPI document")
    if isinstance(value, dict):
        for item in value.values():
            if isinstance(item, (dict, list)):
                _depth(item, level + 1)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                _depth(item, level + 1)


def load(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a :class:`RequestError` saying what is wrong with it."""
    if len(body) > MAX_REQUEST_BYTES:
        raise _bad("TooLarge", f"request body over {MAX_REQUEST_BYTES} bytes", 413)
    if not body.strip():
        raise _bad("EmptyRequest", "empty request body; POST a JSON object")
    try:
        text = body.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise _bad("BadEncoding", "the body must be UTF-8") from None
    except RecursionError:
        raise _bad("TooDeep", f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise _bad("BadJson", f"not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(value, dict):
        raise _bad("BadJson", "the body must be a JSON object")
    _depth(value)
    return value


def _text(value: Any, label: str, *, limit: int = 256) -> str:
    """A JSON string (``null`` → ''), printable and of at most ``limit`` characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad("BadType", f"{label} must be a string, not {type(value).__name__.replace('dict', 'object')}")
    if len(value) > limit:
        raise _bad("BadField", f"{label} is longer than {limit} characters")
    if not value.isprintable() and any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF or ord(c) == 0x7F
                                       for c in value):
        raise _bad("BadField", f"{label} has control characters or lone surrogates")
    return value.strip()


def _object(value: Any, label: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad("BadType", f"{label} must be an object")
    return value


def device_request(document: dict[str, Any]) -> DeviceRequest:
    """``{"device": {...}, "installed": [{"name", "version"}]}`` → the request the selection takes."""
    device = _object(document.get("device"), "device")
    fields = {name: _text(device.get(key), f"device.{key}") for key, name in _DEVICE_FIELDS.items()}
    installed = document.get("installed", [])
    if installed is None:
        installed = []
    if not isinstance(installed, list):
        raise _bad("BadType", "installed must be an array")
    if len(installed) > 64:
        raise _bad("TooManyModules", "at most 64 installed packages per request")
    modules = []
    for index, item in enumerate(installed):
        entry = _object(item, f"installed[{index}]")
        modules.append(Module(_text(entry.get("name"), f"installed[{index}].name"),
                              _text(entry.get("version"), f"installed[{index}].version")))
    return build_request({k: v for k, v in fields.items() if v}, modules)


@dataclass(frozen=True)
class StatusReport:
    """One status report, validated: the package is named as the check answered it."""

    request: DeviceRequest
    package: str
    version: str
    state: str
    code: str
    message: str


def status_report(document: dict[str, Any]) -> StatusReport:
    """``{"device", "package", "version", "state", "code", "message"}`` (code: a string or an integer)."""
    request = device_request({"device": document.get("device")})
    package = _text(document.get("package"), "package", limit=100)
    if not package:
        raise _bad("MissingField", "package is required: the name the check answered")
    version = _text(document.get("version"), "version", limit=64)
    validate_module(Module(package, version))  # the rules of an installed module's name and version
    if not version:
        raise _bad("MissingField", "version is required")
    state = document.get("state")
    if state not in STATES:
        raise _bad("BadState", f"state must be one of {', '.join(STATES)}")
    code = document.get("code")
    if isinstance(code, bool) or not (code is None or isinstance(code, (str, int))):
        raise _bad("BadType", "code must be a string or an integer")
    if isinstance(code, int) and not -(2**63) <= code < 2**63:
        raise _bad("BadField", "code is out of the 64-bit range")
    code_text = _text(str(code) if isinstance(code, int) else code, "code", limit=MAX_CODE)
    message = _text(document.get("message"), "message", limit=MAX_MESSAGE)
    return StatusReport(request, package, version, state, code_text, message)


def package_of(targets: list[Target], name: str) -> Target | None:
    """The matching rule a reported package name means (the UpdateType, case-insensitive)."""
    lowered = name.lower()
    for target in targets:
        if target.rule.update_type == lowered:
            return target
    return None


def render_check(targets: list[Target], base_url: str, side: str) -> bytes:
    """Every package the device should have, each with its files; a status report is asked for each
    package the device does not run yet."""
    packages = []
    reports = []
    for target in targets:
        version = target.version
        files = [{"name": f.file_name, "url": file_url(base_url, side, f.path), "size": f.size, "sha256": f.sha256,
                  "signature": f.signature_file_name, "timestamp": f.timestamp} for f in version.files]
        name = target.rule.name or target.rule.update_type
        packages.append({"name": name, "rule": target.rule.rule_id, "version": version.version, "optional": False,
                         "installed": target.installed, "current": target.current, "files": files})
        if not target.current:
            reports.append({"type": "status", "package": name, "version": version.version})
    return json.dumps({"packages": packages, "reports": reports, "next_check_seconds": NEXT_CHECK_SECONDS},
                      separators=(",", ":")).encode()


def render_status(report: StatusReport) -> bytes:
    return json.dumps({"accepted": True, "package": report.package, "version": report.version,
                       "state": report.state}, separators=(",", ":")).encode()


def render_error(code: str, message: str) -> bytes:
    """The ``/api/`` error form (as the server's own refusals of ``/api/`` paths)."""
    return json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=True).encode()
