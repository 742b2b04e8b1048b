"""Credentials for the external side. ``UserStore`` is the interface an LDAP / Active Directory
backend implements later; the default is a file of scrypt hashes in the data directory.

Verifying scrypt costs tens of milliseconds by design, so successful checks are cached for a
short time under a keyed digest of (user, password) — never the password itself.
"""

from __future__ import annotations

import base64
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


class UserStore(Protocol):
    def verify(self, name: str, password: str) -> bool: ...


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, encoded: str) -> bool:
    """Constant-time comparison; unknown hash formats simply fail."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class FileUserStore:
    """``<home>/users`` — one ``name:hash`` per line; re-read when the file changes."""

    CACHE_SECONDS = 300

    def __init__(self, path: Path):
        self.path = path
        self._users: dict[str, str] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._cache: dict[bytes, float] = {}
        self._key = os.urandom(32)
        self._lock = threading.Lock()

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
        with self._lock:
            users = self._load()
        encoded = users.get(name)
        if encoded is None:
            check_password(password, hash_password("x", salt=b"0" * 16))  # same cost for unknown users
            return False
        token = hmac.new(self._key, f"{name}\0{password}\0{encoded}".encode(), hashlib.sha256).digest()
        expiry = self._cache.get(token)
        if expiry is not None and expiry > time.monotonic():
            return True
        if check_password(password, encoded):
            self._cache[token] = time.monotonic() + self.CACHE_SECONDS
            return True
        return False

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
