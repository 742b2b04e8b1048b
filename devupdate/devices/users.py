"""Credentials for the external side. ``UserStore`` is the interface an LDAP / Active Directory
backend implements later; the default is a file of scrypt hashes in the data directory.

Verifying scrypt costs tens of milliseconds by design, so successful checks are cached for a
short time under a keyed digest of (user, password) — never the password itself.

An unknown name costs exactly what a known one does — one scrypt run against ``DUMMY_HASH``, which
is built from constants (no hashing at start-up) and matches no password — so response times do not
tell which names exist. Every scrypt run is counted (``devupdate_password_hashes_total``), and a
store given a :class:`HashGate` runs at most that many at once: password guessing then occupies a
bounded share of the request threads, and a check that finds every slot taken for
``HashGate.wait_seconds`` is refused (:class:`HashingBusy`). Checks of the same (user, password)
that arrive together — a boot storm of phones sharing one account — share one scrypt run.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import threading
import time
from pathlib import Path
from typing import Protocol

from devupdate.errors import Conflict, DevupdateError, NotFound

_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_B64 = base64.b64encode
# Same parameters as every new hash; salt and digest are random, so no password matches it.
DUMMY_HASH = (f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_B64(os.urandom(16)).decode()}$"
              f"{_B64(os.urandom(32)).decode()}")


class UserStore(Protocol):
    def verify(self, name: str, password: str) -> bool: ...


class HashingBusy(DevupdateError):
    """Every password-hashing slot of this process is taken; the caller answers 503 at once."""

    status = 503
    code = "busy"


class HashGate:
    """At most ``slots`` scrypt runs at once in this process; a run that finds none free within
    ``wait_seconds`` (a few runs' time) is refused rather than holding its thread longer."""

    def __init__(self, slots: int, wait_seconds: float = 1.0):
        if slots < 1:
            raise ValueError("a hash gate needs at least one slot")
        self.slots = slots
        self.wait_seconds = wait_seconds
        self._semaphore = threading.BoundedSemaphore(slots)

    def __enter__(self) -> HashGate:
        if not self._semaphore.acquire(timeout=self.wait_seconds):
            raise HashingBusy("the server is busy checking passwords; retry in a second")
        return self

    def __exit__(self, *exc) -> None:
        self._semaphore.release()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    """The one place scrypt runs, so the metric counts every run."""
    from devupdate import metrics

    metrics.password_hashed()
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=256 * 1024 * 1024)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, 32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_B64(salt).decode()}${_B64(digest).decode()}"


def check_password(password: str, encoded: str) -> bool:
    """One scrypt run and a constant-time comparison; unknown hash formats simply fail."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class _Shared:
    """One scrypt run that concurrent checks of the same credentials wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.busy = False


class FileUserStore:
    """``<home>/users`` — one ``name:hash`` per line; re-read when the file changes."""

    CACHE_SECONDS = 300

    def __init__(self, path: Path, *, gate: HashGate | None = None):
        self.path = path
        self.gate = gate
        self._users: dict[str, str] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._cache: dict[bytes, float] = {}
        self._key = os.urandom(32)
        self._lock = threading.Lock()
        self._running: dict[bytes, _Shared] = {}  # token → the scrypt run other callers wait for

    def _load(self) -> dict[str, str]:
        now = time.monotonic()
        if now - self._checked < 2 and self._stamp is not None:
            return self._users
        self._checked = now
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._users, self._stamp = {}, (0, 0)
            return self._users
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            users = {}
            for line in self.path.read_text("utf-8").splitlines():
                if ":" in line and not line.startswith("#"):
                    name, encoded = line.split(":", 1)
                    users[name.strip()] = encoded.strip()
            self._users, self._stamp, self._cache = users, stamp, {}
        return self._users

    def verify(self, name: str, password: str) -> bool:
        """Raises :class:`HashingBusy` when the gate has no free slot in time (nothing was checked)."""
        with self._lock:
            users = self._load()
        encoded = users.get(name)
        token = hmac.new(self._key, f"{name}\0{password}\0{encoded}".encode(), hashlib.sha256).digest()
        if encoded is not None:
            expiry = self._cache.get(token)
            if expiry is not None and expiry > time.monotonic():
                return True
        with self._lock:
            shared = self._running.get(token)
            leader = shared is None
            if shared is None:
                shared = self._running[token] = _Shared()
        if not leader:
            shared.done.wait()
            if shared.busy:
                raise HashingBusy("the server is busy checking passwords; retry in a second")
            return shared.ok
        try:
            with self.gate or contextlib.nullcontext():
                ok = check_password(password, DUMMY_HASH if encoded is None else encoded) and encoded is not None
            if ok:
                self._cache[token] = time.monotonic() + self.CACHE_SECONDS
            shared.ok = ok
            return ok
        except HashingBusy:
            shared.busy = True
            raise
        finally:
            with self._lock:
                del self._running[token]
            shared.done.set()

    # --- management (devupdate users add|list|remove) ----------------------------------------

    def names(self) -> list[str]:
        self._checked = 0
        return sorted(self._load())

    def _write(self, users: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{name}:{encoded}\n" for name, encoded in sorted(users.items())))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.path)
        self._checked, self._stamp = 0, None

    def add(self, name: str, password: str, *, replace: bool = False) -> None:
        if not _NAME.match(name):
            raise DevupdateError(f"user name {name!r}: letters, digits and . _ @ + - only", code="bad-name")
        if len(password) < 8:
            raise DevupdateError("password too short: use at least 8 characters", code="weak-password")
        self._checked = 0
        users = dict(self._load())
        if name in users and not replace:
            raise Conflict(f"user {name!r} exists; remove it first or use --replace", code="duplicate-user")
        users[name] = hash_password(password)
        self._write(users)

    def remove(self, name: str) -> None:
        self._checked = 0
        users = dict(self._load())
        if name not in users:
            raise NotFound(f"no user {name!r}; see 'devupdate users list'", code="no-such-user")
        del users[name]
        self._write(users)
