"""External users from an LDAP directory or Active Directory (``ldap3``), for Basic.

A check finds the user's entry with the service account (``bind_dn``; anonymous when empty) under
``user_base`` with ``user_filter`` (``{user}`` escaped per RFC 4515), asks whether the entry is a
member of ``required_group`` (a base search of the group for ``<member attribute>=<user DN>``),
and binds as the entry with the password. An unknown name searches the group and binds as a DN
that does not exist, so it costs the directory the same searches and binds as a known one; an empty password is refused
before anything (an LDAP bind without a password is an anonymous bind, which "succeeds").

- Connections: at most ``pool_size`` per worker (and no more than half its threads), kept open
  and reused (LDAP binds are per connection, so each is used by one thread at a time and re-binds
  as the service account before its next search). A check that finds every connection in use
  waits up to a second — as long as one request thread stays free — else it is refused as busy
  (503), so a slow directory never holds every request thread.
- ``timeout`` bounds connecting and every answer. A directory that cannot be reached is refused
  at once for ``DOWN_SECONDS`` afterwards (503 with the reason) instead of every check waiting
  for its own timeout — internal checks, which need no user, are not held up.
- TLS: ``ldaps://`` URLs, or StartTLS on ``ldap://``; certificates are verified (against
  ``ca_file`` when given). Several URLs form a pool tried in turn.
- A success is remembered for ``CACHE_SECONDS`` under a keyed digest of (user, password) (a boot
  storm of phones sharing an account asks the directory once), a failure for
  ``FAILURE_CACHE_SECONDS``.

The directory hands out no NT hashes, so its users sign in with Basic only (NTLM against Active
Directory needs the domain controller's Netlogon service, which this server does not speak).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import queue
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from devupdate.devices.users import HashGate, UserStoreUnavailable

CACHE_SECONDS = 60.0
FAILURE_CACHE_SECONDS = 10.0
DOWN_SECONDS = 5.0
MAX_CACHED = 10_000


@dataclass(frozen=True)
class DirectoryConfig:
    urls: tuple[str, ...]
    user_base: str
    user_filter: str = "(uid={user})"
    bind_dn: str = ""
    bind_password: str = ""
    required_group: str = ""
    member_attribute: str = "member"
    start_tls: bool = False
    ca_file: str = ""
    timeout: float = 5.0
    pool_size: int = 4

    @classmethod
    def from_settings(cls, settings) -> DirectoryConfig:
        return cls(urls=tuple(u.strip() for u in settings.directory_url.split(",") if u.strip()),
                   user_base=settings.directory_user_base, user_filter=settings.directory_user_filter,
                   bind_dn=settings.directory_bind_dn, bind_password=settings.directory_bind_password,
                   required_group=settings.directory_required_group,
                   member_attribute=settings.directory_group_member_attribute,
                   start_tls=settings.directory_start_tls, ca_file=settings.directory_ca_file,
                   timeout=settings.directory_timeout, pool_size=settings.directory_pool_size)


class _Conn:
    """One pooled ldap3 connection and who it is bound as."""

    def __init__(self, connection: Any):
        self.ldap = connection
        self.as_service = False


class DirectoryUserStore:
    """See the module docstring. Implements :class:`devupdate.devices.users.UserStore`."""

    def __init__(self, config: DirectoryConfig, *, threads: int = 4):
        import ldap3

        self.config = config
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=config.ca_file or None)
        servers = [ldap3.Server(url, tls=tls, connect_timeout=config.timeout, get_info=ldap3.NONE,
                                use_ssl=urlsplit(url).scheme == "ldaps") for url in config.urls]
        # active=1: one round over the servers, then fail (True would retry for ever); the stubs say bool only
        self._servers = ldap3.ServerPool(servers, ldap3.ROUND_ROBIN, active=1, exhaust=False)  # type: ignore[arg-type]
        self._idle: queue.LifoQueue[_Conn] = queue.LifoQueue()
        # at most half the request threads ask the directory at once, and as many more wait as leave one
        # thread free: a slow directory never holds the threads internal checks need
        self._gate = HashGate.for_threads(threads, max(1, min(config.pool_size, threads // 2)))
        self._key = os.urandom(32)
        self._cache: dict[bytes, float] = {}
        self._failed: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down_reason = ""
        self._missing = f"cn=devupdate-no-such-user-{os.urandom(8).hex()},{config.user_base}"

    # --- UserStore -------------------------------------------------------------------------------

    def nt_hash(self, name: str) -> bytes | None:
        return None

    def verify(self, name: str, password: str) -> bool:
        """Raises :class:`UserStoreUnavailable` when the directory cannot be asked, and
        :class:`devupdate.devices.users.HashingBusy` when every connection stays in use."""
        if not name or not password or len(name) > 256 or "\x00" in name:
            return False
        token = hmac.new(self._key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        if self._cache.get(token, 0.0) > now:
            return True
        if self._failed.get(token, 0.0) > now:
            return False
        ok = self._ask(name, password)
        with self._lock:
            cache, seconds = (self._cache, CACHE_SECONDS) if ok else (self._failed, FAILURE_CACHE_SECONDS)
            if len(cache) >= MAX_CACHED:
                cache.clear()
            cache[token] = time.monotonic() + seconds
        return ok

    def close(self) -> None:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            self._discard(conn)

    # --- the directory ---------------------------------------------------------------------------

    def _ask(self, name: str, password: str) -> bool:
        if self._down_until > time.monotonic():
            raise UserStoreUnavailable(self._down_reason)
        with self._gate:
            return self._ask_with_slot(name, password)

    def _ask_with_slot(self, name: str, password: str) -> bool:
        if self._down_until > time.monotonic():  # found down while this check waited for its slot
            raise UserStoreUnavailable(self._down_reason)
        conn = None
        try:
            conn = self._take()
            ok = self._check(conn, name, password)
            self._idle.put(conn)
            conn = None
            return ok
        except Exception as exc:
            from ldap3.core.exceptions import LDAPException

            if not isinstance(exc, LDAPException | OSError):
                raise
            reason = (f"the directory at {', '.join(self.config.urls)} is unavailable "
                      f"({type(exc).__name__}: {str(exc)[:200]}); retry shortly")
            self._down_reason, self._down_until = reason, time.monotonic() + DOWN_SECONDS
            raise UserStoreUnavailable(reason) from None
        finally:
            if conn is not None:
                self._discard(conn)

    def _take(self) -> _Conn:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        import ldap3

        # ldap3 packs the receive timeout as whole seconds (SO_RCVTIMEO)
        ldap = ldap3.Connection(self._servers, receive_timeout=max(1, math.ceil(self.config.timeout)),
                                auto_bind=ldap3.AUTO_BIND_NONE,
                                read_only=True, raise_exceptions=False, client_strategy=ldap3.SYNC)
        ldap.open()
        if self.config.start_tls and not ldap.server.ssl:
            if not ldap.start_tls():
                raise _Failure("StartTLS refused: " + _describe(ldap))
        return _Conn(ldap)

    def _check(self, conn: _Conn, name: str, password: str) -> bool:
        import ldap3
        from ldap3.utils.conv import escape_filter_chars

        ldap = conn.ldap
        if not conn.as_service:
            if not ldap.rebind(user=self.config.bind_dn or None, password=self.config.bind_password or None):
                raise _Failure("the service account's bind was refused: " + _describe(ldap))
            conn.as_service = True
        query = self.config.user_filter.replace("{user}", escape_filter_chars(name))
        if not ldap.search(self.config.user_base, query, ldap3.SUBTREE, attributes=[], size_limit=2):
            if ldap.result.get("result") not in (0, 4, 32):  # success, size limit, no such object
                raise _Failure("the user search failed: " + _describe(ldap))
        entries = [entry for entry in ldap.response or [] if entry.get("type") == "searchResEntry"]
        dn = entries[0]["dn"] if len(entries) == 1 else None
        member = dn is not None
        if self.config.required_group:  # for an unknown name too, as a DN that is nobody's: the same cost
            member_filter = f"({self.config.member_attribute}={escape_filter_chars(dn or self._missing)})"
            ldap.search(self.config.required_group, member_filter, ldap3.BASE, attributes=[])
            member = dn is not None and any(entry.get("type") == "searchResEntry" for entry in ldap.response or [])
        conn.as_service = False
        bound = bool(ldap.rebind(user=dn or self._missing, password=password))
        if not bound and ldap.result.get("result") not in (49, 50, 53):  # invalid credentials, not allowed
            raise _Failure("the user's bind failed: " + _describe(ldap))
        return bound and member and dn is not None

    @staticmethod
    def _discard(conn: _Conn) -> None:
        try:
            conn.ldap.unbind()
        except Exception:  # noqa: BLE001, S110 - closing a connection we give up on
            pass


class _Failure(OSError):
    """The directory answered, but not as a working directory does (counts as unavailable)."""


def _describe(ldap: Any) -> str:
    result = getattr(ldap, "result", None) or {}
    return f"{result.get('description', '?')} {result.get('message', '')}".strip()[:200]
