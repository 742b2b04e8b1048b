"""Device log upload (device-protocol.md §6): ``POST``/``PUT /RequestHandler/Files`` (internal
networks) and ``/RequestHandlerExt/Files`` (HTTP Basic credentials).

``?type=<LogType>&mac=<MAC>&serial=<serial>&name=<file name>`` (parameter names matched
case-insensitively; ``MACAddress`` / ``SerialNumber`` / ``FileName`` accepted as aliases) with the
raw file as body, or ``multipart/form-data`` with exactly one file part, whose file name is used
when ``name`` is not given. Other form fields are ignored.

Checks, in this order, each refused with a ``<Error><Code>…</Code><Message>…</Message></Error>``
XML body (the same form as a refused update check):

====================================  ======  =======================
what                                  status  code
====================================  ======  =======================
not internal / no or bad credentials  403/401 (see access.py)
type not in ValidLogFileTypes         400     BadLogType / MissingLogType
no usable mac / serial                400     MissingIdentity / BadMacAddress / BadSerialNumber
no usable name                        400     MissingFileName / BadFileName
extension not in ValidLogFileExtensions 400   BadExtension
Content-Length > MaxLogFileSize       413     TooLarge (before reading the body)
body passes MaxLogFileSize            413     TooLarge (while streaming, e.g. chunked)
log area quota full                   507     QuotaExceeded (before, or while streaming)
empty, cut or malformed body          400     EmptyBody / IncompleteBody / BadMultipart
====================================  ======  =======================

A refused upload leaves nothing behind. Accepted uploads are stored as
``Logs/Client/<LogType>/<device id>/<name>`` (filestore area ``logs/client``), never overwriting:
a taken name gets ``_1``, ``_2``… before its extension. The answer is ``201`` with::

    <?xml version="1.0" encoding="utf-8"?>
    <LogUpload><Type>Watson</Type><DeviceId>0004F2AABBCC</DeviceId><FileName>crash_1.dmp</FileName>
    <Path>Logs/Client/Watson/0004F2AABBCC/crash_1.dmp</Path><Size>1234</Size></LogUpload>
"""

from __future__ import annotations

import errno
import logging
from typing import IO
from xml.sax.saxutils import escape

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from devupdate import configuration, metrics
from devupdate.devices.access import guard_request
from devupdate.devices.logs import CLIENT_AREA, canonical_type, check_extension, config_cache, device_id, safe_name
from devupdate.errors import DevupdateError
from devupdate.web import bodies
from devupdate.web.errors import render_error
from devupdate.web.framing import FramingError
from filestore import FileStoreError, QuotaExceeded, TooLarge, UnsafePath

log = logging.getLogger("devupdate.logupload")

bp = Blueprint("device_logupload", __name__)

READ_SIZE = 64 * 1024
MULTIPART_SLACK = 64 * 1024  # headers and boundaries a multipart body may add to the file
MAX_PART_HEADERS = 64 * 1024
MAX_PARTS = 16


class BodyError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class _RawBody:
    """The request body as sent; refuses an empty body or one shorter than its Content-Length."""

    def __init__(self, stream: IO[bytes], expected: int | None):
        self._stream = stream
        self._expected = expected
        self._count = 0

    @property
    def size(self) -> int:
        return self._count

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size)
        except FramingError as exc:  # the server's own reading: broken chunks, cut off, too slow (408)
            raise BodyError(exc.error_code, exc.message, exc.status) from None
        except HTTPException as exc:  # werkzeug's ClientDisconnected
            raise BodyError("IncompleteBody", "the upload was cut off before the end") from exc
        except Exception as exc:  # the socket failed, or gunicorn's parser refused the framing (bad chunks)
            raise BodyError("IncompleteBody", f"the upload could not be read ({exc})") from exc
        if data:
            self._count += len(data)
            return data
        if self._count == 0:
            raise BodyError("EmptyBody", "the body is empty; send the log file as the request body")
        if self._expected is not None and self._count != self._expected:
            raise BodyError("IncompleteBody", f"the body ended after {self._count} of {self._expected} bytes")
        return b""


class _MultipartBody:
    """The one file part of a ``multipart/form-data`` body, streamed (never held in memory)."""

    def __init__(self, stream: IO[bytes], boundary: str):
        self._raw = _RawBody(stream, None)
        self._decoder = MultipartDecoder(boundary.encode("latin-1"), max_parts=MAX_PARTS)
        self._pending = bytearray()
        self._in_file = False
        self._done = False
        self._ended = False
        self._file_bytes = 0
        self.filename = ""

    @property
    def size(self) -> int:
        return self._file_bytes

    def _event(self):
        while True:
            try:
                event = self._decoder.next_event()
            except (ValueError, HTTPException) as exc:
                raise BodyError("BadMultipart", f"multipart/form-data body is malformed ({exc})") from None
            if not isinstance(event, NeedData):
                return event
            if self._ended:
                raise BodyError("BadMultipart", "multipart/form-data body ended before its closing boundary")
            if not self._in_file and len(self._decoder.buffer) > MAX_PART_HEADERS:
                raise BodyError("BadMultipart", "multipart part headers are too long")
            try:
                chunk = self._raw.read(READ_SIZE)
            except BodyError as exc:
                if exc.code != "EmptyBody":
                    raise
                chunk = b""
            if chunk:
                self._decoder.receive_data(chunk)
            else:
                self._ended = True
                self._decoder.receive_data(None)

    def open(self) -> str:
        """Advance to the file part; returns its file name (may be empty)."""
        in_field = False
        while True:
            event = self._event()
            if isinstance(event, File):
                self._in_file = True
                self.filename = event.filename or ""
                return self.filename
            if isinstance(event, Field):
                in_field = True
            elif isinstance(event, Data) and in_field:
                in_field = event.more_data
            elif isinstance(event, Epilogue):
                raise BodyError("BadMultipart", "the multipart/form-data body has no file part")

    def _finish(self) -> None:
        """After the file part: the rest may hold plain fields, but no second file."""
        while True:
            event = self._event()
            if isinstance(event, File):
                raise BodyError("BadMultipart", "send exactly one file part per upload")
            if isinstance(event, Epilogue):
                return

    def read(self, size: int = -1) -> bytes:
        want = READ_SIZE if size is None or size < 0 else size
        while len(self._pending) < want and self._in_file:
            event = self._event()
            if isinstance(event, Data):
                self._pending += event.data
                self._file_bytes += len(event.data)
                if not event.more_data:
                    self._in_file = False
                    if self._file_bytes == 0:
                        raise BodyError("EmptyBody", "the file part is empty")
                    self._finish()
        out = bytes(self._pending[:want])
        del self._pending[:want]
        return out


_STORED_BYTES = "devupdate.log_upload_bytes"  # environ key: what the upload stored, for the counter


def _error(status: int, code: str, message: str) -> Response:
    response = Response(render_error(code, message), status=status, content_type="text/xml; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    return response


def _created(log_type: str, device: str, relpath: str, size: int) -> Response:
    name = relpath.rsplit("/", 1)[-1]
    body = ('<?xml version="1.0" encoding="utf-8"?>\n'
            f"<LogUpload><Type>{escape(log_type)}</Type><DeviceId>{escape(device)}</DeviceId>"
            f"<FileName>{escape(name)}</FileName><Path>Logs/Client/{escape(relpath)}</Path>"
            f"<Size>{size}</Size></LogUpload>\n")
    response = Response(body.encode(), status=201, content_type="text/xml; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    return response


def upload(side: str) -> Response:
    """The upload view, counted by side and status (:func:`metrics.log_uploaded`)."""
    response = _upload(side)
    metrics.log_uploaded(side, response.status_code, request.environ.get(_STORED_BYTES, 0))
    return response


def _upload(side: str) -> Response:
    guard = guard_request(side)
    if isinstance(guard, Response):
        return guard
    client, _user = guard
    args: dict[str, str] = {}
    for key, value in request.args.items(multi=True):
        args.setdefault(key.lower(), value)
    try:
        config = config_cache.get()
    except Exception:
        log.exception("log upload: configuration unavailable")
        return _error(503, "Unavailable", "the service cannot read its configuration; try again later")
    max_size = configuration.whole(config, "MaxLogFileSize")
    try:
        log_type = canonical_type(args.get("type") or args.get("logtype"),
                                  configuration.words(config, "ValidLogFileTypes"))
        device = device_id(args.get("mac") or args.get("macaddress"),
                           args.get("serial") or args.get("serialnumber"))
        given = args.get("name") or args.get("filename")
        name = ""
        if given is not None and given.strip():
            name = safe_name(given)
            check_extension(name, configuration.words(config, "ValidLogFileExtensions"))
        try:
            bodies.refuse_encoding(request.environ)  # stored as sent: a gzip body would be a wrong log
        except bodies.BodyError as exc:
            return _error(415, "UnsupportedEncoding", exc.message)
        multipart = request.mimetype == "multipart/form-data"
        length = request.content_length
        if length is not None and length > max_size + (MULTIPART_SLACK if multipart else 0):
            what = "upload" if multipart else "log"
            return _error(413, "TooLarge", f"the {what} is {length} bytes; MaxLogFileSize is {max_size} bytes")
        body: _RawBody | _MultipartBody
        if multipart:
            boundary = request.mimetype_params.get("boundary", "")
            if not boundary or len(boundary) > 200:
                return _error(400, "BadMultipart", "multipart/form-data needs a boundary parameter")
            body = _MultipartBody(request.stream, boundary)
            filename = body.open()
            if not name:
                if not filename.strip():
                    return _error(400, "MissingFileName", "name the file: ?name=<file> or a filename in the part")
                name = safe_name(filename)
                check_extension(name, configuration.words(config, "ValidLogFileExtensions"))
            hint = None
        else:
            if not name:
                return _error(400, "MissingFileName", "the file name is required: ?name=<file>.<ext>")
            if length == 0:
                return _error(400, "EmptyBody", "the body is empty; send the log file as the request body")
            body = _RawBody(request.stream, length)
            hint = length
        store = current_app.extensions["devupdate"].store
        stored = store.write_named(CLIENT_AREA, f"{log_type}/{device}/{name}", body, max_size=max_size, size=hint)
    except DevupdateError as exc:
        return _error(exc.status, exc.code, exc.message)
    except BodyError as exc:
        return _error(exc.status, exc.code, exc.message)
    except TooLarge:
        return _error(413, "TooLarge", f"the log is larger than MaxLogFileSize ({max_size} bytes)")
    except QuotaExceeded:
        log.warning("log upload from %s refused: the logs/client area quota is full", client)
        return _error(507, "QuotaExceeded", "the device log area is full; try again after the logs are cleaned up")
    except UnsafePath as exc:
        return _error(400, "BadFileName", str(exc))
    except FileStoreError as exc:  # e.g. no free suffix left for a name: the area needs a cleanup
        log.error("log upload from %s could not be stored: %s", client, exc)
        return _error(503, "StoreUnavailable", "the log could not be stored; try again later")
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.error("log upload from %s: disk full (%s)", client, exc)
            return _error(507, "InsufficientStorage", "the server's disk is full")
        raise
    size = body.size
    request.environ[_STORED_BYTES] = size
    log.info("log upload from %s stored as %s (%d bytes)", client, stored, size)
    return _created(log_type, device, stored, size)


for _side, _prefix in (("Int", "/RequestHandler"), ("Ext", "/RequestHandlerExt")):
    bp.add_url_rule(f"{_prefix}/Files", f"log_upload_{_side.lower()}", lambda side=_side: upload(side),
                    methods=["POST", "PUT"], strict_slashes=False)
