"""Client.SyncPrinterCatalog ([wsus] §3.10): used only by the Add Printer wizard. devupdate has no
printer drivers, so the answer is an empty ``SyncInfo`` (``Truncated=false``) with a ``NewCookie``:
the same client and expiry, a fresh nonce (§4.3).

Validation order: the cookie (§4.3) → ``installedNonLeafUpdateIDs`` (at most 400, as SyncUpdates'
``InstalledNonLeafUpdateIDs``) and ``printerUpdateIDs`` (at most 20,000) → the config stamp
(``ConfigChanged``). The dispatch also sends a ``SyncPrinterCatalog`` body with the SyncUpdates
action here (§2.2).
"""

from __future__ import annotations

from devupdate.wsus.client import auth, cookies
from devupdate.wsus.soap import envelope as soap
from devupdate.wsus.soap import getconfig
from devupdate.wsus.soap.envelope import El, child, children, el, invalid
from devupdate.wsus.soap.registry import LIGHT, Call, operation

MAX_INSTALLED = 400
MAX_PRINTER_IDS = 20_000


def _ints(call: Call, name: str, limit: int) -> None:
    """An ``ArrayOfInt`` parameter: over ``limit`` items, or an item that is no int, is
    ``InvalidParameters`` with ``Message`` = the parameter's name."""
    for count, element in enumerate(children(child(call.body, name), "int"), start=1):
        value = (element.text or "").strip()
        if count > limit or not (value.isascii() and value.lstrip("-").isdigit() and -(2**31) <= int(value) < 2**31):
            raise invalid(name)


@operation("SyncPrinterCatalog", "client", weight=LIGHT)
def sync_printer_catalog(call: Call) -> El:
    state = auth.client_cookie(call)
    for name, limit in (("installedNonLeafUpdateIDs", MAX_INSTALLED), ("printerUpdateIDs", MAX_PRINTER_IDS)):
        _ints(call, name, limit)
    if state.config != cookies.stamp_micros(getconfig.config_stamp()):
        raise soap.SoapFault(soap.CONFIG_CHANGED, "cookie")
    return el("SyncPrinterCatalogResponse",
              el("SyncPrinterCatalogResult", el("Truncated", False), auth.renewed("NewCookie", state)))
