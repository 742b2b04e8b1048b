"""Reporting operations of MS-WUSP ([wsus] §3.9): ``ReportEventBatch`` feeds the compliance state
(W9); the minimal ``ReportEventBatch2`` (no cookie, unauthenticated: ``false``, nothing stored),
``GetRequiredInventoryType`` (``0``) and ``ReportInventory`` (``true``, the data discarded).

Validation order of ``ReportEventBatch``: the cookie (§4.3, without the config stamp) →
``clientTime`` → ``eventBatch`` at most 1,000 events (§7, ``[wsus] max_report_events``) → each
event's values (its GUIDs, numbers and times; MiscData at most 64 items, ``max_misc_data_items``) —
a bad one is ``InvalidParameters`` naming it, e.g.
``eventBatch.ReportingEvent.BasicData.EventInstanceID``. Strings are cut to 4 KiB (§7,
``max_event_string_length``), never refused. Then the store drops another computer's events
(``TargetID/Sid`` ≠ the cookie's client id), other namespaces and known ``EventInstanceID``s, and
applies the rest in one transaction. An AGENT_STATUS_30 (156) makes every root of the computer it does
not list not applicable: :func:`roots_of` reads them (§3.5 step 1, as the computer's next scan would,
without a category filter).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date

from devupdate import metrics
from devupdate.wsus.client import auth, catalogview, scan
from devupdate.wsus.compliance import store
from devupdate.wsus.compliance.events import ZERO_GUID
from devupdate.wsus.compliance.models import MAX_MISC_ITEMS, MAX_REPLACEMENT_STRINGS, MAX_STRING
from devupdate.wsus.soap import envelope as soap
from devupdate.wsus.soap.envelope import El, child, children, el, invalid, text
from devupdate.wsus.soap.registry import LIGHT, Call, operation
from devupdate.wsus.targeting import service as targeting
from devupdate.wsus.targeting.models import Computer

log = logging.getLogger("devupdate.wsus.reporting")

MAX_EVENTS = 1000


@dataclass(frozen=True)
class Limits:
    """§7's limits of a batch ([wsus] max_report_events, max_event_string_length, max_misc_data_items)."""

    events: int = MAX_EVENTS
    string: int = MAX_STRING
    misc_items: int = MAX_MISC_ITEMS

    @classmethod
    def of(cls, settings: object) -> Limits:
        return cls(getattr(settings, "wsus_max_report_events", MAX_EVENTS),
                   getattr(settings, "wsus_max_event_string_length", MAX_STRING),
                   getattr(settings, "wsus_max_misc_data_items", MAX_MISC_ITEMS))
EVENT = "eventBatch.ReportingEvent"
_INT32 = (-(2**31), 2**31 - 1)
_INT16 = (-(2**15), 2**15 - 1)


def client_id_of(call: Call) -> str:
    """The client id of the request's client cookie (§4.3; ReportEventBatch does not compare the
    config stamp)."""
    return auth.client_cookie(call).subject.lower()


def _number(parent: ET.Element | None, name: str, where: str, bounds: tuple[int, int] = _INT32,
            default: int | None = None) -> int:
    value = text(parent, name)
    if value is None:
        if default is None:
            raise invalid(f"{where}.{name}")
        return default
    try:
        number = int(value, 10) if value.lstrip("+-").isdigit() and value.isascii() else None
    except ValueError:
        number = None
    if number is None or not bounds[0] <= number <= bounds[1]:
        raise invalid(f"{where}.{name}")
    return number


def _guid(value: str | None, where: str) -> str:
    try:
        return soap.parse_guid(value or "")
    except ValueError:
        raise invalid(where) from None


def _strings(parent: ET.Element | None, name: str, limit: int, where: str, length: int) -> tuple[str, ...]:
    values: list[str] = []
    for element in children(child(parent, name), "string"):
        if len(values) == limit:
            raise invalid(f"{where}.{name}")
        values.append(store.bounded(element.text, length))
    return tuple(values)


def parse_event(element: ET.Element, limits: Limits = Limits()) -> store.Reported:
    basic = child(element, "BasicData")
    where = f"{EVENT}.BasicData"
    if basic is None:
        raise invalid(where)
    try:
        time_at_target = soap.parse_datetime(text(basic, "TimeAtTarget") or "")
    except ValueError:
        raise invalid(f"{where}.TimeAtTarget") from None
    instance = _guid(text(basic, "EventInstanceID"), f"{where}.EventInstanceID")
    update = child(basic, "UpdateID")
    update_id: str | None = None
    revision: int | None = None
    if update is not None:
        update_id = _guid(text(update, "UpdateID"), f"{where}.UpdateID.UpdateID")
        revision = _number(update, "RevisionNumber", f"{where}.UpdateID", default=0)
        if update_id == ZERO_GUID:
            update_id, revision = None, None
    extended = child(element, "ExtendedData")
    return store.Reported(
        event_instance_id=instance,
        target=store.bounded(text(child(basic, "TargetID"), "Sid"), 256).lower(),
        time_at_target=time_at_target,
        event_id=_number(basic, "EventID", where, _INT16),
        namespace_id=_number(basic, "NamespaceID", where),
        source_id=_number(basic, "SourceID", where, _INT16, default=0),
        sequence_number=_number(basic, "SequenceNumber", where, default=0),
        update_id=update_id, revision_number=revision,
        win32_hresult=_number(basic, "Win32HResult", where, default=0),
        app_name=store.bounded(text(basic, "AppName"), limits.string),
        replacement_strings=_strings(extended, "ReplacementStrings", MAX_REPLACEMENT_STRINGS,
                                     f"{EVENT}.ExtendedData", limits.string),
        misc_data=_strings(extended, "MiscData", limits.misc_items, f"{EVENT}.ExtendedData", limits.string))


def parse_batch(body: ET.Element, limits: Limits = Limits()) -> list[store.Reported]:
    batch = child(body, "eventBatch")
    elements: list[ET.Element] = []
    for element in children(batch, "ReportingEvent"):
        if len(elements) == limits.events:
            raise invalid("eventBatch")
        elements.append(element)
    return [parse_event(element, limits) for element in elements]


def _client_time(body: ET.Element) -> None:
    try:
        soap.parse_datetime(text(body, "clientTime") or "")
    except ValueError:
        raise invalid("clientTime") from None


def roots_of(client_id: str, scope: str) -> store.RootsOf:
    """The UpdateIDs that are roots (§3.5 step 1) of ``client_id`` under ``ClientScope`` ``scope``: its
    effective explicit deployments and, with ``all``, every update of the selected products. A
    computer this server has no row for (it never had a cookie) has none."""

    def read() -> set[str]:
        computer = Computer.select().where(Computer.computer_id == client_id[:256]).first()
        if computer is None:
            return set()
        today = date.today()
        deployments = {uid: scan.Deployment(action=approval.action, last_change=today, id=approval.id)
                       for uid, approval in targeting.effective_deployments(computer.id).items()}
        target = catalogview.Target(deployments=deployments)
        return set(catalogview.roots(target, scope=scope if scope in catalogview.SCOPES else "all", today=today))

    return read


@operation("ReportEventBatch", "reporting")
def report_event_batch(call: Call) -> El:
    client_id = client_id_of(call)
    _client_time(call.body)
    batch = parse_batch(call.body, Limits.of(call.settings))
    result = store.record_batch(client_id, batch,
                                roots=roots_of(client_id, str(getattr(call.settings, "wsus_client_scope", "all"))))
    metrics.wsus_events_reported(result.taken, result.duplicates,
                                 result.dropped_other_computer + result.dropped_namespace)
    return el("ReportEventBatchResponse", el("ReportEventBatchResult", True))


@operation("ReportEventBatch2", "reporting", weight=LIGHT)
def report_event_batch2(call: Call) -> El:
    """Unauthenticated (a ``computerId``, no cookie): answered ``false``, nothing stored."""
    return el("ReportEventBatch2Response", el("ReportEventBatch2Result", False))


@operation("GetRequiredInventoryType", "reporting", weight=LIGHT)
def get_required_inventory_type(call: Call) -> El:
    client_id_of(call)
    rules = text(call.body, "rulesId")
    if rules is not None:
        _guid(rules, "rulesId")
    return el("GetRequiredInventoryTypeResponse", el("GetRequiredInventoryTypeResult", 0))


@operation("ReportInventory", "reporting", weight=LIGHT)
def report_inventory(call: Call) -> El:
    client_id_of(call)
    return el("ReportInventoryResponse", el("ReportInventoryResult", True))
