"""Who may use the server-sync endpoints (S6, [wsus] §1f): ServerSyncWebService, DssAuthWebService
and the rollup operations of the Reporting service.

Anonymous, as WSUS, but only from ``[wsus] sync_networks`` (empty: the internal networks). Options,
each narrowing further: ``sync_accounts`` (the DSS account GUIDs allowed a cookie), ``sync_basic``
(``user:password``) and ``sync_token`` (a Bearer token) for devupdate downstreams, and
``sync_client_certificate`` (mutual TLS, verified by a trusted TLS proxy that says so in
``X-SSL-Client-Verify: SUCCESS``). A refusal is ``403`` naming the setting; secrets are compared in
constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable
from typing import Any

from devupdate.web.network import Network, in_networks, parse_networks

ROLLUP_OPERATIONS = frozenset(("GetRollupConfiguration", "RollupDownstreamServers", "RollupComputers",
                               "GetOutOfSyncComputers", "RollupComputerStatus"))
SYNC_SERVICES = frozenset(("serversync", "dssauth"))


class Refused(Exception):
    """A request the S6 policy turns away; the message names what to change."""


def guarded(service_key: str, operation: str | None) -> bool:
    """Whether (service, operation) is a server-sync endpoint that S6 guards."""
    return service_key in SYNC_SERVICES or service_key == "reporting" and operation in ROLLUP_OPERATIONS


def networks(settings: Any) -> tuple[Network, ...]:
    """The networks server sync is open to, parsed once at start (a bad value stops the start)."""
    values: Iterable[str] = settings.wsus_sync_networks or settings.internal_networks
    return parse_networks(values, "DEVUPDATE_WSUS_SYNC_NETWORKS")


def check(settings: Any, allowed: tuple[Network, ...], address: str, authorization: str,
          client_verified: bool) -> None:
    """Refused unless the request passes every configured condition."""
    if not in_networks(address, allowed):
        raise Refused(f"server sync is not open to {address or 'this address'}: add its network to "
                      "DEVUPDATE_WSUS_SYNC_NETWORKS ([wsus] sync_networks; default: the internal networks)")
    if settings.wsus_sync_client_certificate and not client_verified:
        raise Refused("server sync needs a client certificate verified by the TLS proxy "
                      "(X-SSL-Client-Verify: SUCCESS from a trusted proxy; [wsus] sync_client_certificate)")
    basic, token = settings.wsus_sync_basic, settings.wsus_sync_token
    if basic or token:
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        ok = False
        if scheme == "basic" and basic:
            try:
                given = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                given = b""
            ok = hmac.compare_digest(given, basic.encode())
        elif scheme == "bearer" and token:
            ok = hmac.compare_digest(value.strip().encode(), token.encode())
        if not ok:
            raise Refused("server sync needs the credentials of [wsus] sync_basic (HTTP Basic) or sync_token "
                          "(Bearer) between devupdate servers")


def account_allowed(settings: Any, account_guid: str) -> bool:
    """Whether the DSS ``account_guid`` may have a cookie (``[wsus] sync_accounts``; empty: any)."""
    allowed = {value.strip().strip("{}").lower() for value in settings.wsus_sync_accounts}
    return not allowed or account_guid.lower() in allowed


def refuse_account(settings: Any, account_guid: str) -> None:
    if not account_allowed(settings, account_guid):
        raise Refused(f"the downstream server {account_guid} is not in DEVUPDATE_WSUS_SYNC_ACCOUNTS "
                      "([wsus] sync_accounts); add its ServerId there")
