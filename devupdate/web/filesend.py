"""Answering ``GET``/``HEAD`` with an open stored file: the whole file, one range or several, for every
view that sends stored content (phone image downloads, WSUS ``/Content``).

The whole file and a single range go out through ``wsgi.file_wrapper`` with an exact
``Content-Length``: the event-loop worker sends them with ``sendfile(2)`` (block by block over TLS),
so no thread and no buffer grows with the file. Several ranges are a ``multipart/byteranges`` body
read in fixed blocks. The caller checks its preconditions first and sets its own validators and
cache headers afterwards; what a refusal looks like (``416``) is the caller's too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

from werkzeug.wrappers import Response
from werkzeug.wsgi import FileWrapper

from devupdate.web.byteranges import BLOCK, FileSlice, HeaderLookup, multipart_body, parse_ranges, range_applies

OCTETS = "application/octet-stream"


def _file_body(environ: Mapping[str, Any], file: BinaryIO | FileSlice) -> Any:
    wrapper = environ.get("wsgi.file_wrapper", FileWrapper)
    return wrapper(file, BLOCK)


def file_answer(file: BinaryIO, size: int, *, method: str, headers: HeaderLookup, environ: Mapping[str, Any],
                etag: str, modified: int, not_satisfiable: Callable[[int], Response]) -> Response:
    """``200``, or ``206`` for the ``Range`` of a ``GET`` (when ``If-Range`` still matches ``etag`` /
    ``modified``), or ``not_satisfiable(size)`` when no range lies within the file. Takes ownership
    of ``file``: it is closed when the answer has been sent, or here when there is nothing to send.
    A malformed ``Range`` (or one the kit ignores, see :func:`parse_ranges`) gives the whole file."""
    try:
        ranges = None
        if method == "GET" and "Range" in headers and range_applies(headers, etag, modified):
            ranges = parse_ranges(headers["Range"], size)
        if ranges == []:
            file.close()
            return not_satisfiable(size)
        if ranges and len(ranges) == 1:
            first, last = ranges[0]
            length = last - first + 1
            response = Response(_file_body(environ, FileSlice(file, first, length)), status=206, mimetype=OCTETS,
                                direct_passthrough=True)
            response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        elif ranges:
            body, length, content_type = multipart_body(file, ranges, size)
            response = Response(body, status=206, content_type=content_type, direct_passthrough=True)
        else:
            length = size
            response = Response(_file_body(environ, file), status=200, mimetype=OCTETS, direct_passthrough=True)
        response.headers["Content-Length"] = str(length)
        response.headers["Accept-Ranges"] = "bytes"
        return response
    except BaseException:
        file.close()
        raise
