"""The console's session cookie and CSRF tokens. No Flask here, only a signing key and a cookie.

- The session is a signed (HMAC, ``itsdangerous``) cookie ``devupdate_console`` scoped to
  ``/console``: ``HttpOnly``, ``SameSite=Strict`` and ``Secure`` (see :func:`cookie_secure`).
  It holds the admin's name, a fingerprint of their password hash, the CSRF token, when they
  signed in, and one-shot notices. Nothing secret: it is signed, not encrypted.
- The signing key is generated once into the data directory (``console-secret.key``, mode 0600);
  every worker reads the same file, and the nodes of a PostgreSQL installation share it by
  sharing the data directory (or by copying the file). Deleting it signs everybody out.
- Sessions expire after ``IDLE_SECONDS`` without a request and ``MAX_SECONDS`` after sign-in.
- Every form carries the session's CSRF token; every POST must return it (form field
  ``csrf_token`` or header ``X-CSRF-Token``), compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from devupdate.errors import SettingsError

COOKIE_NAME = "devupdate_console"
COOKIE_PATH = "/console"
KEY_FILE = "console-secret.key"
IDLE_SECONDS = 8 * 3600
MAX_SECONDS = 24 * 3600
SECURE_VARIABLE = "DEVUPDATE_CONSOLE_COOKIE_SECURE"


def load_signing_key(home: Path) -> bytes:
    """The installation's console signing key, created on first use (race-free across workers)."""
    path = Path(home) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(32) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temp, path)  # never replaces: the first worker to get here wins, others read its key
            except FileExistsError:
                pass
        finally:
            os.unlink(temp)
    key = path.read_text("ascii").strip()
    if len(key) < 32:
        raise SettingsError(f"{path} holds no usable key; delete it and a new one is generated (this signs "
                            "everybody out of the console)")
    if path.stat().st_mode & 0o077:
        raise SettingsError(f"{path} is readable by other users; run 'chmod 600 {path}'")
    return key.encode("ascii")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cookie_secure(settings) -> bool:
    """``Secure`` is on unless ``console_cookie_secure`` is false — which is accepted only when the
    service listens on a loopback address (plain-HTTP testing on one machine): a console reachable
    over the network without TLS would send its session in the clear."""
    if settings.console_cookie_secure:
        return True
    if not _is_loopback(settings.host):
        raise SettingsError(f"{SECURE_VARIABLE}=false is accepted only when serving on a loopback address "
                            f"(DEVUPDATE_HOST is {settings.host!r}); serve the console over HTTPS instead")
    return False


@dataclass
class SessionData:
    """What the cookie carries; ``name`` is empty before sign-in."""

    name: str = ""
    fingerprint: str = ""
    csrf: str = ""
    signed_in_at: int = 0
    notices: list[list[str]] = field(default_factory=list)  # [kind, text]

    def ensure_csrf(self) -> str:
        if not self.csrf:
            self.csrf = secrets.token_urlsafe(32)
        return self.csrf

    def csrf_ok(self, submitted: str | None) -> bool:
        return bool(self.csrf) and bool(submitted) and hmac.compare_digest(self.csrf.encode(),
                                                                           str(submitted).encode())

    def notice(self, kind: str, text: str) -> None:
        self.notices.append([kind, text])

    def take_notices(self) -> list[list[str]]:
        notices, self.notices = self.notices, []
        return notices

    @property
    def empty(self) -> bool:
        return not (self.name or self.csrf or self.notices)


class SessionCookie:
    """Reads and writes :class:`SessionData` as a signed cookie."""

    def __init__(self, key: bytes, *, secure: bool):
        self.secure = secure
        self._serializer = URLSafeTimedSerializer(key, salt="devupdate.console.session")

    def load(self, raw: str | None, *, now: float | None = None) -> SessionData:
        if not raw:
            return SessionData()
        try:
            data = self._serializer.loads(raw, max_age=IDLE_SECONDS)
            session = SessionData(name=str(data.get("n", "")), fingerprint=str(data.get("f", "")),
                                  csrf=str(data.get("c", "")), signed_in_at=int(data.get("t", 0)),
                                  notices=[[str(k), str(t)] for k, t in data.get("m", [])][:10])
        except (BadSignature, TypeError, ValueError, AttributeError):
            return SessionData()
        if session.name and (now or time.time()) - session.signed_in_at > MAX_SECONDS:
            return SessionData(notices=[["info", "Your session has expired; please sign in again."]])
        return session

    def dump(self, session: SessionData) -> str:
        data = {"n": session.name, "f": session.fingerprint, "c": session.csrf, "t": session.signed_in_at,
                "m": session.notices[-10:]}
        return self._serializer.dumps(data)

    def cookie_options(self) -> dict:
        return {"path": COOKIE_PATH, "secure": self.secure, "httponly": True, "samesite": "Strict"}
