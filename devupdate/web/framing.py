"""Strict, incremental HTTP/1.1 chunked body decoding (RFC 9112 §7.1), fed as bytes arrive.

The server decodes chunked bodies itself, before the application runs, so a broken body is one
``400`` with a reason — never an exception inside a view (a ``500``), and never an answer followed
by a second, server-made error page on the same connection. Anything not exactly per the RFC is
refused: sizes other than plain hex digits (``zz``, ``-5``, ``0x10``, a NUL after the size), data
not followed by CRLF, bare LF, malformed chunk extensions or trailer fields.
"""

from __future__ import annotations

import re

from werkzeug.exceptions import BadRequest

MAX_SIZE_LINE = 4096
MAX_TRAILERS = 16 * 1024
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_EXTENSIONS = re.compile(rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN +
                         rb'|"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"))?)*')
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*")


class FramingError(BadRequest):
    """The request's framing is broken: ``400`` with ``error_code`` and ``message`` (a ``BadRequest``,
    so a Flask view reading a body the server could not decode answers ``400``, not ``500``)."""

    def __init__(self, error_code: str, message: str, status: int = 400):
        super().__init__(message)
        self.error_code, self.message, self.status = error_code, message, status


def _shown(data: bytes) -> str:
    return repr(bytes(data[:40]))[2:-1]


class ChunkedDecoder:
    """Feed raw bytes, get body bytes back; ``done`` once the last chunk and trailers ended;
    ``leftover`` holds what followed the body (a pipelined next request)."""

    __slots__ = ("_buffer", "_remaining", "_state", "leftover", "size")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = "size"  # size | data | crlf | trailer | done
        self._remaining = 0
        self.leftover = b""
        self.size = 0  # decoded body bytes so far

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> bytes:
        if self._state == "done":
            self.leftover += data
            return b""
        self._buffer += data
        out = bytearray()
        while self._state != "done":
            if self._state == "data":
                take = min(self._remaining, len(self._buffer))
                if not take:
                    break
                out += self._buffer[:take]
                del self._buffer[:take]
                self._remaining -= take
                if not self._remaining:
                    self._state = "crlf"
                continue
            if self._state == "crlf":
                if len(self._buffer) < 2:
                    if self._buffer and self._buffer[:1] != b"\r":
                        raise FramingError("BadChunkedBody", "chunk data is not followed by CRLF")
                    break
                if self._buffer[:2] != b"\r\n":
                    raise FramingError("BadChunkedBody", "chunk data is not followed by CRLF")
                del self._buffer[:2]
                self._state = "size"
                continue
            line = self._line(MAX_SIZE_LINE if self._state == "size" else MAX_TRAILERS)
            if line is None:
                break
            if self._state == "size":
                self._size_line(line)
            elif line:
                self._trailer(line)
            else:
                self._state = "done"
                self.leftover = bytes(self._buffer)
                self._buffer.clear()
        self.size += len(out)
        return bytes(out)

    def _line(self, limit: int) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if b"\n" in self._buffer:
                raise FramingError("BadChunkedBody", "bare LF in the chunked framing; lines end with CRLF")
            if len(self._buffer) > limit:
                what = "chunk size line" if self._state == "size" else "trailer section"
                raise FramingError("BadChunkedBody", f"{what} over {limit} bytes")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 2]
        if b"\n" in line or b"\r" in line:
            raise FramingError("BadChunkedBody", "bare CR or LF in the chunked framing")
        return line

    def _size_line(self, line: bytes) -> None:
        size, semicolon, extensions = line.partition(b";")
        if semicolon:
            size = size.rstrip(b" \t")
            if not _EXTENSIONS.fullmatch(b";" + extensions):
                raise FramingError("BadChunkedBody", f"malformed chunk extension '{_shown(extensions)}'")
        if not _HEX.fullmatch(size):
            raise FramingError("BadChunkedBody", f"chunk size '{_shown(size)}' is not a hexadecimal number "
                                                 "(1 to 16 digits 0-9a-f)")
        self._remaining = int(size, 16)
        self._state = "data" if self._remaining else "trailer"

    def _trailer(self, line: bytes) -> None:
        if not _FIELD.fullmatch(line):
            raise FramingError("BadChunkedBody", f"malformed trailer field '{_shown(line)}'")
