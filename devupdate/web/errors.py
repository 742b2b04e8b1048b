"""Refusals made before (or around) the application, in the vocabulary of the path that was asked.

The server itself refuses some requests — a request line or header section too long, a broken
chunked body, a client too slow or with too many connections. A phone must get the device
protocol's ``<Error><Code>…</Code><Message>…</Message></Error>`` body whatever layer said no;
the JSON API gets its JSON error, everything else plain text.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from xml.sax.saxutils import escape

#: device paths, lower-case (they are matched case-insensitively, device-protocol.md §2)
DEVICE_PREFIXES = ("/requesthandler/", "/requesthandlerext/", "/requesthandler?", "/requesthandlerext?",
                   "/deviceupdatefiles_int/", "/deviceupdatefiles_ext/")
DEVICE_EXACT = ("/requesthandler", "/requesthandlerext")

REASONS = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           411: "Length Required", 413: "Content Too Large", 414: "URI Too Long", 417: "Expectation Failed",
           429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable"}


#: Characters XML 1.0 cannot carry even escaped (C0 controls but tab/LF/CR, U+FFFE, U+FFFF, surrogates).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def render_error(code: str, message: str) -> bytes:
    """The device protocol's error body (device-protocol.md §5), whichever layer refuses. Messages
    quote what the device sent (the GET form can carry any character), so what XML cannot hold
    becomes U+FFFD: the body always parses."""
    code, message = _NOT_XML.sub("\ufffd", code), _NOT_XML.sub("\ufffd", message)
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>\n").encode()


#: name → listener(path, client address, status, code), told of every refusal the server makes
#: itself, so a feature can record it (the update check's audit log has a row for every check)
_listeners: dict[str, Callable[[str, str, int, str], None]] = {}


def on_refusal(name: str, listener: Callable[[str, str, int, str], None]) -> None:
    _listeners[name] = listener


def refused(path: str, address: str, status: int, code: str) -> None:
    for listener in list(_listeners.values()):
        try:
            listener(path, address, status, code)
        except Exception:  # noqa: BLE001 - a listener's failure must not stop the refusal
            logging.getLogger("devupdate.web").exception("refusal listener failed")


def is_device_path(path: str) -> bool:
    lowered = path.lower()
    return lowered.startswith(DEVICE_PREFIXES) or lowered.split("?", 1)[0].rstrip("/") in DEVICE_EXACT


def path_of(target: bytes | str) -> str:
    """The path of a request target (origin or absolute form), as far as it can be told."""
    text = target.decode("latin-1") if isinstance(target, bytes) else target
    if "://" in text[:16]:
        text = "/" + text.split("://", 1)[1].partition("/")[2]
    return text.split("?", 1)[0].split("#", 1)[0]


def error_body(path: str, status: int, code: str, message: str) -> tuple[str, bytes]:
    """(content type, body) for a refusal of a request to ``path``; a path that could not be read
    (a request line too long or garbled) gets the device form: phones are who this server is for."""
    if not path or is_device_path(path):
        return "text/xml; charset=utf-8", render_error(code, message)
    if path.startswith("/api/"):
        return "application/json", json.dumps({"error": {"code": code, "message": message}}).encode()
    return "text/plain; charset=utf-8", f"{status} {REASONS.get(status, 'Error')}: {message}\n".encode()


#: name → speaker(path, status, code, message, header) → (status, content type, body), or ``None``
#: when the path is not the feature's. A feature whose protocol has its own error form (the SOAP
#: services' faults) answers the server's refusals of its paths in it; ``header`` looks up a
#: header of the refused request (``None`` when absent or when the head could not be read).
Speaker = Callable[[str, int, str, str, Callable[[str], str | None]], tuple[int, str, bytes] | None]
_speakers: dict[str, Speaker] = {}


def register_vocabulary(name: str, speaker: Speaker) -> None:
    """``name`` (the feature) → its speaker; registering again replaces it (a new app)."""
    _speakers[name] = speaker


def _no_header(_name: str) -> str | None:
    return None


def refusal(path: str, status: int, code: str, message: str, *, close: bool = True,
            headers: tuple[tuple[str, str], ...] = (), header: Callable[[str], str | None] = _no_header) -> bytes:
    """A whole HTTP/1.1 response refusing a request to ``path``."""
    for speaker in list(_speakers.values()):
        spoken = speaker(path, status, code, message, header)
        if spoken is not None:
            status, content_type, body = spoken
            return response(status, content_type, body, headers=headers, close=close, cache="private")
    content_type, body = error_body(path, status, code, message)
    return response(status, content_type, body, headers=headers, close=close)


def response(status: int, content_type: str, body: bytes, *, headers: tuple[tuple[str, str], ...] = (),
             close: bool = True, cache: str = "no-store") -> bytes:
    """A whole HTTP/1.1 response, as the server's loop sends it without the application."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", f"Cache-Control: {cache}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def install(app) -> None:
    """Flask's own refusals (404 and 405 from routing, 413, a ``BadRequest`` from a body the server
    could not decode) on device paths: the device XML error body instead of Flask's HTML page."""
    import re

    from flask import Response, request
    from werkzeug.exceptions import HTTPException

    def device_refusal(exc: HTTPException):
        if not is_device_path(request.path):
            return exc
        code = getattr(exc, "error_code", None) or re.sub(r"[^A-Za-z0-9]", "", (exc.name or "Error").title())
        content_type, body = error_body(request.path, exc.code or 400, code, exc.description or exc.name)
        response = Response(body, status=exc.code or 400, content_type=content_type)
        response.headers["Cache-Control"] = "no-store"
        for name, value in exc.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response

    app.register_error_handler(HTTPException, device_refusal)
