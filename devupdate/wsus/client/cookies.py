"""Sealed cookies (spec/wsus.md §4.3): AES-256-GCM, nothing of them ever deserialized into objects.

A sealed cookie is ``0x01 (format) ‖ key id (4 bytes) ‖ nonce (12 bytes) ‖ AES-256-GCM(ciphertext ‖
tag)``. The associated data is the cookie kind and this server's ServerId, so a cookie sealed for
another kind or by another server with the same key fails the tag check. The plaintext is compact
JSON with a fixed set of fields, at most 1 KiB, read with the standard parser and no hooks (only
dicts, lists, text and integers can come out; floats and NaN are refused), then checked field by
field: an authentic cookie can still never instantiate anything.

Opening checks, in this order (each failure is the §4.2 error code of :class:`CookieRefused`):
size and format (``InvalidCookie``) → key id known (``ServerChanged``) → tag valid, which also
proves kind and ServerId (``InvalidCookie``) → expiry (``CookieExpired``) → config stamp
(``ConfigChanged``, only where the caller asks for it).

Pure: the standard library and ``cryptography`` only; the keys come from the caller.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = 0x01
KEY_ID_SIZE = 4
NONCE_SIZE = 12
TAG_SIZE = 16
SECRET_SIZE = 32  # AES-256
HEADER_SIZE = 1 + KEY_ID_SIZE + NONCE_SIZE
MAX_PLAINTEXT = 1024  # the size cap of §4.3
MAX_SEALED = HEADER_SIZE + MAX_PLAINTEXT + TAG_SIZE
#: the longest base64 text a sealed cookie can be (4 characters per 3 bytes, padded)
MAX_TEXT = 4 * ((MAX_SEALED + 2) // 3)

AUTH, CLIENT, DSS_AUTH, DSS = "auth", "client", "dss-auth", "dss"
KINDS = (AUTH, CLIENT, DSS_AUTH, DSS)

# the §4.2 error codes a cookie check can give (the same text as devupdate.wsus.soap.envelope's)
INVALID_COOKIE = "InvalidCookie"
SERVER_CHANGED = "ServerChanged"
COOKIE_EXPIRED = "CookieExpired"
CONFIG_CHANGED = "ConfigChanged"

#: the plaintext's fields, in the order they are written; exactly these, no more, no fewer
FIELDS = ("kind", "id", "issued", "expiry", "protocol", "config", "high", "gen", "groups")
MAX_ID = 255
MAX_PROTOCOL = 16
MAX_GROUP_NAME = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_INT = 2**63 - 1


class CookieRefused(Exception):
    """A cookie that does not open; ``code`` is the §4.2 ErrorCode to answer."""

    def __init__(self, code: str, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, reason


class CookieTooLarge(ValueError):
    """The fields do not fit in the 1 KiB plaintext (too many or too long group names)."""


@dataclass(frozen=True)
class CookieState:
    """What a cookie carries. Times are whole seconds since 1970 (UTC), the config stamp is in
    microseconds since 1970 (it is compared exactly with the server's ``LastChange``)."""

    kind: str
    subject: str  # client id (auth, client) or DSS account GUID (dss-auth, dss)
    issued: int
    expiry: int
    protocol: str = ""
    config: int = 0
    high_water: int = 0  # deployment high-water mark (change_seq) the client has seen
    content_generation: int = 0  # generation of the content base URL the client's file URLs come from
    groups: tuple[str, ...] = ()  # requested target group names (auth cookie only)

    @property
    def expires_at(self) -> datetime:
        return from_seconds(self.expiry)

    @property
    def issued_at(self) -> datetime:
        return from_seconds(self.issued)

    def expired(self, now: datetime) -> bool:
        return to_seconds(now) >= self.expiry

    def renewed(self, **changes: object) -> CookieState:
        """The same cookie with some fields changed (``expiry`` stays unless given)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def to_seconds(moment: datetime) -> int:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int((moment - _EPOCH) // timedelta(seconds=1))


def from_seconds(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def stamp_micros(moment: datetime) -> int:
    """A config stamp as the integer the cookie carries (microseconds since 1970, UTC)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def new_state(kind: str, subject: str, *, now: datetime, lifetime: int, protocol: str = "",
              config: datetime | None = None, high_water: int = 0, content_generation: int = 0,
              groups: tuple[str, ...] = ()) -> CookieState:
    """A cookie issued ``now`` that expires ``lifetime`` seconds later."""
    issued = to_seconds(now)
    return CookieState(kind, subject, issued, issued + lifetime, protocol,
                       stamp_micros(config) if config is not None else 0, high_water, content_generation, groups)


# --- the plaintext ------------------------------------------------------------------------------------

def _check(state: CookieState) -> None:
    """The field rules, the same for writing and reading; ValueError names the first broken one."""
    if state.kind not in KINDS:
        raise ValueError("kind")
    if not isinstance(state.subject, str) or not 1 <= len(state.subject) <= MAX_ID:
        raise ValueError("id")
    for name, value in (("issued", state.issued), ("expiry", state.expiry), ("config", state.config),
                        ("high", state.high_water), ("gen", state.content_generation)):
        if type(value) is not int or not 0 <= value <= _MAX_INT:
            raise ValueError(name)
    if not isinstance(state.protocol, str) or len(state.protocol) > MAX_PROTOCOL:
        raise ValueError("protocol")
    if not isinstance(state.groups, tuple) or any(
            not isinstance(name, str) or not 1 <= len(name) <= MAX_GROUP_NAME for name in state.groups):
        raise ValueError("groups")
    if state.groups and state.kind != AUTH:
        raise ValueError("groups")


def encode(state: CookieState) -> bytes:
    """The compact JSON plaintext, fields in :data:`FIELDS` order; CookieTooLarge above 1 KiB."""
    _check(state)
    values = (state.kind, state.subject, state.issued, state.expiry, state.protocol, state.config,
              state.high_water, state.content_generation, list(state.groups))
    text = json.dumps(dict(zip(FIELDS, values, strict=True)), separators=(",", ":"), ensure_ascii=True)
    data = text.encode("ascii")
    if len(data) > MAX_PLAINTEXT:
        raise CookieTooLarge(f"the cookie's fields take {len(data)} bytes, more than {MAX_PLAINTEXT}")
    return data


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is no cookie value")


def _refuse_float(text: str) -> object:
    raise ValueError("a cookie holds no fractions")


def decode(data: bytes) -> CookieState:
    """The plaintext back to its fields: at most 1 KiB, exactly :data:`FIELDS`, each of its type.
    ValueError for anything else."""
    if len(data) > MAX_PLAINTEXT:
        raise ValueError("above the size cap")
    try:
        value = json.loads(data.decode("ascii"), parse_float=_refuse_float, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError("not a cookie plaintext") from exc
    if type(value) is not dict or set(value) != set(FIELDS) or len(value) != len(FIELDS):
        raise ValueError("not the cookie's fields")
    groups = value["groups"]
    if type(groups) is not list:
        raise ValueError("groups")
    state = CookieState(value["kind"], value["id"], value["issued"], value["expiry"], value["protocol"],
                        value["config"], value["high"], value["gen"], tuple(groups))
    _check(state)
    return state


# --- sealing and opening ------------------------------------------------------------------------------

def associated_data(kind: str, server_id: str) -> bytes:
    """What the tag proves besides the plaintext: the cookie kind and the ServerId."""
    return f"{kind}\x00{server_id}".encode("ascii")


def seal(state: CookieState, *, key_id: bytes, secret: bytes, server_id: str, nonce: bytes | None = None) -> bytes:
    """The sealed cookie bytes (a fresh random nonce unless one is given, for tests)."""
    if len(key_id) != KEY_ID_SIZE or len(secret) != SECRET_SIZE:
        raise ValueError("a cookie key is a 4-byte id and a 32-byte secret")
    nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
    if len(nonce) != NONCE_SIZE:
        raise ValueError("the nonce is 12 bytes")
    sealed = AESGCM(secret).encrypt(nonce, encode(state), associated_data(state.kind, server_id))
    return bytes((FORMAT,)) + key_id + nonce + sealed


KeyLookup = Callable[[bytes], bytes | None]


def unseal(blob: bytes, *, kind: str, server_id: str, keys: KeyLookup, now: datetime,
           check_expiry: bool = True, config_stamp: datetime | None = None) -> CookieState:
    """Open a sealed cookie of ``kind``, checking in the order of §4.3. ``keys`` maps a key id to
    its secret, or ``None`` when this server does not hold it (any more) for this kind of cookie.
    ``check_expiry=False`` for an old cookie handed in to be renewed; ``config_stamp`` when the
    operation compares it (GetCookie's cookies do not, SyncUpdates' does)."""
    if not HEADER_SIZE + TAG_SIZE < len(blob) <= MAX_SEALED or blob[0] != FORMAT:
        raise CookieRefused(INVALID_COOKIE, "size or format")
    secret = keys(bytes(blob[1:1 + KEY_ID_SIZE]))
    if secret is None:
        raise CookieRefused(SERVER_CHANGED, "key id not held by this server")
    try:
        plaintext = AESGCM(secret).decrypt(bytes(blob[1 + KEY_ID_SIZE:HEADER_SIZE]), bytes(blob[HEADER_SIZE:]),
                                           associated_data(kind, server_id))
    except InvalidTag:
        raise CookieRefused(INVALID_COOKIE, "tag check failed") from None
    try:
        state = decode(plaintext)
    except ValueError:  # authentic but unreadable: only a defect of a writer could do that
        raise CookieRefused(INVALID_COOKIE, "fields") from None
    if state.kind != kind:
        raise CookieRefused(INVALID_COOKIE, "kind")
    if check_expiry and state.expired(now):
        raise CookieRefused(COOKIE_EXPIRED, "expired")
    if config_stamp is not None and state.config != stamp_micros(config_stamp):
        raise CookieRefused(CONFIG_CHANGED, "config stamp")
    return state


def from_text(text: str | None) -> bytes:
    """The bytes of a base64 cookie element; ``InvalidCookie`` when absent, too long or not base64."""
    value = "".join((text or "").split())
    if not value or len(value) > MAX_TEXT:
        raise CookieRefused(INVALID_COOKIE, "size or format")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CookieRefused(INVALID_COOKIE, "size or format") from None


def to_text(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


__all__ = ["AUTH", "CLIENT", "COOKIE_EXPIRED", "CONFIG_CHANGED", "DSS", "DSS_AUTH", "FIELDS", "INVALID_COOKIE",
           "KINDS", "MAX_PLAINTEXT", "MAX_SEALED", "SERVER_CHANGED", "CookieRefused", "CookieState",
           "CookieTooLarge", "decode", "encode", "from_seconds", "from_text", "new_state", "seal", "stamp_micros",
           "to_seconds", "to_text", "unseal"]
