"""NTLM and Negotiate on the external side: pyspnego's acceptor, one security context per connection.

Lync phones outside the firewall answer the ``/RequestHandlerExt`` challenge with NTLM, a three-leg
handshake on one kept-alive connection: NEGOTIATE → (401 with) CHALLENGE → AUTHENTICATE. The
protocol work is pyspnego's (``NTLMProxy``, wrapped in its ``NegotiateProxy`` for ``Negotiate``);
this module only decides where a context lives and where its credentials come from:

- A context is created by a NEGOTIATE message and kept for the connection that sent it
  (:class:`devupdate.web.connection.Connection`, handed out by the server's worker): an
  AUTHENTICATE message is verified only against the pending context of its own connection, so one
  replayed on another connection, or a handshake split across connections, finds none and is
  refused. A context is used once (verified or refused, it is gone), expires after ``ttl``
  seconds, is dropped when its connection closes, and at most ``max_pending`` wait per worker
  process (beyond that the oldest is dropped).
- pyspnego's acceptor reads credentials only from the file named by ``NTLM_USER_FILE``; its one
  lookup is routed, while our contexts step, to the user store's NT hashes instead
  (:func:`_resolving`). A name the store does not know gets a random hash, so it costs the same
  verification as a known one and fails. Only NTLMv2 responses are accepted (LM and NTLMv1 are
  refused, as with LmCompatibilityLevel 5).
- pyspnego compares the response with ``==``; that cannot be probed, because every context has a
  fresh server challenge and dies after one AUTHENTICATE.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from devupdate.devices.users import UserStore
from devupdate.web.connection import Connection

log = logging.getLogger("devupdate.ntlm")

SCHEMES = ("Negotiate", "NTLM")
_NTLMSSP = b"NTLMSSP\x00"
_START, _FINISH = "start", "finish"

# --- pyspnego's credential lookup, routed to a user store while one of our contexts steps -----------

_STORE = "devupdate user store"  # stands for the NTLM_USER_FILE path while ours is in use
_Lookup = Callable[[str | None, str | None], tuple[str | None, str | None, bytes, bytes]]
_lookup: contextvars.ContextVar[_Lookup | None] = contextvars.ContextVar("devupdate_ntlm_lookup", default=None)


def _install_lookup() -> str:
    """Route pyspnego's NTLM credential lookup to ``_lookup`` when it is set; '' on success, else why not."""
    try:
        from spnego import _ntlm as impl
    except ImportError as exc:
        return f"pyspnego is not installed ({exc})"
    original_file = getattr(impl, "_get_credential_file", None)
    original_get = getattr(impl, "_get_credential", None)
    if original_file is None or original_get is None or not hasattr(impl, "NTLMProxy"):
        return "this pyspnego version has no credential lookup to route (setup.cfg pins the versions that do)"
    if getattr(original_get, "__devupdate__", False):
        return ""

    def credential_file() -> str | None:
        return _STORE if _lookup.get() is not None else original_file()

    def credential(store: str | None, domain: str | None = None, username: str | None = None):
        lookup = _lookup.get()
        if store != _STORE or lookup is None:
            return original_get(store, domain, username)
        return lookup(domain, username)

    credential.__devupdate__ = True  # type: ignore[attr-defined]
    impl._get_credential_file = credential_file
    impl._get_credential = credential
    return ""


UNAVAILABLE = _install_lookup()


@contextlib.contextmanager
def _resolving(lookup: _Lookup) -> Iterator[None]:
    token = _lookup.set(lookup)
    try:
        yield
    finally:
        _lookup.reset(token)


def _refuse_lookup(domain: str | None, username: str | None) -> tuple[str | None, str | None, bytes, bytes]:
    raise LookupError("no credential lookup while a context is created")


def _new_context(scheme: str) -> Any:
    """pyspnego's pure-Python acceptor for ``scheme`` (never the platform's GSSAPI/SSPI, whose
    credentials are not ours), NTLMv2 only."""
    import spnego
    from spnego._ntlm import NTLMProxy
    from spnego._spnego import GSSMech

    with _resolving(_refuse_lookup):
        ntlm = NTLMProxy(usage="accept", protocol="ntlm")
    ntlm._lm = ntlm._nt_v1 = False  # LmCompatibilityLevel 5: NTLMv2 responses only
    if scheme == "NTLM":
        return ntlm
    return spnego.server(protocol="negotiate", options=spnego.NegotiateOptions.use_negotiate,
                         _negotiate_contexts={GSSMech.ntlm: ntlm})


# --- the handshakes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """What one leg gives: a challenge to send (401), a user (authenticated), or a refusal."""

    challenge: str = ""  # WWW-Authenticate value: "<scheme> <base64 token>"
    user: str = ""
    code: str = ""  # refusal code for the XML body and the audit log
    message: str = ""
    failed_login: bool = False  # a verdict on credentials (counted per source), not a protocol slip


@dataclass
class _Pending:
    connection: Connection
    context: Any
    scheme: str
    expires: float


def _refusal(code: str, message: str, *, failed_login: bool = False) -> Step:
    return Step(code=code, message=message, failed_login=failed_login)


def _kind(token: bytes) -> str | None:
    """``start`` for a NEGOTIATE (or SPNEGO NegTokenInit), ``finish`` for an AUTHENTICATE (or
    NegTokenResp), ``None`` for anything else."""
    if token.startswith(_NTLMSSP) and len(token) >= 12:
        kind = int.from_bytes(token[8:12], "little")
        return _START if kind == 1 else _FINISH if kind == 3 else None
    if token[:1] == b"\x60":
        return _START
    if token[:1] == b"\xa1":
        return _FINISH
    return None


class Handshakes:
    """The NTLM / Negotiate handshakes of one worker process (see the module docstring)."""

    def __init__(self, users: UserStore, *, ttl: float = 30.0, max_pending: int = 1024,
                 domains: tuple[str, ...] = ()):
        self.users, self.ttl, self.max_pending = users, ttl, max_pending
        self.domains = {domain.upper() for domain in domains}
        self._pending: OrderedDict[str, _Pending] = OrderedDict()  # connection id → context, oldest first
        self._watched: set[str] = set()  # connections whose close drops their context
        self._lock = threading.Lock()
        self._dummy = os.urandom(16)  # the NT hash of every unknown name: matches no password

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def step(self, scheme: str, value: str, connection: Connection | None) -> Step:
        """One leg of ``Authorization: <scheme> <value>`` on ``connection``. Raises
        :class:`devupdate.devices.users.UserStoreUnavailable` when the user cannot be read."""
        if connection is None or not connection.open:
            return _refusal("NtlmNeedsConnection", f"{scheme} needs the kept-alive connections of 'devupdate "
                            "serve'; this server does not track them: use Basic")
        try:
            token = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            token = b""
        kind = _kind(token) if token else None
        if kind is None:
            return _refusal("BadToken", f"the {scheme} token is not base64 of an NTLM or SPNEGO message")
        if kind == _START:
            return self._start(scheme, token, connection)
        return self._finish(scheme, token, connection)

    def _start(self, scheme: str, token: bytes, connection: Connection) -> Step:
        context = _new_context(scheme)
        try:
            with _resolving(_refuse_lookup):
                out = context.step(token)
        except Exception as exc:  # noqa: BLE001 - pyspnego raises many kinds on a bad message
            return _refusal("BadToken", f"the {scheme} NEGOTIATE message was refused: {_reason(exc)}")
        if not out:
            return _refusal("BadToken", f"the {scheme} NEGOTIATE message gave no challenge")
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            self._pending.pop(connection.id, None)  # a new handshake replaces this connection's old one
            while len(self._pending) >= self.max_pending:
                self._pending.popitem(last=False)
            self._pending[connection.id] = _Pending(connection, context, scheme, now + self.ttl)
            watch = connection.id not in self._watched
            self._watched.add(connection.id)
        if watch:
            connection.on_close(lambda: self._closed(connection.id))
        return Step(challenge=f"{scheme} {base64.b64encode(out).decode()}")

    def _finish(self, scheme: str, token: bytes, connection: Connection) -> Step:
        now = time.monotonic()
        with self._lock:
            pending = self._pending.pop(connection.id, None)
        if pending is None or pending.connection is not connection or pending.scheme != scheme:
            return _refusal("NoHandshake", f"no {scheme} handshake is in progress on this connection: send the "
                            "NEGOTIATE message first, then the AUTHENTICATE message on the same connection",
                            failed_login=True)
        if pending.expires <= now:
            return _refusal("HandshakeExpired", f"the {scheme} handshake took longer than {self.ttl:.0f} s; "
                            "start again", failed_login=True)
        resolved: list[str] = []

        def lookup(domain: str | None, username: str | None) -> tuple[str | None, str | None, bytes, bytes]:
            name = username or ""
            known = not self.domains or not domain or domain.upper() in self.domains
            digest = self.users.nt_hash(name) if known and name else None
            if digest is not None:
                resolved.append(name)
            return domain or None, name, b"\x00" * 16, digest if digest is not None else self._dummy

        try:
            with _resolving(lookup):
                pending.context.step(token)
        except Exception as exc:
            from devupdate.devices.users import UserStoreUnavailable

            if isinstance(exc, UserStoreUnavailable):
                raise
            log.info("%s authentication refused: %s", scheme, _reason(exc))
            return _refusal("BadCredentials", "user name or password is wrong", failed_login=True)
        if not pending.context.complete or not resolved:
            return _refusal("BadCredentials", "user name or password is wrong", failed_login=True)
        return Step(user=resolved[0])

    def _expire(self, now: float) -> None:
        while self._pending:
            first = next(iter(self._pending.values()))
            if first.expires > now and first.connection.open:
                return
            self._pending.popitem(last=False)

    def _closed(self, connection_id: str) -> None:
        with self._lock:
            self._pending.pop(connection_id, None)
            self._watched.discard(connection_id)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
