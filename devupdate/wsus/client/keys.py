"""This server's ServerId and cookie keys (spec/wsus.md §4.3), read from the database.

The key ring is cached in each worker for a few seconds; a cookie under a key id the cache does
not know reloads it before the answer is ``ServerChanged``, so a key made on another node opens at
once. :func:`rotate` (``devupdate wsus rotate-cookie-key``) retires every current key and makes a
new one; a retired key opens cookies of a kind for one lifetime of that kind after its retirement,
and is removed from the database once the longest lifetime has passed.

With ``[wsus] cookie_master_key`` set, a key's secret is stored wrapped with it (AES key wrap,
RFC 3394: ``w:`` and the base64 of the 40 wrapped bytes) instead of as hex; a rotation wraps the
kept keys too. A node without the master key cannot read a wrapped key: its cookies answer
``ServerChanged`` there, and sealing fails with the setting named in the log.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from devupdate.audit import trail
from devupdate.db import database, iso_utc, locked, utcnow, write_transaction
from devupdate.wsus.client import cookies
from devupdate.wsus.client.models import CookieKey, ServerIdentity

log = logging.getLogger("devupdate.wsus.client")

#: seconds a worker trusts its copy of the key ring (a miss reloads it at once)
CACHE_SECONDS = 5.0
WRAPPED = "w:"


@dataclass(frozen=True)
class Key:
    key_id: bytes
    secret: bytes
    created: datetime  # aware UTC
    retired: datetime | None

    @property
    def hex_id(self) -> str:
        return self.key_id.hex()


def lifetimes(settings: Any) -> dict[str, int]:
    """Seconds a cookie of each kind lives (settings ``[wsus] *_cookie_lifetime``)."""
    return {cookies.AUTH: settings.wsus_auth_cookie_lifetime, cookies.CLIENT: settings.wsus_client_cookie_lifetime,
            cookies.DSS_AUTH: settings.wsus_auth_cookie_lifetime, cookies.DSS: settings.wsus_dss_cookie_lifetime}


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _database_key() -> object:
    """The database object itself: a cache is valid only for the database it was read from (held,
    so a later database can never take its identity)."""
    return database.obj


# --- the ServerId -------------------------------------------------------------------------------------

_server_id: tuple[object, str] | None = None


def server_id() -> str:
    """This installation's ServerId (a lower-case GUID), made once and then never changed."""
    global _server_id
    known = _server_id
    if known is not None and known[0] is _database_key():
        return known[1]
    ServerIdentity.insert(id=1, server_id=str(uuid.uuid4())).on_conflict_ignore().execute()
    found: str = ServerIdentity.get_by_id(1).server_id
    _server_id = (_database_key(), found)
    return found


# --- secrets at rest ----------------------------------------------------------------------------------

def master_key(settings: Any) -> bytes | None:
    value = getattr(settings, "wsus_cookie_master_key", "") if settings is not None else ""
    return bytes.fromhex(value) if value else None


def store_secret(secret: bytes, master: bytes | None) -> str:
    """A secret as its row keeps it: wrapped with the master key when there is one, else hex."""
    if master is None:
        return secret.hex()
    return WRAPPED + base64.b64encode(aes_key_wrap(master, secret)).decode("ascii")


def read_secret(stored: str, master: bytes | None) -> bytes | None:
    """The secret of a row; ``None`` when it is wrapped and the master key is missing or another."""
    if not stored.startswith(WRAPPED):
        return bytes.fromhex(stored)
    if master is None:
        return None
    try:
        return aes_key_unwrap(master, base64.b64decode(stored[len(WRAPPED):], validate=True))
    except (InvalidUnwrap, binascii.Error, ValueError):
        return None


# --- the key ring -------------------------------------------------------------------------------------

@dataclass
class _Cache:
    database_key: object = None
    master: bytes | None = None
    loaded: float = float("-inf")
    keys: tuple[Key, ...] = ()


_cache = _Cache()
_cache_lock = threading.Lock()
#: a key id the ring lacks reloads it (a key another node just made opens at once), but at most this
#: often per worker: anyone can send cookies with random key ids, and each would cost a query
MISS_RELOAD_SECONDS = 1.0
_last_miss_reload = float("-inf")


def _load(master: bytes | None) -> tuple[Key, ...]:
    rows = CookieKey.select().order_by(CookieKey.created.desc(), CookieKey.key_id.desc())
    found = []
    for row in rows:
        secret = read_secret(row.secret, master)
        if secret is None:
            log.error("cookie key %s is stored wrapped with a master key this node does not have: set "
                      "[wsus] cookie_master_key (DEVUPDATE_WSUS_COOKIE_MASTER_KEY) as on the other nodes", row.key_id)
            continue
        found.append(Key(bytes.fromhex(row.key_id), secret, row.created.replace(tzinfo=UTC), _aware(row.retired)))
    return tuple(found)


def _keys(settings: Any = None, *, reload: bool = False) -> tuple[Key, ...]:
    """The readable keys, newest first. ``settings`` names the master key; without them, the one
    this worker last read the ring with."""
    global _cache
    with _cache_lock:
        master = master_key(settings) if settings is not None else _cache.master
        fresh = (_cache.database_key is _database_key() and _cache.master == master
                 and time.monotonic() - _cache.loaded < CACHE_SECONDS)
        if fresh and not reload:
            return _cache.keys
    loaded = _load(master)
    with _cache_lock:
        _cache = _Cache(_database_key(), master, time.monotonic(), loaded)
    return loaded


def forget_cache() -> None:
    """Drop this worker's copy of the key ring (tests, and after a rotation here)."""
    global _cache, _server_id, _last_miss_reload
    with _cache_lock:
        _cache = _Cache()
        _last_miss_reload = float("-inf")
    _server_id = None


def _reloaded_for_miss(settings: Any) -> tuple[Key, ...]:
    """The ring read again for a key id it lacks; the cached one when a miss reloaded it under
    :data:`MISS_RELOAD_SECONDS` ago."""
    global _last_miss_reload
    with _cache_lock:
        now = time.monotonic()
        throttled = now - _last_miss_reload < MISS_RELOAD_SECONDS
        if not throttled:
            _last_miss_reload = now
    return _keys(settings, reload=not throttled)


def _new_key_row(existing: set[str], master: bytes | None) -> CookieKey:
    while True:
        key_id = os.urandom(cookies.KEY_ID_SIZE).hex()
        if key_id not in existing:  # unique per server (§4.3)
            return CookieKey.create(key_id=key_id, secret=store_secret(os.urandom(cookies.SECRET_SIZE), master),
                                    created=utcnow())


def sealing_key(settings: Any = None) -> Key:
    """The newest current key; the first one is made here when the database has none."""
    for key in _keys(settings):
        if key.retired is None:
            return key
    with write_transaction():
        server_id()
        locked(ServerIdentity.select().where(ServerIdentity.id == 1)).get()  # one maker at a time
        if not CookieKey.select().where(CookieKey.retired.is_null()).exists():
            _new_key_row({row.key_id for row in CookieKey.select(CookieKey.key_id)},
                         master_key(settings) if settings is not None else _cache.master)
    for key in _keys(settings, reload=True):
        if key.retired is None:
            return key
    raise RuntimeError("the current cookie key cannot be read here: set [wsus] cookie_master_key "
                       "(DEVUPDATE_WSUS_COOKIE_MASTER_KEY) as on the node that made it")


def _accepts(key: Key, lifetime: int, now: datetime) -> bool:
    return key.retired is None or now < key.retired + timedelta(seconds=lifetime)


def lookup(kind: str, settings: Any, now: datetime) -> cookies.KeyLookup:
    """For :func:`cookies.unseal`: the secret of a key id that still opens cookies of ``kind``."""
    lifetime = lifetimes(settings)[kind]

    def find(key_id: bytes) -> bytes | None:
        for ring in (lambda: _keys(settings), lambda: _reloaded_for_miss(settings)):
            for key in ring():
                if key.key_id == key_id:
                    return key.secret if _accepts(key, lifetime, now) else None
        return None

    return find


def seal(state: cookies.CookieState, settings: Any = None) -> bytes:
    """Seal with the current key (``settings``: for the master key; without them, the one this
    worker last opened a cookie with)."""
    key = sealing_key(settings)
    return cookies.seal(state, key_id=key.key_id, secret=key.secret, server_id=server_id())


def unseal(blob: bytes, *, kind: str, settings: Any, now: datetime | None = None, check_expiry: bool = True,
           config_stamp: datetime | None = None) -> cookies.CookieState:
    """Open a cookie of this server (:func:`cookies.unseal` with this server's id and keys)."""
    now = now or datetime.now(UTC)
    return cookies.unseal(blob, kind=kind, server_id=server_id(), keys=lookup(kind, settings, now), now=now,
                          check_expiry=check_expiry, config_stamp=config_stamp)


# --- rotation -----------------------------------------------------------------------------------------

def describe(key: Key, settings: Any) -> dict[str, Any]:
    """A key as the CLI shows it (never its secret): id, created, retired, until when it opens cookies."""
    accepted = None
    if key.retired is not None:
        accepted = {kind: iso_utc((key.retired + timedelta(seconds=seconds)).replace(tzinfo=None))
                    for kind, seconds in lifetimes(settings).items()}
    return {"KeyId": key.hex_id, "Created": iso_utc(key.created.replace(tzinfo=None)),
            "Retired": iso_utc(key.retired.replace(tzinfo=None)) if key.retired else None,
            "OpensUntil": accepted}


def list_keys(settings: Any) -> list[dict[str, Any]]:
    return [describe(key, settings) for key in _keys(settings, reload=True)]


def rotate(settings: Any, *, actor: str, now: datetime | None = None) -> dict[str, Any]:
    """Retire the current key(s), make a new one and remove the keys whose last cookie has expired.
    Every node sees the new key at once (a miss reloads) and seals with it within a few seconds."""
    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    longest = timedelta(seconds=max(lifetimes(settings).values()))
    master = master_key(settings)
    with write_transaction():
        server_id()
        locked(ServerIdentity.select().where(ServerIdentity.id == 1)).get()
        retired = [row.key_id for row in CookieKey.select(CookieKey.key_id).where(CookieKey.retired.is_null())]
        CookieKey.update(retired=moment).where(CookieKey.retired.is_null()).execute()
        gone = [row.key_id for row in CookieKey.select(CookieKey.key_id).where(CookieKey.retired <= moment - longest)]
        if gone:
            CookieKey.delete().where(CookieKey.key_id.in_(gone)).execute()
        new = _new_key_row({row.key_id for row in CookieKey.select(CookieKey.key_id)} | set(gone), master)
        wrapped = []
        if master is not None:  # the kept keys are wrapped too, so no secret stays stored as it is
            for row in CookieKey.select().where(~CookieKey.secret.startswith(WRAPPED)):
                plain = read_secret(row.secret, None)
                if plain is not None:
                    CookieKey.update(secret=store_secret(plain, master)).where(
                        CookieKey.key_id == row.key_id).execute()
                    wrapped.append(row.key_id)
        result: dict[str, Any] = {"KeyId": new.key_id, "Created": iso_utc(new.created), "Retired": sorted(retired),
                                  "Removed": sorted(gone), "Wrapped": sorted(wrapped)}
        trail.record(actor, "wsus.cookie-key.rotate", "cookie keys", before={"Current": sorted(retired)},
                     after={"Current": [new.key_id]}, detail={"Removed": sorted(gone), "Wrapped": sorted(wrapped)})
    forget_cache()
    result["Keys"] = list_keys(settings)
    return result
