"""One paging shape for every JSON listing: ``limit``, an opaque ``cursor``, ``Total`` where it is
cheap to count, and a ``Next`` link (also sent as ``Link: <…>; rel="next"``).

The cursor is a keyset position, not an offset: it holds the sort key of the last row a page
showed, so rows inserted or removed before it never shift the next page (no row is shown twice or
skipped because another one arrived). It is base64url of a small JSON array — the listing's name,
its sort (a cursor of one listing or sort is refused in another) and the key — and every part is
checked before it reaches a query: a cursor the API did not make is a ``400 bad-cursor`` naming
what is wrong, never a server error.

Page body: ``{"Items": […], "Limit": 50, "Total": 123 | null, "Next": "/api/v1/…?cursor=…" | null}``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import Response, request

from devupdate.admin.routing import MAX_PAGE, Param, json_response, query_int
from devupdate.errors import DevupdateError

# The longest key (a rule's family in non-ASCII text) encodes to about 2,300 characters: within the
# request line the server reads, next to the listing's filters.
MAX_CURSOR = 2400
DEFAULT_LIMIT = 50
_MAX_KEY_TEXT = 300
_INT_RANGE = 1 << 63

LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_LIMIT},
              "Page size")
CURSOR = Param("cursor", {"type": "string", "maxLength": MAX_CURSOR, "pattern": r"^[A-Za-z0-9_-]{1,2400}$",
                          "description": "the opaque position from the previous page's Next link"},
               "Where the page starts (from the previous page's Next link; absent: the first page)")
PARAMS = (LIMIT, CURSOR)

#: kinds of the parts of a key: what a cursor's part must be to be used in a query
INT, TEXT, TIME = "int", "text", "time"
Key = tuple[Any, ...]


def _refuse(reason: str) -> DevupdateError:
    return DevupdateError(f"query parameter 'cursor' {reason}; start again without a cursor, or use the "
                          "Next link of the previous page as it is", code="bad-cursor")


def encode(listing: str, sort: str, key: Key) -> str:
    parts = [listing, sort, *(value.isoformat() if isinstance(value, dt.datetime) else value for value in key)]
    raw = json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _part(value: Any, kind: str) -> Any:
    if kind == INT:
        if isinstance(value, bool) or not isinstance(value, int) or not -_INT_RANGE <= value < _INT_RANGE:
            raise _refuse("holds a position that is not a whole number")
        return value
    if not isinstance(value, str) or len(value) > _MAX_KEY_TEXT:
        raise _refuse("holds a position that is not a short text")
    if "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value):
        raise _refuse("holds a NUL or an unencodable character")
    if kind == TIME:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise _refuse("holds a position that is not a time") from None
        return parsed if parsed.tzinfo is None else parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def decode(text: str, listing: str, sort: str, kinds: Sequence[str]) -> Key:
    """The key a cursor holds, checked part by part against ``kinds``; refused with the reason."""
    if len(text) > MAX_CURSOR:
        raise _refuse(f"is longer than {MAX_CURSOR} characters")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _refuse("is not one this API made (not base64url)") from None
    try:
        parts = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise _refuse("is not one this API made (damaged)") from None
    if not isinstance(parts, list) or len(parts) < 2 or not all(isinstance(p, str) for p in parts[:2]):
        raise _refuse("is not one this API made (damaged)")
    if parts[0] != listing:
        raise _refuse(f"belongs to another listing ({str(parts[0])[:40]!r}), not {listing!r}")
    if parts[1] != sort:
        raise _refuse(f"was made for sort={str(parts[1])[:40]!r}, not sort={sort!r}")
    if len(parts) - 2 != len(kinds):
        raise _refuse("is not one this API made (wrong length)")
    return tuple(_part(value, kind) for value, kind in zip(parts[2:], kinds, strict=True))


@dataclass(frozen=True)
class PageRequest:
    """What the request asks for: a page size and the key after which the page starts."""

    listing: str
    sort: str
    limit: int
    after: Key | None


def page_request(listing: str, kinds: Sequence[str], sort: str = "") -> PageRequest:
    """``limit`` and ``cursor`` of the current request, for ``listing`` in ``sort`` order."""
    limit = query_int("limit", DEFAULT_LIMIT, 1, MAX_PAGE)
    text = request.args.get("cursor")
    after = None if text is None else decode(text, listing, sort, kinds)
    return PageRequest(listing, sort, limit, after)


def respond(page: PageRequest, rows: Sequence[Any], key_of: Callable[[Any], Key],
            render: Callable[[Any], Any] = lambda row: row, total: int | None = None) -> Response:
    """The page of ``rows`` (up to ``limit + 1`` read: one more says there is a next page)."""
    shown = list(rows[:page.limit])
    next_link = None
    if len(rows) > page.limit and shown:
        args = [(name, value) for name, value in request.args.items(multi=True) if name not in ("cursor", "limit")]
        args += [("limit", str(page.limit)), ("cursor", encode(page.listing, page.sort, key_of(shown[-1])))]
        next_link = f"{request.path}?{urlencode(args)}"
    headers = {"Link": f'<{next_link}>; rel="next"'} if next_link else None
    return json_response({"Items": [render(row) for row in shown], "Limit": page.limit, "Total": total,
                          "Next": next_link}, headers=headers)


def in_memory(page: PageRequest, rows: Iterable[Any], key_of: Callable[[Any], Key],
              render: Callable[[Any], Any] = lambda row: row) -> Response:
    """A page of a listing small enough to read whole (rules, test devices, tokens, accounts, logs):
    ordered by ``key_of``, which must be unique per row; ``Total`` is the whole listing's length."""
    ordered = sorted(rows, key=key_of)
    start = 0
    if page.after is not None:
        start = next((i for i, row in enumerate(ordered) if key_of(row) > page.after), len(ordered))
    return respond(page, ordered[start:start + page.limit + 1], key_of, render, total=len(ordered))


