"""API bearer tokens: a name, a role (``admin`` may change, ``operator`` may read) and a hash.

The secret is 32 random bytes shown once at creation (``devupdate tokens create``); only its
SHA-256 is stored. A salted slow hash buys nothing for a 256-bit random secret, and a plain hash
lets a request find its token with one indexed lookup; the stored and computed hashes are still
compared with ``hmac.compare_digest``. Revoked tokens stay in the table (the audit trail names
them) and never authenticate again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

import peewee

from devupdate.audit.trail import record
from devupdate.db import BaseModel, iso_utc, utcnow, write_transaction
from devupdate.errors import Conflict, DevupdateError, NotFound

ROLES = ("admin", "operator")
PREFIX = "dut_"  # makes a leaked token recognisable to secret scanners
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)  # at most one write per token per minute


class ApiToken(BaseModel):
    id = peewee.AutoField()
    name = peewee.CharField(max_length=100, unique=True)
    role = peewee.CharField(max_length=20)
    hash = peewee.CharField(max_length=64, unique=True)  # hex SHA-256 of the secret
    created_at = peewee.DateTimeField(default=utcnow)
    created_by = peewee.CharField(max_length=200, default="")
    last_used_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)
    revoked_by = peewee.CharField(max_length=200, null=True)


@dataclass(frozen=True)
class Principal:
    """Who an authenticated API request acts as."""

    name: str
    role: str

    @property
    def actor(self) -> str:
        """What the audit trail records for this token's changes."""
        return f"token:{self.name}"

    @property
    def may_change(self) -> bool:
        return self.role == "admin"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def token_dict(token: ApiToken) -> dict[str, Any]:
    return {"Name": token.name, "Role": token.role, "Created": iso_utc(token.created_at),
            "CreatedBy": token.created_by, "LastUsed": iso_utc(token.last_used_at),
            "Revoked": iso_utc(token.revoked_at), "RevokedBy": token.revoked_by}


def create(name: str, role: str, *, actor: str) -> tuple[ApiToken, str]:
    """A new token; returns it with its secret (the only time the secret exists in clear)."""
    if not _NAME.match(name or ""):
        raise DevupdateError(f"token name {name!r}: 1–100 letters, digits, '.', '_', '@' or '-'",
                             code="bad-token-name")
    if role not in ROLES:
        raise DevupdateError(f"role {role!r}: use admin or operator", code="bad-role")
    secret = PREFIX + secrets.token_urlsafe(32)
    try:
        with write_transaction():
            token = ApiToken.create(name=name, role=role, hash=_hash(secret), created_by=actor)
            record(actor, "token.create", name, after={"Name": name, "Role": role})
    except peewee.IntegrityError:
        raise Conflict(f"a token named {name!r} exists already; revoke it or choose another name",
                       code="duplicate-token") from None
    return token, secret


def list_tokens() -> list[ApiToken]:
    return list(ApiToken.select().order_by(ApiToken.name))


def revoke(name: str, *, actor: str) -> ApiToken:
    with write_transaction():
        token = ApiToken.get_or_none(ApiToken.name == name)
        if token is None:
            raise NotFound(f"no token named {name!r}; see 'devupdate tokens list'", code="no-such-token")
        if token.revoked_at is not None:
            raise Conflict(f"token {name!r} was revoked already", code="token-revoked")
        token.revoked_at, token.revoked_by = utcnow(), actor
        token.save()
        record(actor, "token.revoke", name, before={"Role": token.role, "Revoked": None},
               after={"Role": token.role, "Revoked": iso_utc(token.revoked_at)})
    return token


def authenticate(secret: str) -> Principal | None:
    """The principal for a presented secret, or None (unknown, revoked, malformed)."""
    if not secret or len(secret) > 200:
        return None
    digest = _hash(secret)
    token = ApiToken.get_or_none(ApiToken.hash == digest)
    if token is None or not hmac.compare_digest(token.hash, digest) or token.revoked_at is not None:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.update(last_used_at=now).where(ApiToken.id == token.id).execute()
    return Principal(token.name, token.role)
