"""Byte ranges, multipart/byteranges and conditional requests (RFC 9110 §13, §14) for any view that
sends a stored file: phone image downloads now, WSUS ``/Content`` later. Plain functions over a
header mapping, a validator (the strong ETag value) and a modification time — no Flask.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from typing import BinaryIO, Protocol

from werkzeug.http import parse_date, parse_etags

MAX_RANGES = 32
BLOCK = 1 << 20  # bytes per read of a multipart body
_DIGITS = re.compile(r"[0-9]{1,19}")


class HeaderLookup(Protocol):
    """The request headers as read here: a ``Mapping[str, str]`` or werkzeug's ``Headers`` (which is
    no Mapping), looked up by name."""

    def __contains__(self, key: str, /) -> bool: ...
    def __getitem__(self, key: str, /) -> str: ...
    def get(self, key: str, /) -> str | None: ...


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


class FileSlice:
    """A window of an open file that ``wsgi.file_wrapper`` can send with ``sendfile``.

    The server sends ``Content-Length`` bytes from the file's current offset via ``fileno()``;
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

    def read(self, size: int | None = -1) -> bytes:
        left = self._end - self._file.tell()
        if left <= 0:
            return b""
        return self._file.read(left if size is None or size < 0 else min(size, left))

    def close(self) -> None:
        self._file.close()


def multipart_body(file: BinaryIO, ranges: list[tuple[int, int]], size: int,
                   content_type: str = "application/octet-stream") -> tuple[Iterator[bytes], int, str]:
    """(body iterator, exact length, Content-Type) of a ``multipart/byteranges`` answer; the
    iterator closes ``file`` when done."""
    boundary = secrets.token_hex(16)
    heads = []
    for index, (first, last) in enumerate(ranges):
        lead = "" if index == 0 else "\r\n"
        heads.append(f"{lead}--{boundary}\r\nContent-Type: {content_type}\r\n"
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
                    chunk = os.pread(fd, min(BLOCK, end - offset), offset)
                    if not chunk:
                        raise OSError(f"file shrank while being sent (offset {offset})")
                    offset += len(chunk)
                    yield chunk
            yield tail
        finally:
            file.close()

    return generate(), length, f"multipart/byteranges; boundary={boundary}"


def _date(value: str | None) -> int | None:
    parsed = parse_date(value)
    return int(parsed.timestamp()) if parsed is not None else None


def precondition(headers: HeaderLookup, etag: str, modified: int) -> int | None:
    """412 / 304 per RFC 9110 §13.2.2 for a file whose strong ETag value is ``etag`` and whose
    modification time is ``modified`` (Unix seconds), or None to go on."""
    if "If-Match" in headers:
        if not parse_etags(headers["If-Match"]).contains(etag):  # strong comparison
            return 412
    elif "If-Unmodified-Since" in headers:
        since = _date(headers["If-Unmodified-Since"])
        if since is not None and modified > since:
            return 412
    if "If-None-Match" in headers:
        if parse_etags(headers["If-None-Match"]).contains_weak(etag):
            return 304
    elif "If-Modified-Since" in headers:
        since = _date(headers["If-Modified-Since"])
        if since is not None and modified <= since:
            return 304
    return None


def range_applies(headers: HeaderLookup, etag: str, modified: int) -> bool:
    """``If-Range``: the range counts only when the validator still matches."""
    value = headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        etags = parse_etags(value)
        return not value.startswith("W/") and etags.contains(etag)
    return _date(value) == modified
