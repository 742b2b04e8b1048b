"""A request head as the event loop needs it: where it ends, how its body is framed, and the head
handed on to gunicorn's parser with the body's framing taken out (the loop decodes the body).

Only what decides the framing is read here, strictly, so the loop and gunicorn can never disagree
about where a body ends (request smuggling): ``Content-Length`` and ``Transfer-Encoding``
together, twice, or not as digits / exactly ``chunked`` are refused; header names with spaces,
bare LF and obsolete line folding too. Everything else gunicorn's parser checks afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from devupdate.web.errors import path_of
from devupdate.web.framing import FramingError

_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(rb"[0-9]{1,19}")
_FRAMING = (b"content-length", b"transfer-encoding", b"expect")


@dataclass(slots=True)
class Head:
    method: str
    path: str
    http11: bool
    length: int | None  # Content-Length, when given
    chunked: bool
    expect_continue: bool
    forwarded: bytes  # the head for gunicorn: no framing headers, "Content-Length: 0"

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.length)


def path_so_far(buffer: bytes | bytearray) -> str:
    """The path of a request line that may still be incomplete ('' when none can be seen yet)."""
    line = bytes(buffer[:8192]).split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return path_of(parts[1]) if len(parts) > 1 else ""


def parse(raw: bytes) -> Head:
    """``raw`` ends with the blank line; raises :class:`FramingError` (status 400, 417 or 501)."""
    if raw.count(b"\n") != raw.count(b"\r\n"):
        raise FramingError("BadRequest", "bare LF in the request head; lines end with CRLF")
    lines = raw[:-4].split(b"\r\n")
    request_line = lines[0]
    parts = request_line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise FramingError("BadRequestLine", "the request line must be: METHOD target HTTP/1.1")
    method, target, version = parts
    length: int | None = None
    codings: list[bytes] = []
    expect = b""
    kept = [request_line]
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise FramingError("BadHeader", "obsolete line folding in the request head")
        name, colon, value = line.partition(b":")
        if not colon:
            raise FramingError("BadHeader", f"malformed header line {line[:60]!r}")
        lowered = name.lower()
        if lowered not in _FRAMING:
            if lowered.rstrip(b" \t") in _FRAMING:  # "Content-Length : 5": never a framing header by accident
                raise FramingError("BadHeader", f"malformed header line {line[:60]!r}")
            kept.append(line)  # every other name is gunicorn's to check (it refuses malformed ones)
            continue
        if not _NAME.fullmatch(name):
            raise FramingError("BadHeader", f"malformed header line {line[:60]!r}")
        value = value.strip(b" \t")
        if lowered == b"content-length":
            if length is not None or not _DIGITS.fullmatch(value):
                raise FramingError("BadContentLength", "Content-Length must be one decimal number, given once")
            length = int(value)
        elif lowered == b"transfer-encoding":
            codings += [c.strip(b" \t").lower() for c in value.split(b",")]
        else:
            expect = value.lower()
    http11 = version == b"HTTP/1.1"
    chunked = bool(codings)
    if codings:
        if codings != [b"chunked"]:
            raise FramingError("UnsupportedTransferCoding", "only Transfer-Encoding: chunked is supported", 501)
        if length is not None:
            raise FramingError("BadFraming", "Content-Length and Transfer-Encoding together are not accepted")
        if not http11:
            raise FramingError("BadFraming", "Transfer-Encoding needs HTTP/1.1")
    if expect and expect != b"100-continue":
        raise FramingError("ExpectationFailed", "only Expect: 100-continue is supported", 417)
    kept.append(b"Content-Length: 0")
    return Head(method=method.decode("latin-1"), path=path_of(target), http11=http11, length=length,
                chunked=chunked, expect_continue=http11 and expect == b"100-continue",
                forwarded=b"\r\n".join(kept) + b"\r\n\r\n")


def header(head: Head, name: str) -> str | None:
    """The value of the first header ``name`` (any case) of ``head``, blanks stripped; ``None`` when
    absent. Framing headers are not kept (see :attr:`Head.forwarded`)."""
    wanted = name.lower().encode("latin-1")
    for line in head.forwarded.split(b"\r\n")[1:]:
        key, colon, value = line.partition(b":")
        if colon and key.strip(b" \t").lower() == wanted:
            return value.strip(b" \t").decode("latin-1")
    return None
