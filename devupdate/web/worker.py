"""The gunicorn worker of ``devupdate serve``.

Refusals made by the server itself (a request line or header section too long, broken framing)
answer in the vocabulary of the path (:mod:`devupdate.web.errors`) instead of gunicorn's HTML
page; a body the server cannot decode reaches the application as a :class:`FramingError`
(a ``400``), and a connection whose leftover body cannot be drained after an answer is closed,
never answered a second time.
"""

from __future__ import annotations

from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import ThreadWorker

from devupdate.web.errors import path_of, refusal
from devupdate.web.framing import FramingError

_FRAMING = (http_errors.InvalidChunkSize, http_errors.ChunkMissingTerminator, http_errors.InvalidChunkExtension,
            http_errors.InvalidHeader, http_errors.LimitRequestHeaders)
_STATUS = ((http_errors.LimitRequestLine, 414, "RequestLineTooLong"),
           (http_errors.LimitRequestHeaders, 431, "HeadersTooLarge"),
           (http_errors.UnsupportedTransferCoding, 501, "UnsupportedTransferCoding"),
           (http_errors.ExpectationFailed, 417, "ExpectationFailed"),
           (http_errors.ParseException, 400, "BadRequest"))


class GuardedInput:
    """``wsgi.input`` whose framing failures are :class:`FramingError` (gunicorn raises its own parse
    errors, or ``NoMoreData``, from inside the application's ``read``)."""

    def __init__(self, stream):
        self._stream = stream

    def _call(self, method, *args):
        try:
            return method(*args)
        except _FRAMING as exc:
            raise FramingError("BadChunkedBody", f"the chunked body is malformed ({exc})") from None
        except http_errors.NoMoreData:
            raise FramingError("IncompleteBody", "the body ended before its announced end") from None

    def read(self, size=None):
        return self._call(self._stream.read, size)

    def readline(self, size=None):
        return self._call(self._stream.readline, size)

    def readlines(self, hint=None):
        return self._call(self._stream.readlines, hint)

    def __iter__(self):
        while line := self.readline():
            yield line


def _guarded(app):
    def application(environ, start_response):
        environ["wsgi.input"] = GuardedInput(environ["wsgi.input"])
        return app(environ, start_response)
    return application


class DevupdateWorker(ThreadWorker):
    """gunicorn's threaded worker with the refusals and framing rules above."""

    def load_wsgi(self):
        super().load_wsgi()
        self.wsgi = _guarded(self.wsgi)

    def _keepalive_after(self, conn, keepalive):
        try:
            return super()._keepalive_after(conn, keepalive)
        except Exception:  # noqa: BLE001 - the answer is out; a body that cannot be drained just closes
            return False

    def handle_error(self, req, client, addr, exc):
        if not isinstance(exc, http_errors.ParseException) and not isinstance(exc, FramingError):
            return super().handle_error(req, client, addr, exc)  # a 500: gunicorn logs the traceback
        request = req or getattr(exc, "req", None)
        path = path_of(getattr(request, "path", "") or "") if request is not None else ""
        status, code = next((s, c) for kind, s, c in _STATUS if isinstance(exc, kind))
        if isinstance(exc, _FRAMING[:3]):
            code = "BadChunkedBody"
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            client.sendall(refusal(path, status, code, f"{type(exc).__name__}: {exc}"[:300]))
        except OSError:
            self.log.debug("Failed to send error message.")
