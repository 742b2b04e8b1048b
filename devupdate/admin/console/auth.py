"""Local console accounts (``devupdate admins``) and sign-in with rate limiting. No Flask here.

An admin has a name, a role — ``admin`` may change things, ``operator`` may only look — and a
scrypt hash (the same scheme as the device users, :mod:`devupdate.devices.users`). Accounts live
in the database, so every worker and every node sees one truth, and removing an account or
changing its password ends its console sessions at their next request (a session carries a
fingerprint of the hash it was opened with).

Sign-in failures are counted in the database, so the lock holds across workers and nodes, per
name *and* source (the client address; ``X-Forwarded-For`` counts from trusted proxies only):
after ``Lockout.failures`` failures of one name from one source, that name is locked for that
source only — for ``Lockout.seconds``, doubled by each further failure after the lock has passed,
at most ``MAX_LOCK`` — and attempts meanwhile are refused without checking the password. Another
source, or another name from the same source, still signs in with the right password, so one
guesser cannot lock every admin out. A successful sign-in clears its own failures; failures are
forgotten after ``FAILURE_MEMORY``. An unknown name is checked against ``DUMMY_HASH`` and locked
like a known one: neither the time nor the answers tell which names exist.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from typing import Any

import peewee

from devupdate import metrics
from devupdate.audit.trail import record
from devupdate.db import BaseModel, iso_utc, utcnow, write_transaction
from devupdate.devices.users import DUMMY_HASH, HashGate, check_password, hash_password
from devupdate.errors import Conflict, DevupdateError, NotFound

ROLES = ("admin", "operator")
MIN_PASSWORD = 10
MAX_LOCK = 15 * 60
FAILURE_MEMORY = 24 * 3600
_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")


class AdminUser(BaseModel):
    """A person who may sign in to the web console."""

    id = peewee.AutoField()
    name = peewee.CharField(max_length=128, unique=True)
    role = peewee.CharField(max_length=20)  # admin | operator
    password_hash = peewee.CharField(max_length=200)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    last_sign_in = peewee.DateTimeField(null=True)


class SignInFailure(BaseModel):
    """One refused console sign-in, kept for ``FAILURE_MEMORY`` to lock guessing out."""

    id = peewee.AutoField()
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


@dataclass(frozen=True)
class Lockout:
    """When one name from one source is locked: after ``failures`` failures, for ``seconds``,
    doubling with each further failure up to ``MAX_LOCK``."""

    failures: int = 5
    seconds: int = 30

    def lock_seconds(self, count: int) -> int:
        """How long ``count`` failures lock (0: not locked)."""
        if count < self.failures:
            return 0
        return min(self.seconds * 2 ** min(count - self.failures, 20), MAX_LOCK)

    @classmethod
    def from_settings(cls, settings) -> Lockout:
        return cls(settings.console_lockout_failures, settings.console_lockout_seconds)


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


def _pair(address: str, name: str):
    return (SignInFailure.address == address) & (SignInFailure.name == name)


def _check_lock(address: str, name: str, now: dt.datetime, lockout: Lockout) -> None:
    row = (SignInFailure.select(peewee.fn.COUNT(SignInFailure.id), peewee.fn.MAX(SignInFailure.at))
           .where(_pair(address, name) & (SignInFailure.at >= now - dt.timedelta(seconds=FAILURE_MEMORY)))
           .tuples().first())
    count, last = (row[0] or 0, row[1]) if row else (0, None)
    lock = lockout.lock_seconds(count)
    if not lock or last is None:
        return
    if isinstance(last, str):  # SQLite aggregates come back as text
        last = dt.datetime.fromisoformat(last)
    wait = math.ceil(lock - (now - last).total_seconds())
    if wait > 0:
        minutes = (wait + 59) // 60
        when = f"{wait} second{'s' if wait > 1 else ''}" if wait < 120 else f"{minutes} minutes"
        raise TooManyAttempts(f"too many failed sign-ins for this name from your address; try again in {when} "
                              "(other addresses are not affected)", wait)


def authenticate(name: str, password: str, *, address: str, lockout: Lockout | None = None,
                 gate: HashGate | None = None) -> Admin:
    """Check a sign-in; raises TooManyAttempts (429), HashingBusy (503, ``gate`` full) or SignInRefused
    (401). Checked passwords are audited either way."""
    name = name.strip()[:128]
    address = address[:64]
    now = utcnow()
    _check_lock(address, name, now, lockout or Lockout())
    user = AdminUser.get_or_none(AdminUser.name == name) if name else None
    with gate or contextlib.nullcontext():
        ok = check_password(password, user.password_hash if user else DUMMY_HASH) and user is not None
    with write_transaction():
        if not ok or user is None:
            SignInFailure.create(address=address, name=name, at=now)
            SignInFailure.delete().where(SignInFailure.at < now - dt.timedelta(seconds=FAILURE_MEMORY)).execute()
            record(f"console:{name or '?'}", "console.sign-in", f"admin:{name}", outcome="refused",
                   detail={"Address": address})
        else:
            SignInFailure.delete().where(_pair(address, name)).execute()
            AdminUser.update(last_sign_in=now).where(AdminUser.id == user.id).execute()
            record(f"console:{name}", "console.sign-in", f"admin:{name}", detail={"Address": address})
    if not ok or user is None:
        metrics.sign_in_failed("console")
        raise SignInRefused("wrong name or password")
    return Admin(user.name, user.role, fingerprint(user.password_hash))


def current_admin(name: str, fingerprint_: str) -> Admin | None:
    """The account behind a session, or None when it was removed or its password changed since."""
    user = AdminUser.get_or_none(AdminUser.name == name)
    if user is None or not hmac.compare_digest(fingerprint(user.password_hash), fingerprint_):
        return None
    return Admin(user.name, user.role, fingerprint_)
