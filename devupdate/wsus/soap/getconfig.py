"""Client.GetConfig (spec/wsus.md §3.2): the server's configuration for the Windows Update Agent.

Every value of the table is fixed in code today, so the *config stamp* (``LastChange``, which
cookies will carry and ``ConfigChanged`` compares) is the time the table last changed in code:
bump ``CONFIG_STAMP`` with any change below. When parts become configurable, the stamp moves to
the database with them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from devupdate.wsus.soap.envelope import El, el, invalid, text
from devupdate.wsus.soap.registry import LIGHT, Call, operation

CONFIG_STAMP = datetime(2026, 12, 2, 0, 0, 0, tzinfo=UTC)
MAX_EXTENDED_UPDATES_PER_REQUEST = 50
SERVER_PROTOCOL_VERSION = "3.2"
PROPERTIES = (("MaxExtendedUpdatesPerRequest", str(MAX_EXTENDED_UPDATES_PER_REQUEST)),
              ("ProtocolVersion", SERVER_PROTOCOL_VERSION), ("IsInventoryRequired", "0"),
              ("ClientReportingLevel", "2"))
_PROTOCOL_VERSION = re.compile(r"[0-9]{1,5}\.[0-9]{1,5}")


def config_stamp() -> datetime:
    return CONFIG_STAMP


@operation("GetConfig", "client", weight=LIGHT)
def get_config(call: Call) -> El:
    version = text(call.body, "protocolVersion")
    if version is not None and not _PROTOCOL_VERSION.fullmatch(version):
        raise invalid("protocolVersion")
    return el("GetConfigResponse", el(
        "GetConfigResult",
        el("LastChange", config_stamp()),
        el("IsRegistrationRequired", True),
        el("AuthInfo", el("AuthPlugInInfo", el("PlugInID", "SimpleTargeting"),
                          el("ServiceUrl", "SimpleAuthWebService/SimpleAuth.asmx"))),
        el("Properties", [el("ConfigurationProperty", el("Name", name), el("Value", value))
                          for name, value in PROPERTIES])))
