"""WSUS content (spec/wsus.md §2.4, H1, H3): ``GET``/``HEAD /Content/<XX>/<SHA1HEX>.<ext>``.

Windows clients (Delivery Optimization) and downstream servers build this URL from a file's SHA-1
and ``FileName``, so its layout is fixed: ``XX`` the last two hex digits of the SHA-1, then the
40-digit SHA-1 and the extension of the file name, all in any case (the path prefix too: IIS
matches case-insensitively). Any stored object an owner names (:mod:`devupdate.content.names`)
is served — phone images by their ``.nbt`` / ``.cat`` SHA-1 as well.

- Unknown digest, ``XX`` not matching the digest, a wrong or missing extension → ``404``; so is a
  path that only matches once a percent-encoded ``/`` or ``\\`` is decoded.
- ``ETag`` is the quoted lower-case SHA-1 (strong), ``Last-Modified`` the time the object was
  stored, ``Cache-Control: public, max-age=86400``; never a ``Content-Encoding``.
- Ranges, ``If-Range``, ``If-None-Match`` and the other conditionals are the web kit's, as for
  phone downloads (:mod:`devupdate.web.filesend`); bodies go out with ``sendfile`` from the event
  loop, so memory per request does not grow with the file.
- ``/SelfUpdate/…`` → ``404`` (H3). Refusals are plain text.
- Every ``/Content`` answer is counted by status, with the file bytes it sends
  (:func:`devupdate.metrics.content_answered`).

One hook in front of routing, like the SOAP edge, because the paths match in any case.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from typing import Any

import peewee
from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.http import http_date
from werkzeug.wrappers import Response as BaseResponse

from devupdate import metrics
from devupdate.content import names
from devupdate.content.areas import IMAGES
from devupdate.web.byteranges import precondition
from devupdate.web.filesend import file_answer

log = logging.getLogger("devupdate.wsus.content")
bp = Blueprint("wsus_content", __name__)

_CONTENT = re.compile(r"/content/([0-9a-f]{2})/([0-9a-f]{40})(?:\.([^/]*))?", re.IGNORECASE)
#: "/" or "\" percent-encoded in the path as sent: the decoded path would be split differently by a
#: proxy in front, and no client builds such a URL
_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c)", re.IGNORECASE)
CACHE_CONTROL = "public, max-age=86400"


def install(app: Flask, runtime: Any) -> None:
    app.register_blueprint(bp)


def _plain(status: int, message: str, **headers: str) -> Response:
    response = Response(message.rstrip("\n") + "\n", status=status, content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _not_found() -> Response:
    return _plain(404, "404 Not Found: no stored file has this SHA-1 and extension "
                       "(the URL is /Content/<last two hex digits>/<SHA-1>.<extension of the file name>)")


def _validators(response: BaseResponse, item: names.NamedObject, modified: int) -> BaseResponse:
    headers = response.headers
    headers["ETag"] = f'"{item.sha1}"'
    headers["Last-Modified"] = http_date(dt.datetime.fromtimestamp(modified, dt.UTC))
    headers["Accept-Ranges"] = "bytes"
    headers["Cache-Control"] = CACHE_CONTROL
    headers["X-Content-Type-Options"] = "nosniff"
    return response


def _is_under(lowered: str, prefix: str) -> bool:
    return lowered == prefix or lowered.startswith(prefix + "/")


@bp.before_app_request
def _content_request() -> Any:
    lowered = request.path.lower()
    if _is_under(lowered, "/selfupdate"):
        return _plain(404, "404 Not Found: this server offers no client self-update (only Windows 8.1 and "
                           "older ask for it, and its files are Microsoft's own)")
    if not _is_under(lowered, "/content"):
        return None
    response = _content()
    sent = (response.content_length or 0) if request.method == "GET" and response.status_code in (200, 206) else 0
    metrics.content_answered(response.status_code, sent)
    return response


def _content() -> BaseResponse:
    if request.method not in ("GET", "HEAD"):
        return _plain(405, f"405 Method Not Allowed: content is read with GET or HEAD, not {request.method}",
                      Allow="GET, HEAD")
    match = _CONTENT.fullmatch(request.path)
    sent_path = str(request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or "").partition("?")[0]
    if match is None or match.group(1).lower() != match.group(2)[-2:].lower() or _ENCODED_SEPARATOR.search(sent_path):
        return _not_found()
    try:
        item = names.find(match.group(2), match.group(3) or "")
    except peewee.DatabaseError:
        log.warning("content %s: database unavailable", request.path, exc_info=True)
        return _plain(503, "503 Service Unavailable: the database is unavailable; retry shortly", Retry_After="10")
    if item is None:
        return _not_found()
    return _send(item)


def _send(item: names.NamedObject) -> BaseResponse:
    modified = int(item.stored_at.replace(tzinfo=dt.UTC).timestamp())
    status = precondition(request.headers, item.sha1, modified)
    if status is not None:
        return _validators(Response(status=status), item, modified)
    store = current_app.extensions["devupdate"].store
    try:
        file = store.open(IMAGES, item.sha256)
    except Exception:  # ObjectNotFound, UnsafePath: a row without its file
        log.warning("content %s: object %s is missing from the filestore", request.path, item.sha256)
        return _not_found()
    try:
        size = os.fstat(file.fileno()).st_size
    except BaseException:
        file.close()
        raise
    if size != item.size:
        file.close()
        log.error("content %s: object %s has %d bytes, expected %d; run 'devupdate filestore verify'",
                  request.path, item.sha256, size, item.size)
        return _plain(503, "503 Service Unavailable: the stored file is damaged; the administrator has been told")

    def not_satisfiable(total: int) -> Response:
        return _plain(416, f"416 Range Not Satisfiable: no requested range lies within the {total} bytes",
                      Content_Range=f"bytes */{total}")

    response = file_answer(file, size, method=request.method, headers=request.headers, environ=request.environ,
                           etag=item.sha1, modified=modified, not_satisfiable=not_satisfiable)
    if response.status_code == 416:
        response.headers["Accept-Ranges"] = "bytes"
        return response
    return _validators(response, item, modified)
