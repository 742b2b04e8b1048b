"""Image downloads (device-protocol.md §2): ``GET``/``HEAD /DeviceUpdateFiles_Int|_Ext/<path>``.

``<path>`` is ``<DeviceType>/<Brand>/<Model>/<Revision>/<Locale>/<Version>/<FileName>``, looked up
case-insensitively in the worker's selection snapshot (no database query per download); the bytes
come from the content-addressed ``images`` area, so no request path ever becomes a file path.

- ``application/octet-stream``; ``ETag`` is the quoted SHA-256, ``Last-Modified`` the import time.
- Conditionals in RFC 9110 order: ``If-Match`` / ``If-Unmodified-Since`` → ``412``,
  ``If-None-Match`` / ``If-Modified-Since`` → ``304``.
- ``Range`` (GET only, honouring ``If-Range``): one range → ``206`` with ``Content-Range``;
  several → ``206 multipart/byteranges``; none satisfiable → ``416`` with ``bytes */<size>``.
  More than ``MAX_RANGES`` ranges, ranges adding up to more than the file, or a malformed header
  are ignored (full ``200``). Ranges and conditionals are the web kit's (``web/byteranges.py``).
- Full and single-range bodies go out through ``wsgi.file_wrapper`` with an exact
  ``Content-Length``, so gunicorn sends them with ``sendfile(2)``.
- ``DEVUPDATE_ACCEL_REDIRECT_PREFIX`` set (e.g. ``/_devupdate_images``): after authorization and
  the conditionals, the answer is an empty ``X-Accel-Redirect: <prefix>/<sha[:2]>/<sha256>`` and
  nginx sends the file itself, ranges included — see ``docs/nginx.md``.
- Unknown paths and anything that looks like traversal (``..``, ``.``, empty components, ``\\``,
  NUL and other control characters, or ``%2F`` / ``%5C`` / ``%00`` in the raw request URI) → ``404``.
- Refusals (404, 416, 503) carry the device protocol's XML error body, like every device path.
- A GET of an image a staged rollout rolls out is counted per client for the rollout watch
  (``devices/image_fetches``): one dict update, no query.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re

from flask import Blueprint, Response, current_app, request
from werkzeug.http import http_date
from werkzeug.wrappers import Response as BaseResponse

from devupdate import metrics
from devupdate.content.areas import IMAGES
from devupdate.devices.access import guard_request
from devupdate.devices.check import FETCHES
from devupdate.selection import DownloadEntry
from devupdate.web.byteranges import precondition
from devupdate.web.errors import render_error
from devupdate.web.filesend import file_answer

log = logging.getLogger("devupdate.downloads")

bp = Blueprint("device_downloads", __name__)

_RAW_FORBIDDEN = ("%2f", "%5c", "%00")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _refuse(status: int, code: str, message: str, **headers: str) -> Response:
    """A refusal in the device protocol's XML error body, like every refusal on a device path."""
    response = Response(render_error(code, message), status=status, content_type="text/xml; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _not_found() -> Response:
    return _refuse(404, "NotFound", "no such file; the download URL comes from the update check's answer")


def _suspicious(subpath: str, raw_uri: str) -> bool:
    """True for paths no imported file can have; they get a plain 404, never a lookup."""
    if "\\" in subpath or _CONTROL.search(subpath):
        return True
    if any(part in ("", ".", "..") for part in subpath.split("/")):
        return True
    raw_path = raw_uri.split("?", 1)[0].lower()
    return any(token in raw_path for token in _RAW_FORBIDDEN)


def _not_satisfiable(size: int) -> Response:
    response = _refuse(416, "RangeNotSatisfiable", f"no requested range lies within the {size} bytes",
                       Content_Range=f"bytes */{size}")
    response.headers["Accept-Ranges"] = "bytes"
    return response


# --- the view ------------------------------------------------------------------------------------

def _common_headers(response: BaseResponse, entry: DownloadEntry, modified: int, side: str) -> BaseResponse:
    headers = response.headers
    headers["ETag"] = f'"{entry.sha256}"'
    headers["Last-Modified"] = http_date(dt.datetime.fromtimestamp(modified, dt.UTC))
    headers["Accept-Ranges"] = "bytes"
    headers["Cache-Control"] = ("public" if side == "Int" else "private") + ", max-age=300"
    headers["X-Content-Type-Options"] = "nosniff"
    return response


def _fetched(entry: DownloadEntry, status: int, client: tuple[str, str]) -> None:
    """A GET of an image an active rollout rolls out, answered with its bytes (or a range of them),
    is counted for the rollout watch: who asked (``devices/image_fetches``)."""
    if entry.rolled_out and request.method == "GET" and status in (200, 206):
        recorder = current_app.extensions.get(FETCHES)
        if recorder is not None:
            recorder.observe(entry.rule_id, entry.version, *client)


def serve(side: str, subpath: str) -> BaseResponse:
    guard = guard_request(side)
    if isinstance(guard, Response):
        return guard
    environ = request.environ
    if _suspicious(subpath, environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""):
        return _not_found()
    entry = current_app.extensions["snapshots"].current.downloads.get(subpath.lower())
    if entry is None:
        return _not_found()
    modified = int(entry.imported_at)

    status = precondition(request.headers, entry.sha256, modified)
    if status is not None:
        return _common_headers(Response(status=status), entry, modified, side)

    runtime = current_app.extensions["devupdate"]
    prefix = runtime.settings.accel_redirect_prefix
    if prefix:
        response: BaseResponse = Response(b"", status=200, mimetype="application/octet-stream")
        response.headers["X-Accel-Redirect"] = f"/{prefix.strip('/')}/{entry.sha256[:2]}/{entry.sha256}"
        if request.method == "GET":
            _count(side, entry, entry.size, whole=not request.headers.get("Range"))
        _fetched(entry, 200, guard)
        return _common_headers(response, entry, modified, side)

    try:
        file = runtime.store.open(IMAGES, entry.sha256)
    except Exception:  # ObjectNotFound, UnsafePath: the snapshot names something the store lacks
        log.warning("download %s: image %s is missing from the filestore", subpath, entry.sha256)
        return _not_found()
    try:
        size = os.fstat(file.fileno()).st_size
        if size != entry.size:
            log.error("download %s: image %s has %d bytes, expected %d; run 'devupdate filestore verify'",
                      subpath, entry.sha256, size, entry.size)
            file.close()
            return _refuse(503, "ImageDamaged", "image damaged in the store; the administrator has been told")
        response = file_answer(file, size, method=request.method, headers=request.headers, environ=request.environ,
                               etag=entry.sha256, modified=modified, not_satisfiable=_not_satisfiable)
    except BaseException:
        file.close()
        raise
    sent = 0 if request.method == "HEAD" else response.content_length or 0
    metrics.download_sent(side, response.status_code, sent)
    if request.method == "GET" and response.status_code in (200, 206):
        first = (response.headers.get("Content-Range") or "bytes 0-").removeprefix("bytes ").split("-", 1)[0]
        _count(side, entry, sent, whole=response.status_code == 200 or first == "0")
    _fetched(entry, response.status_code, guard)
    return _common_headers(response, entry, modified, side)


def _count(side: str, entry: DownloadEntry, size: int, *, whole: bool) -> None:
    """Into the activity series, through the inventory's batch (one dict update here)."""
    from devupdate.devices.check import EXTENSION

    service = current_app.extensions.get(EXTENSION)
    if service is not None:
        service.inventory.download(entry.rule_id, entry.version, side, size, whole=whole)


for _side in ("Int", "Ext"):
    bp.add_url_rule(f"/DeviceUpdateFiles_{_side}/<path:subpath>", f"download_{_side.lower()}",
                    lambda subpath, side=_side: serve(side, subpath), methods=["GET", "HEAD"],
                    merge_slashes=False, strict_slashes=False)
