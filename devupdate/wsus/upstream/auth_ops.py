"""The DSS authorization of MS-WSUSSS ([wsus] §5.1, §4.3): GetAuthConfig → DssAuth
GetAuthorizationCookie → ServerSync GetCookie, and the DSS cookie every other operation opens.

- ``GetAuthConfig``: one plug-in, ``DssTargeting``, at ``DssAuthWebService/DssAuthWebService.asmx``
  (relative, as real WSUS sends it: ``exchanges/000001``).
- ``GetAuthorizationCookie`` (DssAuth): ``accountName`` (the DSS FQDN) and ``accountGuid`` (its
  ServerId); S6's allowlist decides, the DSS row is made or updated, and a ``dss-auth`` cookie
  sealed for the account GUID is handed out (``programKeys`` ignored).
- ``GetCookie``: exactly one ``DssTargeting`` authorization cookie of ours, an optional old DSS cookie
  of the same account, ``protocolVersion`` 1.x (another major is ``IncompatibleProtocolVersion``);
  answers a ``dss`` cookie living ``[wsus] dss_cookie_lifetime`` (240 min), or less when the
  authorization cookie expires sooner.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from devupdate.db import utcnow
from devupdate.wsus.client import auth, cookies, keys
from devupdate.wsus.soap import envelope as soap
from devupdate.wsus.soap.envelope import El, SoapFault, el, invalid, text
from devupdate.wsus.soap.getconfig import config_stamp
from devupdate.wsus.soap.registry import LIGHT, Call, operation
from devupdate.wsus.upstream import access
from devupdate.wsus.upstream.models import DownstreamServer

log = logging.getLogger("devupdate.wsus.upstream")

PLUGIN_ID = "DssTargeting"
SERVICE_URL = "DssAuthWebService/DssAuthWebService.asmx"
PROTOCOL_VERSION = "1.20"
_ACCOUNT_NAME = re.compile(r"[^\x00-\x20\x7f<>&\"']{1,255}")
_PROTOCOL = re.compile(r"([0-9]{1,5})\.[0-9]{1,5}")


@operation("GetAuthConfig", "serversync", weight=LIGHT)
def get_auth_config(call: Call) -> El:
    return el("GetAuthConfigResponse", el("GetAuthConfigResult", el("LastChange", config_stamp()), el(
        "AuthInfo", el("AuthPlugInInfo", el("PlugInID", PLUGIN_ID), el("ServiceUrl", SERVICE_URL), el("Parameter")))))


@operation("GetAuthorizationCookie", "dssauth", weight=LIGHT)
def get_authorization_cookie(call: Call) -> El:
    name = text(call.body, "accountName")
    if name is None or not _ACCOUNT_NAME.fullmatch(name):
        raise invalid("accountName")
    try:
        account = soap.parse_guid(text(call.body, "accountGuid") or "")
    except ValueError:
        raise invalid("accountGuid") from None
    access.refuse_account(call.settings, account)
    now = datetime.now(UTC)
    state = cookies.new_state(cookies.DSS_AUTH, account, now=now, lifetime=call.settings.wsus_auth_cookie_lifetime,
                              config=config_stamp())
    sealed = keys.seal(state, call.settings)
    stamp = utcnow()
    (DownstreamServer.insert(account_guid=account, account_name=name, address=call.client_address[:64],
                             first_seen=stamp, last_seen=stamp)
     .on_conflict(conflict_target=[DownstreamServer.account_guid],
                  update={DownstreamServer.account_name: name, DownstreamServer.address: call.client_address[:64],
                          DownstreamServer.last_seen: stamp})
     .execute())
    log.info("DSS authorization cookie for %s (%s) from %s", account, name, call.client_address)
    return el("GetAuthorizationCookieResponse", el(
        "GetAuthorizationCookieResult", el("PlugInId", PLUGIN_ID), el("CookieData", cookies.to_text(sealed))))


@operation("GetCookie", "serversync", weight=LIGHT)
def get_cookie(call: Call) -> El:
    authorization = auth.open_authorization(call, kind=cookies.DSS_AUTH, plugin_id=PLUGIN_ID)
    access.refuse_account(call.settings, authorization.subject)
    old_element = soap.child(call.body, "oldCookie")
    if text(old_element, "EncryptedData") is not None:
        old = auth.open_cookie(old_element, call, parameter="oldCookie", kind=cookies.DSS, check_expiry=False)
        if old.subject != authorization.subject:
            raise SoapFault(soap.INVALID_COOKIE, "oldCookie")
    protocol = text(call.body, "protocolVersion") or ""
    match = _PROTOCOL.fullmatch(protocol)
    if match is None:
        raise invalid("protocolVersion")
    if int(match.group(1)) != 1:
        raise SoapFault(soap.INCOMPATIBLE_PROTOCOL_VERSION, "protocolVersion")
    now = datetime.now(UTC)
    lifetime = min(call.settings.wsus_dss_cookie_lifetime, max(1, authorization.expiry - cookies.to_seconds(now)))
    state = cookies.new_state(cookies.DSS, authorization.subject, now=now, lifetime=lifetime, protocol=protocol,
                              config=config_stamp())
    (DownstreamServer.update(protocol_version=protocol[:16], last_seen=utcnow())
     .where(DownstreamServer.account_guid == authorization.subject).execute())
    return el("GetCookieResponse", auth.cookie_element("GetCookieResult", state, call.settings))


def dss_cookie(call: Call) -> cookies.CookieState:
    """The DSS cookie of a ServerSync operation (``<cookie>``), checked in the order of §4.3, and
    its account still allowed (S6). A refused cookie's fault has an empty ``Message``, as real WSUS
    answers it (``exchanges/000019``)."""
    state = auth.open_cookie(soap.child(call.body, "cookie"), call, parameter="", kind=cookies.DSS)
    access.refuse_account(call.settings, state.subject)
    return state
