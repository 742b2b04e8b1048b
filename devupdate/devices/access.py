"""Who may use a device route (device-protocol.md §2), shared by update checks, downloads and
log uploads.

- ``Int`` routes (``/RequestHandler/…``, ``/DeviceUpdateFiles_Int/…``) answer only clients on the
  configured internal networks; the client address honours ``X-Forwarded-For`` only from trusted
  proxies (``NetworkPolicy``).
- ``Ext`` routes (``/RequestHandlerExt/…``, ``/DeviceUpdateFiles_Ext/…``) need credentials checked
  against the user store: ``Negotiate`` / ``NTLM`` (the handshake Lync phones do, per connection,
  :mod:`devupdate.devices.ntlm`) or HTTP ``Basic``, as ``external_auth_schemes`` offers them.
  None → ``401`` with one ``WWW-Authenticate`` challenge per offered scheme, wrong → ``401``;
  the NTLM legs before the last are ``401`` with the scheme's challenge token. With
  ``external_https_only`` (``serve --tls``) they refuse plain HTTP with ``403`` before looking at
  credentials, which would otherwise travel in the clear.
  A source with too many recent failures is refused with ``429`` and ``Retry-After`` before its
  password is checked (:mod:`devupdate.devices.failures`); when every password-hashing slot of the
  worker is taken the answer is ``503`` with ``Retry-After: 1`` at once, so guessing never holds
  every request thread (:class:`devupdate.devices.users.HashGate`).

``decide`` is the pure core; ``guard_request`` / ``side_guard`` are the Flask edges.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

from flask import Response, current_app, g, request

from devupdate import metrics
from devupdate.devices.failures import FailureLimiter
from devupdate.devices.ntlm import SCHEMES as CONNECTION_SCHEMES
from devupdate.devices.ntlm import Handshakes
from devupdate.devices.users import HashingBusy, UserStore, UserStoreUnavailable
from devupdate.web import connection as connections
from devupdate.web.connection import Connection
from devupdate.web.errors import render_error
from devupdate.web.network import NetworkPolicy

REALM = "devupdate"
SCHEMES_EXTENSION = "external_auth_schemes"
CHALLENGE = f'Basic realm="{REALM}"'
_SIDES = {"int": "Int", "internal": "Int", "ext": "Ext", "external": "Ext", "Int": "Int", "Ext": "Ext"}


@dataclass(frozen=True)
class Refusal:
    """A refused device request; ``code`` goes in the XML body and the audit log."""

    status: int
    code: str
    message: str
    client_address: str
    user: str = ""
    retry_after: int = 0  # seconds, for 429 and 503
    challenges: tuple[str, ...] = (CHALLENGE,)  # WWW-Authenticate values of a 401

    def headers(self) -> list[tuple[str, str]]:
        """Besides the XML body's own: the challenges on 401, ``Retry-After`` when set."""
        headers = [("Cache-Control", "no-store")]
        if self.status == 401:
            headers.extend(("WWW-Authenticate", challenge) for challenge in self.challenges)
        if self.retry_after:
            headers.append(("Retry-After", str(self.retry_after)))
        return headers

    def response(self) -> Response:
        resp = Response(render_error(self.code, self.message), status=self.status,
                        content_type="text/xml; charset=utf-8")
        resp.headers.extend(self.headers())
        return resp


@dataclass(frozen=True)
class Access:
    client_address: str
    user: str  # the authenticated user on the external side, '' on the internal side
    side: str  # 'Int' | 'Ext'


def canonical_side(side: str) -> str:
    try:
        return _SIDES[side.lower()]
    except KeyError:
        raise ValueError(f"side must be 'Int' or 'Ext', not {side!r}") from None


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic …`` header, ``None`` if absent or not Basic."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        text = decoded.decode("latin-1")
    user, sep, password = text.partition(":")
    if not sep:
        return None
    return user, password


class _Locations:
    """Memo of (peer, X-Forwarded-For) → (client address, internal?) for one policy: parsing the
    addresses costs more than the rest of the decision, and a site has few proxies and many repeats."""

    LIMIT = 8192

    def __init__(self) -> None:
        self.network: NetworkPolicy | None = None
        self.memo: dict[tuple[str, str | None], tuple[str, bool]] = {}

    def locate(self, network: NetworkPolicy, remote_addr: str, forwarded_for: str | None) -> tuple[str, bool]:
        if network is not self.network:
            self.network, self.memo = network, {}
        key = (remote_addr, forwarded_for)
        found = self.memo.get(key)
        if found is None:
            address = network.client_address(remote_addr, forwarded_for)
            found = (address, network.is_internal(address))
            if len(self.memo) >= self.LIMIT:
                self.memo = {}
            self.memo[key] = found
        return found


_locations = _Locations()


@dataclass(frozen=True)
class Schemes:
    """The external side's authentication schemes, in the order they are offered, and the NTLM
    handshakes of this worker (``None``: Negotiate and NTLM are not offered)."""

    offered: tuple[str, ...] = ("Basic",)
    handshakes: Handshakes | None = None

    def challenges(self, connection: Connection | None) -> tuple[str, ...]:
        """The 401's challenges: the connection schemes only where the server keeps connections."""
        return tuple(CHALLENGE if scheme == "Basic" else scheme for scheme in self.offered
                     if scheme == "Basic" or self.handshakes is not None and connection is not None)


BASIC_ONLY = Schemes()
_REASONS = {"BadCredentials": "bad-credentials", "NoHandshake": "no-handshake", "HandshakeExpired": "handshake-expired"}


def decide(side: str, remote_addr: str | None, forwarded_for: str | None, authorization: str | None,
           network: NetworkPolicy, users: UserStore, *, url_scheme: str = "http",
           forwarded_proto: str | None = None, limiter: FailureLimiter | None = None,
           schemes: Schemes = BASIC_ONLY, connection: Connection | None = None) -> Access | Refusal:
    """The decision for one request on one side; ``limiter`` counts and refuses failed logins;
    ``connection`` is the request's (:mod:`devupdate.web.connection`), for NTLM and Negotiate."""
    result = _decide(side, remote_addr, forwarded_for, authorization, network, users, url_scheme,
                     forwarded_proto, limiter, schemes, connection)
    if isinstance(result, Refusal) and result.status == 401 and result.challenges == (CHALLENGE,):
        offered = schemes.challenges(connection)
        if offered != result.challenges:
            result = dataclasses.replace(result, challenges=offered)
    return result


def _throttled(limiter: FailureLimiter | None, address: str, user: str) -> Refusal | None:
    wait = limiter.retry_after(address) if limiter is not None else 0
    if not wait:
        return None
    metrics.auth_throttled("rate-limited")
    return Refusal(429, "TooManyFailures", f"too many failed logins from {address}; retry in {wait} s",
                   address, user[:256], retry_after=wait)


def _connection_scheme(scheme: str, value: str, address: str, schemes: Schemes, connection: Connection | None,
                       limiter: FailureLimiter | None, side: str) -> Access | Refusal:
    """One leg of an NTLM or Negotiate handshake."""
    canonical = next(name for name in CONNECTION_SCHEMES if name.lower() == scheme.lower())
    throttled = _throttled(limiter, address, "")
    if throttled is not None:
        return throttled
    assert schemes.handshakes is not None, "the caller checked that the scheme is offered"
    try:
        step = schemes.handshakes.step(canonical, value, connection)
    except UserStoreUnavailable as exc:
        return Refusal(503, "Unavailable", exc.message, address, retry_after=5)
    if step.challenge:
        return Refusal(401, "AuthenticationContinue", f"{canonical} handshake: answer the challenge on this "
                       "connection", address, challenges=(step.challenge,))
    if step.user:
        return Access(address, step.user, side)
    if step.failed_login:
        if limiter is not None:
            throttled = _throttled(limiter, address, "")
            if throttled is not None:
                return throttled
            limiter.failed(address)
        # bad-credentials, or no-handshake / handshake-expired: an AUTHENTICATE without its context
        metrics.sign_in_failed("device", _REASONS.get(step.code, "bad-credentials"))
    return Refusal(401, step.code, step.message, address)


def _decide(side: str, remote_addr: str | None, forwarded_for: str | None, authorization: str | None,
            network: NetworkPolicy, users: UserStore, url_scheme: str, forwarded_proto: str | None,
            limiter: FailureLimiter | None, schemes: Schemes, connection: Connection | None) -> Access | Refusal:
    side = _SIDES.get(side) or canonical_side(side)
    address, internal = _locations.locate(network, remote_addr or "", forwarded_for)
    if side == "Int":
        if not internal:
            return Refusal(403, "NotInternal", "this path answers internal networks only; "
                           "external devices use /RequestHandlerExt", address)
        return Access(address, "", side)
    if network.external_https_only and not network.is_https(url_scheme, remote_addr or "", forwarded_proto):
        return Refusal(403, "HttpsRequired", "the external side answers over HTTPS only; "
                       "use the https:// external URL", address)
    if authorization is None or not authorization.strip():
        return Refusal(401, "AuthenticationRequired", "credentials required: anonymous access is not supported",
                       address)
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() in ("ntlm", "negotiate"):
        offered = any(name.lower() == scheme.lower() for name in schemes.offered)
        if offered and schemes.handshakes is not None:
            return _connection_scheme(scheme, value, address, schemes, connection, limiter, side)
    credentials = basic_credentials(authorization) if "Basic" in schemes.offered else None
    if credentials is None:
        if schemes.handshakes is None:
            return Refusal(401, "AuthenticationRequired", "HTTP Basic credentials required", address)
        return Refusal(401, "AuthenticationRequired", f"credentials required: one of {', '.join(schemes.offered)}",
                       address)
    user, password = credentials
    wait = limiter.retry_after(address) if limiter is not None else 0
    if wait:
        metrics.auth_throttled("rate-limited")
        return Refusal(429, "TooManyFailures", f"too many failed logins from {address}; retry in {wait} s",
                       address, user[:256], retry_after=wait)
    try:
        ok = bool(user) and users.verify(user, password)
    except HashingBusy as exc:
        metrics.auth_throttled("busy")
        return Refusal(503, "Busy", exc.message, address, user[:256], retry_after=1)
    except UserStoreUnavailable as exc:
        return Refusal(503, "Unavailable", exc.message, address, user[:256], retry_after=5)
    if not ok:
        if limiter is not None:
            # a guess that waited for a hashing slot while the source reached its limit is answered
            # like one that came later: the limit, not a verdict on the password
            wait = limiter.retry_after(address)
            if wait:
                metrics.auth_throttled("rate-limited")
                return Refusal(429, "TooManyFailures", f"too many failed logins from {address}; retry in {wait} s",
                               address, user[:256], retry_after=wait)
            limiter.failed(address)
        metrics.sign_in_failed("device")
        return Refusal(401, "BadCredentials", "user name or password is wrong", address, user[:256])
    return Access(address, user, side)


def check_access(side: str) -> Access | Refusal:
    """``decide`` for the current Flask request."""
    ext = current_app.extensions
    headers = request.headers
    return decide(side, request.remote_addr, headers.get("X-Forwarded-For"), headers.get("Authorization"),
                  ext["network"], ext["users"], url_scheme=request.scheme,
                  forwarded_proto=headers.get("X-Forwarded-Proto"), limiter=ext.get("auth_failures"),
                  schemes=ext.get(SCHEMES_EXTENSION, BASIC_ONLY), connection=connections.of(request.environ))


def guard_request(side: str) -> tuple[str, str] | Response:
    """``(client_address, user)`` when the current request may use ``side``, else the refusal response
    (XML error body; ``401`` with a Basic challenge, ``403``, or ``429``/``503`` with ``Retry-After``)."""
    result = check_access(side)
    if isinstance(result, Refusal):
        return result.response()
    return result.client_address, result.user


def side_guard(side: str) -> Callable:
    """View decorator: refuse early; on success ``g.client_address`` and ``g.device_user`` are set."""
    canonical_side(side)

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            result = check_access(side)
            if isinstance(result, Refusal):
                return result.response()
            g.client_address, g.device_user = result.client_address, result.user
            return view(*args, **kwargs)
        return wrapper
    return decorate
