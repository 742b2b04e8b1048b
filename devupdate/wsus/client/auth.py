"""The authorization operations of MS-WUSP (spec/wsus.md §3.1, §3.3, §3.4) and the cookie helpers
every other client operation uses.

- ``SimpleAuth.GetAuthorizationCookie``: the computer row is made or updated (client id, DNS name,
  the requested target groups), and an auth cookie sealed for the client id is handed out.
- ``Client.GetCookie``: exactly one auth cookie of ours, an optional old client cookie of ours whose
  client state (deployment high-water mark, content URL generation) carries over, ``lastChange``
  equal to the config stamp; answers a client cookie that lives an hour.
- ``Client.RegisterComputer``: a valid client cookie, then ``computerInfo`` stored on the computer
  (strings cut to 256 characters) and the computer marked registered.

Other operations read their cookie with :func:`client_cookie` and hand out a renewed one with
:func:`cookie_element` / :func:`renewed` (``NewCookie`` keeps ``Expiration``, new ciphertext).
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from devupdate.wsus.client import cookies, keys, scan
from devupdate.wsus.soap import envelope as soap
from devupdate.wsus.soap.envelope import El, SoapFault, el, invalid, text
from devupdate.wsus.soap.getconfig import config_stamp
from devupdate.wsus.soap.registry import LIGHT, Call, operation
from devupdate.wsus.targeting import service as targeting
from devupdate.wsus.targeting.models import Computer

log = logging.getLogger("devupdate.wsus.client")

PLUGIN_ID = "SimpleTargeting"
_CLIENT_ID = re.compile(r"[a-z0-9-]{1,255}")
_DNS_NAME = re.compile(r"[^\x00-\x20\x7f<>&\"']{1,255}")
_PROTOCOL_VERSION = re.compile(r"[0-9]{1,5}\.[0-9]{1,5}")
MAX_GROUP_NAMES = 64


def _fault(refused: cookies.CookieRefused, parameter: str, *, auth: bool = False) -> SoapFault:
    """The fault of a refused cookie; ``Message`` names the parameter, as for the other operations."""
    code = refused.code
    if auth and code == cookies.INVALID_COOKIE:
        code = soap.INVALID_AUTHORIZATION_COOKIE
    return SoapFault(code, parameter)


# --- cookies for every client operation ----------------------------------------------------------------

def open_cookie(element: ET.Element | None, call: Call, *, parameter: str = "cookie", kind: str = cookies.CLIENT,
                check_expiry: bool = True, check_config: bool = False) -> cookies.CookieState:
    """The state of a ``Cookie`` element (``Expiration``, ``EncryptedData``) sealed here for ``kind``;
    a SoapFault with the §4.2 code otherwise (a missing cookie is ``InvalidCookie``). The clear-text
    ``Expiration`` is not read: the sealed expiry decides (§4.3)."""
    try:
        blob = cookies.from_text(text(element, "EncryptedData"))
        return keys.unseal(blob, kind=kind, settings=call.settings, check_expiry=check_expiry,
                           config_stamp=config_stamp() if check_config else None)
    except cookies.CookieRefused as refused:
        log.info("cookie refused on %s: %s", call.operation, refused)
        raise _fault(refused, parameter) from None


def client_cookie(call: Call, name: str = "cookie", *, check_config: bool = False) -> cookies.CookieState:
    """The client cookie of the operation (``<cookie>`` under the operation element), checked in
    the order of §4.3; ``check_config`` where the operation compares the config stamp (SyncUpdates,
    SyncPrinterCatalog)."""
    return open_cookie(soap.child(call.body, name), call, parameter=name, check_config=check_config)


def cookie_element(name: str, state: cookies.CookieState, settings: Any = None) -> El:
    """A ``Cookie``: the clear-text ``Expiration`` (informational) and the sealed ``EncryptedData``."""
    return el(name, el("Expiration", state.expires_at),
              el("EncryptedData", cookies.to_text(keys.seal(state, settings))))


def renewed(name: str, state: cookies.CookieState, settings: Any = None, **changes: object) -> El:
    """``NewCookie``: the same expiry, the changed client state, a new ciphertext."""
    return cookie_element(name, state.renewed(**changes), settings)


def issue_client_cookie(subject: str, *, protocol: str = "", high_water: int = 0, content_generation: int = 0,
                        settings: Any, now: datetime | None = None) -> cookies.CookieState:
    """A new client cookie's state: issued now, living ``[wsus] client_cookie_lifetime``."""
    return cookies.new_state(cookies.CLIENT, subject, now=now or datetime.now(UTC),
                             lifetime=settings.wsus_client_cookie_lifetime, protocol=protocol, config=config_stamp(),
                             high_water=high_water, content_generation=content_generation)


# --- SimpleAuth.GetAuthorizationCookie -------------------------------------------------------------------

def _group_names(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    names = tuple(name for name in (part.strip() for part in value.split(";")) if name)
    if len(names) > MAX_GROUP_NAMES or any(len(name) > cookies.MAX_GROUP_NAME for name in names):
        raise invalid("targetGroupName")
    return names


@operation("GetAuthorizationCookie", "simpleauth", weight=LIGHT)
def get_authorization_cookie(call: Call) -> El:
    client_id = (text(call.body, "clientId") or "").lower()
    if not _CLIENT_ID.fullmatch(client_id):
        raise invalid("clientId")
    target_groups = text(call.body, "targetGroupName")
    groups = _group_names(target_groups)
    dns_name = text(call.body, "dnsName")
    if dns_name is not None and not _DNS_NAME.fullmatch(dns_name):
        raise invalid("dnsName")
    state = cookies.new_state(cookies.AUTH, client_id, now=datetime.now(UTC),
                              lifetime=call.settings.wsus_auth_cookie_lifetime, config=config_stamp(), groups=groups)
    try:
        sealed = keys.seal(state, call.settings)
    except cookies.CookieTooLarge:
        raise invalid("targetGroupName") from None
    computer = targeting.get_or_create_computer(client_id)
    if dns_name is not None and computer.dns_name != dns_name:
        Computer.update(dns_name=dns_name).where(Computer.id == computer.id).execute()
    if target_groups is not None or computer.client_group_names:
        targeting.set_client_groups(computer.id, target_groups)
    return el("GetAuthorizationCookieResponse", el(
        "GetAuthorizationCookieResult", el("PlugInId", PLUGIN_ID), el("CookieData", cookies.to_text(sealed))))


# --- Client.GetCookie ----------------------------------------------------------------------------------

def open_authorization(call: Call, kind: str = cookies.AUTH, plugin_id: str = PLUGIN_ID) -> cookies.CookieState:
    """The state of the one ``authCookies/AuthorizationCookie`` of ``plugin_id`` (ours for clients, the DSS
    plug-in for downstream servers), sealed here for ``kind``: ``InvalidAuthorizationCookie`` for none,
    several, another plug-in's or a forged one; the §4.2 code for an expired or rotated-out one."""
    found: list[ET.Element] = []
    for element in soap.children(soap.child(call.body, "authCookies"), "AuthorizationCookie"):
        found.append(element)
        if len(found) > 1:
            break
    if len(found) != 1 or (text(found[0], "PlugInId") or "").lower() != plugin_id.lower():
        raise SoapFault(soap.INVALID_AUTHORIZATION_COOKIE, "authCookies")
    try:
        blob = cookies.from_text(text(found[0], "CookieData"))
        return keys.unseal(blob, kind=kind, settings=call.settings)
    except cookies.CookieRefused as refused:
        log.info("%s authorization cookie refused: %s", kind, refused)
        raise _fault(refused, "authCookies", auth=True) from None


def _datetime(call: Call, name: str, *, required: bool) -> datetime | None:
    value = text(call.body, name)
    if value is None:
        if required:
            raise invalid(name)
        return None
    try:
        return soap.parse_datetime(value)
    except ValueError:
        raise invalid(name) from None


@operation("GetCookie", "client", weight=LIGHT)
def get_cookie(call: Call) -> El:
    auth = open_authorization(call)
    old = None
    old_element = soap.child(call.body, "oldCookie")
    if text(old_element, "EncryptedData") is not None:  # only an Expiration: no old cookie (§2.3)
        old = open_cookie(old_element, call, parameter="oldCookie", check_expiry=False)
        if old.subject != auth.subject:
            log.info("GetCookie: the old cookie is another client's")
            raise SoapFault(soap.INVALID_COOKIE, "oldCookie")
    last_change = _datetime(call, "lastChange", required=True)
    if last_change != config_stamp():
        raise SoapFault(soap.CONFIG_CHANGED, "lastChange")
    now = datetime.now(UTC)
    client_time = _datetime(call, "currentTime", required=False)
    if client_time is not None and abs((client_time - now).total_seconds()) > 300:
        log.info("GetCookie: client %s clock is %.0f s off", auth.subject, (client_time - now).total_seconds())
    protocol = text(call.body, "protocolVersion")
    if protocol is not None and not _PROTOCOL_VERSION.fullmatch(protocol):
        raise invalid("protocolVersion")
    state = issue_client_cookie(auth.subject, protocol=protocol or "", settings=call.settings, now=now,
                                high_water=old.high_water if old else 0,
                                content_generation=old.content_generation if old else scan.content_generation(
                                    call.settings.effective_wsus_content_base_url))
    return el("GetCookieResponse", cookie_element("GetCookieResult", state, call.settings))


# --- Client.RegisterComputer ---------------------------------------------------------------------------

_CLIENT_VERSION = ("ClientVersionMajorNumber", "ClientVersionMinorNumber", "ClientVersionBuildNumber",
                   "ClientVersionQfeNumber")


@operation("RegisterComputer", "client", weight=LIGHT)
def register_computer(call: Call) -> El:
    state = client_cookie(call)
    info_element = soap.child(call.body, "computerInfo")
    if info_element is None:
        raise invalid("computerInfo")
    info: dict[str, object] = {}
    for element in info_element:
        name = soap.local(element.tag)
        if name and not soap.is_absent(element) and len(element) == 0 and name not in info:
            info[name] = (element.text or "").strip()[:256]
    parts = [info.get(name) for name in _CLIENT_VERSION]
    if all(part is not None for part in parts):
        info["ClientVersion"] = ".".join(str(part) for part in parts)
    targeting.register_computer(state.subject, info, protocol_version=state.protocol or None)
    return el("RegisterComputerResponse")
