"""Credentials for the external side. ``UserStore`` is the interface an LDAP / Active Directory
backend implements later; the default is a table of scrypt hashes in the database (shared by every
node; earlier versions kept a file in the data directory, imported once at start).

Verifying scrypt costs tens of milliseconds by design, so successful checks are cached for a
short time under a keyed digest of (user, password) — never the password itself.

An unknown name costs exactly what a known one does — one scrypt run against ``DUMMY_HASH``, which
is built from constants (no hashing at start-up) and matches no password — so response times do not
tell which names exist. Every scrypt run is counted (``devupdate_password_hashes_total``), and a
store given a :class:`HashGate` runs at most that many at once: password guessing then occupies a
bounded share of the request threads, and a check that finds every slot taken for
``HashGate.wait_seconds`` — or finds the few waiting places taken too — is refused
(:class:`HashingBusy`). Checks of the same (user, password) that arrive together — a boot storm of
phones sharing one account — share one scrypt run; a success is remembered for ``CACHE_SECONDS``,
a failure for ``FAILURE_CACHE_SECONDS`` (so repeating one wrong password costs no scrypt either).

For NTLM (:mod:`devupdate.devices.ntlm`) the store also keeps each user's NT hash (MD4 of the
UTF-16 password, what NTLM is keyed with): written whenever a password is set, wrapped with
``nt_hash_key`` (AES key wrap) when that setting is given. It is password-equivalent for NTLM, so
a store given ``store_nt_hash=False`` (NTLM switched off) writes none. Users whose password was
set before this existed have none until it is set again; NTLM refuses them (Basic still works).
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

import peewee

from devupdate import db
from devupdate.db import BaseModel, utcnow, write_transaction
from devupdate.errors import Conflict, DevupdateError, NotFound

_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_B64 = base64.b64encode
# Same parameters as every new hash; salt and digest are random, so no password matches it.
DUMMY_HASH = (f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_B64(os.urandom(16)).decode()}$"
              f"{_B64(os.urandom(32)).decode()}")


class UserStore(Protocol):
    """A credential source of the external side: Basic checks a password; NTLM needs the NT hash."""

    def verify(self, name: str, password: str) -> bool: ...

    def nt_hash(self, name: str) -> bytes | None:
        """The user's NT hash; ``None`` for an unknown user, one without a hash, or a source that
        cannot hand hashes out (a directory). Raises :class:`UserStoreUnavailable`."""
        ...


NT_PLAIN, NT_WRAPPED = "nt$", "ntw$"


def nt_hash_of(password: str) -> bytes:
    """MD4 of the UTF-16LE password (MS-NLMP NTOWFv1), computed by pyspnego (OpenSSL 3 has no MD4)."""
    from spnego._ntlm_raw.crypto import ntowfv1

    return ntowfv1(password)


def encode_nt_hash(digest: bytes, key: bytes | None) -> str:
    if key is None:
        return NT_PLAIN + digest.hex()
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap

    return NT_WRAPPED + _B64(aes_key_wrap(key, digest)).decode()


def decode_nt_hash(encoded: str | None, key: bytes | None) -> bytes | None:
    """The 16 bytes, or ``None`` when there is none, it is malformed, or it is wrapped under a key
    this process does not have (set ``nt_hash_key`` as on the node that wrote it)."""
    if not encoded:
        return None
    try:
        if encoded.startswith(NT_PLAIN):
            digest = bytes.fromhex(encoded[len(NT_PLAIN):])
        elif encoded.startswith(NT_WRAPPED) and key is not None:
            from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

            try:
                digest = aes_key_unwrap(key, base64.b64decode(encoded[len(NT_WRAPPED):]))
            except InvalidUnwrap:
                return None
        else:
            return None
    except (ValueError, TypeError):
        return None
    return digest if len(digest) == 16 else None


class HashingBusy(DevupdateError):
    """Every password-hashing slot of this process is taken; the caller answers 503 at once."""

    status = 503
    code = "busy"


class HashGate:
    """At most ``slots`` scrypt runs at once in this process. A run that finds none free waits up to
    ``wait_seconds`` (a few runs' time) — but only ``waiters`` runs may wait at once, the others are
    refused at once, so password checks never hold more than ``slots + waiters`` request threads."""

    def __init__(self, slots: int, waiters: int = 0, wait_seconds: float = 1.0):
        if slots < 1 or waiters < 0:
            raise ValueError("a hash gate needs at least one slot and no negative number of waiters")
        self.slots, self.waiters, self.wait_seconds = slots, waiters, wait_seconds
        self._running = threading.BoundedSemaphore(slots)
        self._waiting = threading.BoundedSemaphore(waiters) if waiters else None

    @classmethod
    def for_threads(cls, threads: int, slots: int) -> HashGate:
        """``slots`` runs, and as many waiters as leave one request thread free for everything else."""
        return cls(slots, waiters=max(0, threads - slots - 1))

    def __enter__(self) -> HashGate:
        if self._running.acquire(blocking=False):
            return self
        if self._waiting is not None and self._waiting.acquire(blocking=False):
            try:
                if self._running.acquire(timeout=self.wait_seconds):
                    return self
            finally:
                self._waiting.release()
        raise HashingBusy("the server is busy checking passwords; retry in a second")

    def __exit__(self, *exc) -> None:
        self._running.release()


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


class ExternalUser(BaseModel):
    """A user of the external side: the name and its scrypt hash (never the password)."""

    name = peewee.CharField(primary_key=True, max_length=128)
    password_hash = peewee.CharField(max_length=255)
    nt_hash = peewee.CharField(max_length=255, null=True)  # for NTLM; see the module docstring
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


class UserStoreUnavailable(DevupdateError):
    """The user table could not be read and this process has no recent copy of the user."""

    status = 503
    code = "user-store-unavailable"


class DatabaseUserStore:
    """External users in the database, so every node shares them and a change is one transaction.

    A name's hash is looked up at most every ``LOOKUP_SECONDS`` per process (a changed or removed
    user takes effect within that time), so the steady state of a boot storm costs no query; while
    the database is away, the last copy read keeps answering."""

    LOOKUP_SECONDS = 2.0
    CACHE_SECONDS = 300
    FAILURE_CACHE_SECONDS = 10
    MAX_CACHED = 10_000

    def __init__(self, *, gate: HashGate | None = None, nt_key: bytes | None = None, store_nt_hash: bool = True):
        self.gate = gate
        self.nt_key, self.store_nt_hash = nt_key, store_nt_hash
        self._hashes: dict[str, tuple[tuple[str, str | None] | None, float]] = {}  # name → (hashes or None, read at)
        self._cache: dict[bytes, float] = {}  # keyed digest of a verified (user, password) → expiry
        self._failed: dict[bytes, float] = {}  # keyed digest of a refused (user, password, hash) → expiry
        self._key = os.urandom(32)
        self._lock = threading.Lock()
        self._running: dict[bytes, _Shared] = {}  # token → the scrypt run other callers wait for

    def _lookup(self, name: str) -> tuple[str, str | None] | None:
        """(scrypt hash, stored NT hash) of ``name``, ``None`` for an unknown name."""
        now = time.monotonic()
        known = self._hashes.get(name)
        if known is not None and now - known[1] < self.LOOKUP_SECONDS:
            return known[0]
        try:
            db.database.connect(reuse_if_open=True)
            row = ExternalUser.get_or_none(ExternalUser.name == name)
        except peewee.DatabaseError as exc:
            if known is not None:
                return known[0]
            raise UserStoreUnavailable("the user store is unavailable (database: "
                                       f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}); "
                                       "retry shortly") from None
        found = (row.password_hash, row.nt_hash) if row is not None else None
        with self._lock:
            if len(self._hashes) >= self.MAX_CACHED:
                self._hashes.clear()
            self._hashes[name] = (found, now)
        return found

    def nt_hash(self, name: str) -> bytes | None:
        """Raises :class:`UserStoreUnavailable` when the user cannot be read."""
        found = self._lookup(name) if _NAME.match(name) else None
        return decode_nt_hash(found[1], self.nt_key) if found is not None else None

    def verify(self, name: str, password: str) -> bool:
        """Raises :class:`HashingBusy` when the gate has no free slot in time, and
        :class:`UserStoreUnavailable` when the user cannot be read (nothing was checked)."""
        found = self._lookup(name) if _NAME.match(name) else None
        encoded = found[0] if found is not None else None
        token = hmac.new(self._key, f"{name}\0{password}\0{encoded}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        if encoded is not None and self._cache.get(token, 0.0) > now:
            return True
        if self._failed.get(token, 0.0) > now:  # the token names the hash: a new password is checked anew
            return False
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
            with self._lock:
                cache, seconds = (self._cache, self.CACHE_SECONDS) if ok else (self._failed, self.FAILURE_CACHE_SECONDS)
                if len(cache) >= self.MAX_CACHED:
                    cache.clear()
                cache[token] = time.monotonic() + seconds
            shared.ok = ok
            return ok
        except HashingBusy:
            shared.busy = True
            raise
        finally:
            with self._lock:
                del self._running[token]
            shared.done.set()

    # --- management (devupdate users add|list|remove); callers hold the transaction ----------------

    def listing(self) -> list[tuple[str, bool]]:
        """(name, has an NT hash) of every user: one without signs in with Basic until its password is set."""
        query = ExternalUser.select(ExternalUser.name, ExternalUser.nt_hash).order_by(ExternalUser.name)
        return [(name, bool(nt)) for (name, nt) in db.tuples(query)]

    def credentials(self, name: str, password: str) -> tuple[str, str | None]:
        """(scrypt hash, sealed NT hash or None) of a valid name and password. Slow on purpose: call it
        before the transaction that stores them, so no writer waits for the hash."""
        if not _NAME.match(name):
            raise DevupdateError(f"user name {name!r}: letters, digits and . _ @ + - only", code="bad-name")
        if len(password) < 8:
            raise DevupdateError("password too short: use at least 8 characters", code="weak-password")
        nt = encode_nt_hash(nt_hash_of(password), self.nt_key) if self.store_nt_hash else None
        return hash_password(password), nt

    def put(self, name: str, credentials: tuple[str, str | None], *, replace: bool = False) -> bool:
        """Store :meth:`credentials` for ``name``; True when the user existed (its password changed)."""
        encoded, nt = credentials
        existing = ExternalUser.get_or_none(ExternalUser.name == name)
        if existing is not None and not replace:
            raise Conflict(f"user {name!r} exists; remove it first or use --replace", code="duplicate-user")
        if existing is None:
            ExternalUser.create(name=name, password_hash=encoded, nt_hash=nt)
        else:
            existing.password_hash, existing.nt_hash, existing.updated_at = encoded, nt, utcnow()
            existing.save()
        return existing is not None

    def add(self, name: str, password: str, *, replace: bool = False) -> bool:
        """:meth:`credentials` then :meth:`put`, for callers outside any transaction."""
        return self.put(name, self.credentials(name, password), replace=replace)

    def remove(self, name: str) -> None:
        if not ExternalUser.delete().where(ExternalUser.name == name).execute():
            raise NotFound(f"no user {name!r}; see 'devupdate users list'", code="no-such-user")


def import_user_file(path: Path) -> int:
    """Once, at start: the users file earlier versions kept (``name:hash`` per line) moves into the
    database (names already there win) and is kept beside as ``users.imported`` for reference.
    Returns how many users were added."""
    if not path.is_file():
        return 0
    users = {}
    for line in path.read_text("utf-8").splitlines():
        if ":" in line and not line.startswith("#"):
            name, encoded = (part.strip() for part in line.split(":", 1))
            if _NAME.match(name) and encoded.startswith("scrypt$"):
                users[name] = encoded
    with write_transaction():
        present = {n for (n,) in db.tuples(ExternalUser.select(ExternalUser.name).where(
            ExternalUser.name.in_(list(users) or [""])))}
        added = [name for name in users if name not in present]
        for name in added:  # another node sharing the data directory may import the same file
            ExternalUser.insert(name=name, password_hash=users[name]).on_conflict_ignore().execute()
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, path.with_name(path.name + ".imported"))
    return len(added)
