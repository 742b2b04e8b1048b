"""Same-origin check of console POSTs, a second layer beside the CSRF token. No Flask here.

Browsers send ``Origin`` on every cross-site POST (older ones at least ``Referer``; the console's
own pages send theirs, ``Referrer-Policy: same-origin``). A POST whose ``Origin`` — or, without
one, whose ``Referer`` — names another host or port than the request's ``Host`` is refused, and
so is ``Origin: null`` (sandboxed frames, privacy redirects). A POST with neither header (scripts,
the upload tool) is left to the CSRF token. A console reached through a proxy that rewrites
``Host`` lists its public origin in ``console_trusted_origins``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin or URL; None when it has none (``null``, garbage)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def foreign_origin(origin: str | None, referer: str | None, host: str, trusted: tuple[str, ...] = ()) -> str | None:
    """The origin a POST came from when it is not this console's (or unreadable); None when it is
    ours or the request names none."""
    claimed = origin if origin is not None else referer
    if claimed is None or not claimed.strip():
        return None
    parsed = _origin_of(claimed)
    shown = claimed.strip()[:200] if parsed is None else f"{parsed[0]}://{parsed[1]}:{parsed[2]}"
    if parsed is None:
        return shown
    if any(_origin_of(entry) == parsed for entry in trusted):
        return None
    own = _origin_of(f"{parsed[0]}://{host}")  # the Host header's port defaults by the claimed scheme
    return None if own is not None and own[1:] == parsed[1:] else shown
