"""Reading request bodies under a limit — one reader for the update check, the JSON API, the cab
upload and (later) SOAP. Each edge turns :class:`BodyError` into its own vocabulary (the device
XML error, the API's JSON error) from ``reason``.

- a declared ``Content-Length`` above the limit is refused before a byte is read (413);
- a body without one (chunked) is counted as it arrives and refused one byte past the limit;
- a body shorter than its ``Content-Length``, or cut off, is ``incomplete`` (400);
- a body the server could not de-frame (a broken chunk size) keeps the server's code (400);
- a ``Content-Encoding`` other than ``identity`` is refused (415): nothing here decompresses,
  and a gzip body stored as a cab or a log would be silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import IO, Any

from devupdate.numbers import is_digits
from devupdate.web.framing import FramingError

TOO_LARGE, INCOMPLETE, FRAMING, ENCODING = "too-large", "incomplete", "framing", "encoding"


class BodyError(Exception):
    """A refused body: ``reason`` (one of the constants above), the HTTP ``status``, a ``message``
    for people, and for ``framing`` the server's own ``code``."""

    def __init__(self, reason: str, status: int, message: str, code: str = ""):
        super().__init__(message)
        self.reason, self.status, self.message, self.code = reason, status, message, code


#: path → the largest body any request to it may have (``None``: no opinion), asked by the server's
#: event loop as soon as a head arrives, so a larger ``Content-Length`` is refused before the loop
#: buffers any of the body (features register theirs when their app is created, in each worker)
_path_limits: dict[str, Callable[[str], int | None]] = {}


def register_path_limit(name: str, limit: Callable[[str], int | None]) -> None:
    """``name`` (the feature) → its limit; registering again replaces it (a new app, new settings)."""
    _path_limits[name] = limit


def path_limit(path: str) -> int | None:
    """The smallest limit a registered feature sets for ``path``, or ``None``."""
    limits = [value for value in (limit(path) for limit in _path_limits.values()) if value is not None]
    return min(limits) if limits else None


def declared_length(environ: Mapping[str, Any]) -> int | None:
    """``Content-Length`` as a number, ``None`` when absent (gunicorn refuses a malformed one)."""
    declared = environ.get("CONTENT_LENGTH") or ""
    return int(declared) if is_digits(declared) else None


def refuse_encoding(environ: Mapping[str, Any]) -> None:
    encoding = (environ.get("HTTP_CONTENT_ENCODING") or "").strip().lower()
    if encoding not in ("", "identity"):
        raise BodyError(ENCODING, 415, f"Content-Encoding {encoding[:40]!r} is not accepted; send the body "
                        "unencoded")


class BoundedBody:
    """The request body as a readable stream of at most ``limit`` bytes (``None``: no limit here)."""

    def __init__(self, stream: IO[bytes], *, limit: int | None, announced: int | None):
        if limit is not None and announced is not None and announced > limit:
            raise BodyError(TOO_LARGE, 413, f"the body is {announced} bytes, above the limit of {limit}")
        self.stream, self.limit, self.announced, self.total = stream, limit, announced, 0

    def read(self, size: int | None = -1) -> bytes:
        want = size if size is not None and size > 0 else 1 << 20
        try:
            data = self.stream.read(want)
        except FramingError as exc:  # the server's own reading: broken chunks, cut off, too slow (408)
            raise BodyError(FRAMING, exc.status, exc.message, exc.error_code) from None
        except Exception as exc:  # noqa: BLE001 - OSError, werkzeug's ClientDisconnected
            raise BodyError(INCOMPLETE, 400, f"the body was cut off ({type(exc).__name__})") from None
        self.total += len(data)
        if self.limit is not None and self.total > self.limit:
            raise BodyError(TOO_LARGE, 413, f"the body is more than {self.limit} bytes, above the limit")
        if not data and self.announced is not None and self.total < self.announced:
            raise BodyError(INCOMPLETE, 400, f"the body ended after {self.total} of {self.announced} bytes")
        return data


def read_all(stream: IO[bytes], *, limit: int, announced: int | None) -> bytes:
    """The whole body, at most ``limit`` bytes."""
    body = BoundedBody(stream, limit=limit, announced=announced)
    chunks = []
    while True:
        chunk = body.read(min(65536, limit + 1 - body.total) if body.announced is None else 65536)
        if not chunk:
            break
        chunks.append(chunk)
        if body.announced is not None and body.total >= body.announced:
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
