"""IMonitorable.Ping on every service: is this service up (and, with ``pingLevel`` ≥ 1, its
database)? Answers in the ``MonitoredServicesResponse`` shape of the WSDLs."""

from __future__ import annotations

from datetime import UTC, datetime

from devupdate import numbers
from devupdate.wsus.soap.envelope import El, el, invalid, text
from devupdate.wsus.soap.getconfig import config_stamp
from devupdate.wsus.soap.registry import LIGHT, Call, operation

#: the WSDL's service names, as real WSUS reports them
NAMES = {"client": "ClientWebService", "simpleauth": "SimpleAuthWebService", "reporting": "ReportingWebService",
         "serversync": "ServerSyncWebService", "dssauth": "DssAuthWebService"}


@operation("Ping", weight=LIGHT)
def ping(call: Call) -> El:
    level_text = text(call.body, "pingLevel")
    try:
        level = numbers.whole(level_text) if level_text is not None else 0
    except ValueError:
        raise invalid("pingLevel") from None
    healthy, database = True, None
    if level >= 1:
        healthy = call.database_ok()
        database = "reachable" if healthy else "unreachable"
    now = datetime.now(UTC)
    content_type = call.content_type.split(";", 1)[0].strip()[:100]
    return el("PingResponse", el(
        "PingResult",
        el("SuccessFlag", healthy),
        el("ServicesTime", now),
        el("ServicesName", NAMES[call.service.key]),
        el("ServicesMachine", call.settings.effective_server_name),
        el("IsHttps", call.https),
        el("RequestContentType", content_type) if content_type else None,
        el("ConfigFileLastModifiedTime", config_stamp()),
        el("ConfigFileNextExpirationTime", now),
        el("ConfigFileExpirationModuloInMinutes", 0),
        el("DatabaseInfo", database) if database else None))
