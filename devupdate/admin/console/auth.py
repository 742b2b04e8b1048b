"""Local console accounts (``devupdate admins``) and sign-in with rate limiting. No Flask here.

An admin has a name, a role — ``admin`` may change things, ``operator`` may only look — and a
scrypt hash (the same scheme as the device users, :mod:`devupdate.devices.users`). Accounts live
in the database, so every worker and every node sees one truth, and removing an account or
changing its password ends its console sessions at their next request (a session carries a
fingerprint of the hash it was opened with).

Sign-in failures are counted in the database too, per client address and per name, so the limit
holds across workers and nodes: more than ``MAX_FAILURES_PER_ADDRESS`` failures from one address
(or ``MAX_FAILURES_PER_NAME`` for one name) within ``FAILURE_WINDOW`` seconds and further attempts
are refused without checking the password until the window has passed.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import peewee

from devupdate.audit.trail import record
from devupdate.db import BaseModel, iso_utc, utcnow, write_transaction
from devupdate.devices.users import check_password, hash_password
from devupdate.errors import Conflict, DevupdateError, NotFound

ROLES = ("admin", "operator")
MIN_PASSWORD = 10
FAILURE_WINDOW = 15 * 60
MAX_FAILURES_PER_ADDRESS = 10
MAX_FAILURES_PER_NAME = 20
_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")


class AdminUser(BaseModel):
    """A person who may sign in to the web console."""

    name = peewee.CharField(max_length=128, unique=True)
    role = peewee.CharField(max_length=20)  # admin | operator
    password_hash = peewee.CharField(max_length=200)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    last_sign_in = peewee.DateTimeField(null=True)


class SignInFailure(BaseModel):
    """One refused console sign-in, kept for ``FAILURE_WINDOW`` to rate-limit guessing."""

    at = peewee.DateTimeField(default=utcnow, index=True)
    address = peewee.CharField(max_length=64, index=True)
    name = peewee.CharField(max_length=128, index=True)


@dataclass(frozen=True)
class Admin:
    """A signed-in console user, as the views see it."""

    name: str
    role: str
    fingerprint: str

    @property
    def can_change(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> str:
        """Who the audit trail names for this person's actions."""
        return f"console:{self.name}"


class SignInRefused(DevupdateError):
    status = 401
    code = "sign-in-refused"


class TooManyAttempts(DevupdateError):
    status = 429
    code = "too-many-attempts"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@functools.cache
def _dummy_hash() -> str:
    """Checked for unknown names, so they cost as much as known ones."""
    return hash_password("not a password", salt=b"devupdate-dummy!")


def fingerprint(password_hash: str) -> str:
    """Short digest of the stored hash: a session opened before a password change no longer matches."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:24]


def admin_dict(user: AdminUser) -> dict[str, Any]:
    return {"Name": user.name, "Role": user.role, "Created": iso_utc(user.created_at),
            "LastSignIn": iso_utc(user.last_sign_in)}


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise DevupdateError(f"role {role!r}: use admin (may change things) or operator (may only look)",
                             code="bad-role")
    return role


def add_admin(name: str, password: str, role: str, *, actor: str, replace: bool = False) -> AdminUser:
    """Create a console account (or, with ``replace``, set a new password and role)."""
    if not _NAME.match(name):
        raise DevupdateError(f"admin name {name!r}: 1–128 letters, digits and . _ @ + - only", code="bad-name")
    _check_role(role)
    if len(password) < MIN_PASSWORD:
        raise DevupdateError(f"password too short: use at least {MIN_PASSWORD} characters", code="weak-password")
    encoded = hash_password(password)  # slow on purpose: outside the transaction
    with write_transaction():
        user = AdminUser.get_or_none(AdminUser.name == name)
        if user is not None and not replace:
            raise Conflict(f"admin {name!r} exists; remove it first or use --replace", code="duplicate-admin")
        before = None if user is None else {"Name": name, "Role": user.role}
        if user is None:
            user = AdminUser.create(name=name, role=role, password_hash=encoded)
        else:
            user.role, user.password_hash, user.updated_at = role, encoded, utcnow()
            user.save()
        record(actor, "admin.add" if before is None else "admin.replace", f"admin:{name}", before=before,
               after={"Name": name, "Role": role, "PasswordChanged": True})
    return user


def list_admins() -> list[AdminUser]:
    return list(AdminUser.select().order_by(AdminUser.name))


def remove_admin(name: str, *, actor: str) -> dict[str, Any]:
    """Delete the account; its open console sessions end at their next request."""
    with write_transaction():
        user = AdminUser.get_or_none(AdminUser.name == name)
        if user is None:
            raise NotFound(f"no admin {name!r}; see 'devupdate admins list'", code="no-such-admin")
        before = {"Name": user.name, "Role": user.role}
        user.delete_instance()
        record(actor, "admin.remove", f"admin:{name}", before=before, after=None)
    return before


def _recent_failures(field: peewee.Field, value: str, since: dt.datetime) -> tuple[int, dt.datetime | None]:
    row = (SignInFailure.select(peewee.fn.COUNT(SignInFailure.id), peewee.fn.MIN(SignInFailure.at))
           .where((field == value) & (SignInFailure.at >= since)).tuples().first())
    return (row[0] or 0, row[1]) if row else (0, None)


def _limit(address: str, name: str, now: dt.datetime) -> None:
    since = now - dt.timedelta(seconds=FAILURE_WINDOW)
    for field, value, limit, what in ((SignInFailure.address, address, MAX_FAILURES_PER_ADDRESS, "your address"),
                                      (SignInFailure.name, name, MAX_FAILURES_PER_NAME, "this name")):
        count, oldest = _recent_failures(field, value, since)
        if count >= limit:
            wait = FAILURE_WINDOW - int((now - oldest).total_seconds()) if oldest else FAILURE_WINDOW
            wait = max(wait, 1)
            raise TooManyAttempts(f"too many failed sign-ins for {what}; try again in "
                                  f"{(wait + 59) // 60} minute{'s' if wait > 60 else ''}", wait)


def authenticate(name: str, password: str, *, address: str) -> Admin:
    """Check a sign-in; raises TooManyAttempts (429) or SignInRefused (401). Both outcomes are audited."""
    name = name.strip()[:128]
    address = address[:64]
    now = utcnow()
    _limit(address, name, now)
    user = AdminUser.get_or_none(AdminUser.name == name) if name else None
    ok = check_password(password, user.password_hash if user else _dummy_hash()) and user is not None
    with write_transaction():
        if not ok:
            SignInFailure.create(address=address, name=name, at=now)
            SignInFailure.delete().where(SignInFailure.at < now - dt.timedelta(days=1)).execute()
            record(f"console:{name or '?'}", "console.sign-in", f"admin:{name}", outcome="refused",
                   detail={"Address": address})
        else:
            AdminUser.update(last_sign_in=now).where(AdminUser.id == user.id).execute()
            record(f"console:{name}", "console.sign-in", f"admin:{name}", detail={"Address": address})
    if not ok:
        raise SignInRefused("wrong name or password")
    return Admin(user.name, user.role, fingerprint(user.password_hash))


def current_admin(name: str, fingerprint_: str) -> Admin | None:
    """The account behind a session, or None when it was removed or its password changed since."""
    user = AdminUser.get_or_none(AdminUser.name == name)
    if user is None or not hmac.compare_digest(fingerprint(user.password_hash), fingerprint_):
        return None
    return Admin(user.name, user.role, fingerprint_)
