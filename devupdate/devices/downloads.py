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
  are ignored (full ``200``).
- Full and single-range bodies go out through ``wsgi.file_wrapper`` with an exact
  ``Content-Length``, so gunicorn sends them with ``sendfile(2)``.
- ``DEVUPDATE_ACCEL_REDIRECT_PREFIX`` set (e.g. ``/_devupdate_images``): after authorization and
  the conditionals, the answer is an empty ``X-Accel-Redirect: <prefix>/<sha[:2]>/<sha256>`` and
  nginx sends the file itself, ranges included — see ``docs/nginx.md``.
- Unknown paths and anything that looks like traversal (``..``, ``.``, empty components, ``\\``,
  NUL and other control characters, or ``%2F`` / ``%5C`` / ``%00`` in the raw request URI) → ``404``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import secrets
from collections.abc import Iterator
from typing import BinaryIO

from flask import Blueprint, Response, current_app, request
from werkzeug.http import http_date, parse_date, parse_etags
from werkzeug.wsgi import FileWrapper

from devupdate import metrics
from devupdate.content.areas import IMAGES
from devupdate.devices.access import guard_request
from devupdate.selection import DownloadEntry

log = logging.getLogger("devupdate.downloads")

bp = Blueprint("device_downloads", __name__)

MAX_RANGES = 32
_BLOCK = 1 << 20
_RAW_FORBIDDEN = ("%2f", "%5c", "%00")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]{1,19}")


def _refuse(status: int, message: str, **headers: str) -> Response:
    response = Response(message + "\n", status=status, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _not_found() -> Response:
    return _refuse(404, "not found")


def _suspicious(subpath: str, raw_uri: str) -> bool:
    """True for paths no imported file can have; they get a plain 404, never a lookup."""
    if "\\" in subpath or _CONTROL.search(subpath):
        return True
    if any(part in ("", ".", "..") for part in subpath.split("/")):
        return True
    raw_path = raw_uri.split("?", 1)[0].lower()
    return any(token in raw_path for token in _RAW_FORBIDDEN)


# --- ranges --------------------------------------------------------------------------------------

def parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """``Range: bytes=…`` → satisfiable ``(first, last)`` pairs (inclusive), in request order.

    ``None``: ignore the header (not bytes, malformed, too many ranges) and send the whole file.
    ``[]``: syntactically fine but nothing satisfiable → ``416``.
    """
    unit, eq, spec = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    items = [item.strip() for item in spec.split(",")]
    items = [item for item in items if item]
    if not items or len(items) > MAX_RANGES:
        return None
    ranges: list[tuple[int, int]] = []
    for item in items:
        first_text, dash, last_text = item.partition("-")
        first_text, last_text = first_text.strip(), last_text.strip()
        if not dash:
            return None
        if not first_text:  # suffix: the last N bytes
            if not _DIGITS.fullmatch(last_text):
                return None
            count = int(last_text)
            if count and size:
                ranges.append((max(0, size - count), size - 1))
            continue
        if not _DIGITS.fullmatch(first_text) or (last_text and not _DIGITS.fullmatch(last_text)):
            return None
        first = int(first_text)
        if last_text and int(last_text) < first:
            return None  # invalid ranges-specifier: ignore the header (RFC 9110 §14.2)
        if first < size:
            last = int(last_text) if last_text else size - 1
            ranges.append((first, min(last, size - 1)))
    if len(ranges) > 1 and sum(last - first + 1 for first, last in ranges) > size:
        return None  # overlapping ranges asking for more than the file: send it once (RFC 9110 §14.2)
    return ranges


class _Slice:
    """A window of an open file that ``wsgi.file_wrapper`` can send with ``sendfile``.

    gunicorn sends ``Content-Length`` bytes from the file's current offset via ``fileno()``;
    servers without sendfile iterate ``read()``, which stops at the window's end.
    """

    def __init__(self, file: BinaryIO, first: int, length: int):
        self._file = file
        self._end = first + length
        file.seek(first)

    def fileno(self) -> int:
        return self._file.fileno()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def read(self, size: int = -1) -> bytes:
        left = self._end - self._file.tell()
        if left <= 0:
            return b""
        return self._file.read(left if size is None or size < 0 else min(size, left))

    def close(self) -> None:
        self._file.close()


def _file_body(file: BinaryIO | _Slice) -> object:
    wrapper = request.environ.get("wsgi.file_wrapper", FileWrapper)
    return wrapper(file, _BLOCK)


def _multipart(file: BinaryIO, ranges: list[tuple[int, int]], size: int) -> tuple[Iterator[bytes], int, str]:
    boundary = secrets.token_hex(16)
    heads = []
    for index, (first, last) in enumerate(ranges):
        lead = "" if index == 0 else "\r\n"
        heads.append(f"{lead}--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Range: bytes {first}-{last}/{size}\r\n\r\n".encode("ascii"))
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    length = sum(len(h) for h in heads) + sum(last - first + 1 for first, last in ranges) + len(tail)
    fd = file.fileno()

    def generate() -> Iterator[bytes]:
        try:
            for head, (first, last) in zip(heads, ranges, strict=True):
                yield head
                offset, end = first, last + 1
                while offset < end:
                    chunk = os.pread(fd, min(_BLOCK, end - offset), offset)
                    if not chunk:
                        raise OSError(f"image shrank while being sent (offset {offset})")
                    offset += len(chunk)
                    yield chunk
            yield tail
        finally:
            file.close()

    return generate(), length, f"multipart/byteranges; boundary={boundary}"


# --- conditionals --------------------------------------------------------------------------------

def _date(value: str | None) -> int | None:
    parsed = parse_date(value)
    return int(parsed.timestamp()) if parsed is not None else None


def _precondition(entry: DownloadEntry, modified: int) -> int | None:
    """412 / 304 per RFC 9110 §13.2.2, or None to go on."""
    headers = request.headers
    if "If-Match" in headers:
        if not parse_etags(headers["If-Match"]).contains(entry.sha256):  # strong comparison
            return 412
    elif "If-Unmodified-Since" in headers:
        since = _date(headers["If-Unmodified-Since"])
        if since is not None and modified > since:
            return 412
    if "If-None-Match" in headers:
        if parse_etags(headers["If-None-Match"]).contains_weak(entry.sha256):
            return 304
    elif "If-Modified-Since" in headers:
        since = _date(headers["If-Modified-Since"])
        if since is not None and modified <= since:
            return 304
    return None


def _range_applies(entry: DownloadEntry, modified: int) -> bool:
    """``If-Range``: the range counts only when the validator still matches."""
    value = request.headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        etags = parse_etags(value)
        return not value.startswith("W/") and etags.contains(entry.sha256)
    return _date(value) == modified


# --- the view ------------------------------------------------------------------------------------

def _common_headers(response: Response, entry: DownloadEntry, modified: int, side: str) -> Response:
    headers = response.headers
    headers["ETag"] = f'"{entry.sha256}"'
    headers["Last-Modified"] = http_date(dt.datetime.fromtimestamp(modified, dt.UTC))
    headers["Accept-Ranges"] = "bytes"
    headers["Cache-Control"] = ("public" if side == "Int" else "private") + ", max-age=300"
    headers["X-Content-Type-Options"] = "nosniff"
    return response


def serve(side: str, subpath: str) -> Response:
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

    status = _precondition(entry, modified)
    if status is not None:
        return _common_headers(Response(status=status), entry, modified, side)

    runtime = current_app.extensions["devupdate"]
    prefix = runtime.settings.accel_redirect_prefix
    if prefix:
        response = Response(b"", status=200, mimetype="application/octet-stream")
        response.headers["X-Accel-Redirect"] = f"/{prefix.strip('/')}/{entry.sha256[:2]}/{entry.sha256}"
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
            return _refuse(503, "image damaged in the store; the administrator has been told")
        ranges = None
        if request.method == "GET" and "Range" in request.headers and _range_applies(entry, modified):
            ranges = parse_ranges(request.headers["Range"], size)
        if ranges == []:
            file.close()
            response = _refuse(416, "requested range not satisfiable", Content_Range=f"bytes */{size}")
            response.headers["Accept-Ranges"] = "bytes"
            return response
        if ranges and len(ranges) == 1:
            first, last = ranges[0]
            length = last - first + 1
            response = Response(_file_body(_Slice(file, first, length)), status=206,
                                mimetype="application/octet-stream", direct_passthrough=True)
            response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            response.headers["Content-Length"] = str(length)
        elif ranges:
            body, length, content_type = _multipart(file, ranges, size)
            response = Response(body, status=206, content_type=content_type, direct_passthrough=True)
            response.headers["Content-Length"] = str(length)
        else:
            response = Response(_file_body(file), status=200, mimetype="application/octet-stream",
                                direct_passthrough=True)
            response.headers["Content-Length"] = str(size)
    except BaseException:
        file.close()
        raise
    metrics.download_sent(side, response.status_code, 0 if request.method == "HEAD" else response.content_length or 0)
    return _common_headers(response, entry, modified, side)


for _side in ("Int", "Ext"):
    bp.add_url_rule(f"/DeviceUpdateFiles_{_side}/<path:subpath>", f"download_{_side.lower()}",
                    lambda subpath, side=_side: serve(side, subpath), methods=["GET", "HEAD"],
                    merge_slashes=False, strict_slashes=False)
