"""The rollup operations of the Reporting service ([wsus] §5.1, §5.3 step 7): downstream servers
send what their computers reported, and it lands in the compliance report marked with the reporting
server (W9).

They carry the fixed dummy cookie of [MS-WSUSSS] §3.2.4.5 (empty ``EncryptedData``) and are
authorized by S6, not by the cookie; a cookie with data must be a DSS cookie of this server (a forged
blob is ``InvalidCookie``, never looked into). The reporting server is the ``parentServerId`` the
requests name, shown by the name it authorized with when it did. Batches are bounded as §7 (5,000
servers, 1,500 computers, 20,000 out-of-sync ids, 500 statuses); above is ``InvalidParameters``.
Times from the downstream's clock are corrected by its ``clientTime`` when it is more than a minute
off (note 50); a time the correction takes outside the calendar is ``InvalidParameters`` naming it, and
a rollup number outside int32 (the column) is too. A batch is written in one transaction: a refused
item leaves nothing of it written.
"""

from __future__ import annotations

import json
import logging
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from devupdate.db import utcnow, write_transaction
from devupdate.wsus.client import keys
from devupdate.wsus.compliance import events
from devupdate.wsus.compliance import store as compliance
from devupdate.wsus.soap import envelope as soap
from devupdate.wsus.soap.envelope import El, child, children, el, invalid, text
from devupdate.wsus.soap.registry import LIGHT, Call, operation
from devupdate.wsus.upstream.auth_ops import dss_cookie
from devupdate.wsus.upstream.models import DownstreamServer, RolledUpComputer, RolledUpServer

log = logging.getLogger("devupdate.wsus.upstream")

SERVERS_BATCH, COMPUTERS_BATCH, OUT_OF_SYNC_BATCH, STATUS_BATCH = 5000, 1500, 20000, 500
MAX_UPDATE_STATUSES = 20000  # UpdateStatus items of one computer
#: SummarizationState 0..6 (§5.1)
STATES = (events.UNKNOWN, events.NOT_APPLICABLE, events.NEEDED, events.DOWNLOADED, events.INSTALLED,
          events.FAILED, events.PENDING_REBOOT)
SKEW = timedelta(minutes=1)
INT32 = (-2**31, 2**31 - 1)


def _dummy_or_dss(call: Call) -> None:
    cookie = child(call.body, "cookie")
    if text(cookie, "EncryptedData") is not None:
        dss_cookie(call)


def _guid(value: str | None, parameter: str) -> str:
    try:
        return soap.parse_guid(value or "")
    except ValueError:
        raise invalid(parameter) from None


def _time(value: str | None, parameter: str, *, required: bool = True) -> datetime | None:
    if value is None or not value.strip():
        if required:
            raise invalid(parameter)
        return None
    try:
        return soap.parse_datetime(value)
    except ValueError:
        raise invalid(parameter) from None


def _int(value: str | None, parameter: str, default: int | None = None) -> int:
    if value is None or not value.strip():
        if default is None:
            raise invalid(parameter)
        return default
    try:
        number = int(value.strip(), 10)
    except ValueError:
        raise invalid(parameter) from None
    if not INT32[0] <= number <= INT32[1]:
        raise invalid(parameter)
    return number


def _skew(call: Call) -> timedelta:
    """How far the downstream's clock is behind ours (zero within a minute)."""
    client_time = _time(text(call.body, "clientTime"), "clientTime", required=False)
    if client_time is None:
        return timedelta(0)
    offset = datetime.now(UTC) - client_time
    return offset if abs(offset) > SKEW else timedelta(0)


def _items(call: Call, array: str, item: str, limit: int) -> list[ET.Element]:
    found: list[ET.Element] = []
    for element in children(child(call.body, array), item):
        if len(found) == limit:
            raise invalid(f"{array}")
        found.append(element)
    return found


def reporter(server_id: str) -> str:
    """How the compliance report names the server ``server_id``: its authorized name, else the id."""
    row = DownstreamServer.get_or_none(DownstreamServer.account_guid == server_id)
    if row is None:
        row_name = RolledUpServer.select(RolledUpServer.full_domain_name).where(
            RolledUpServer.server_id == server_id).scalar()
        return f"{row_name} ({server_id})" if row_name else server_id
    return f"{row.account_name} ({server_id})"


def _shift(moment: datetime, skew: timedelta, parameter: str) -> datetime:
    """``moment`` corrected by ``skew``, naive UTC; out of the calendar is ``InvalidParameters``."""
    try:
        return (moment + skew).astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise invalid(parameter) from None


def _naive(moment: datetime | None, skew: timedelta, parameter: str) -> datetime | None:
    return None if moment is None else _shift(moment, skew, parameter)


@operation("GetRollupConfiguration", "reporting", weight=LIGHT)
def get_rollup_configuration(call: Call) -> El:
    _dummy_or_dss(call)
    server = keys.server_id()
    return el("GetRollupConfigurationResponse", el(
        "GetRollupConfigurationResult", el("DoDetailedRollup", True),
        el("RollupResetGuid", str(uuid.uuid5(uuid.UUID(server), "rollup-reset"))), el("ServerId", server),
        el("RollupDownstreamServersMaxBatchSize", SERVERS_BATCH), el("RollupComputersMaxBatchSize", COMPUTERS_BATCH),
        el("GetOutOfSyncComputersMaxBatchSize", OUT_OF_SYNC_BATCH),
        el("RollupComputerStatusMaxBatchSize", STATUS_BATCH)))


_SUMMARY_LIMIT = 64


@operation("RollupDownstreamServers", "reporting")
def rollup_downstream_servers(call: Call) -> El:
    _dummy_or_dss(call)
    skew = _skew(call)
    where = "downstreamServers.DownstreamServerRollupInfo"
    rows = []
    for info in _items(call, "downstreamServers", "DownstreamServerRollupInfo", SERVERS_BATCH):
        summary_element = child(info, "ServerSummary")
        summary: dict[str, int] = {}
        for item in list(summary_element)[:_SUMMARY_LIMIT] if summary_element is not None else ():
            name = soap.local(item.tag)[:64]
            value = (item.text or "").strip()
            if value.lstrip("-").isdigit() and len(value) < 12:
                summary[name] = int(value)
        rows.append({"server_id": _guid(text(info, "ServerId"), f"{where}.ServerId"),
                     "parent_server_id": _guid(text(info, "ParentServerId"), f"{where}.ParentServerId"),
                     "full_domain_name": (text(info, "FullDomainName") or "")[:256],
                     "version": (text(info, "Version") or "")[:64],
                     "is_replica": (text(info, "IsReplica") or "").lower() in ("true", "1"),
                     "last_sync_time": _naive(_time(text(info, "LastSyncTime"), f"{where}.LastSyncTime",
                                                    required=False), skew, f"{where}.LastSyncTime"),
                     "last_rollup_time": _naive(_time(text(info, "LastRollupTime"), f"{where}.LastRollupTime",
                                                      required=False), skew, f"{where}.LastRollupTime"),
                     "computers": summary.get("ComputerTargetCount", 0), "summary": json.dumps(summary),
                     "received_at": utcnow()})
    with write_transaction():
        for row in rows:
            (RolledUpServer.insert(**row).on_conflict(conflict_target=[RolledUpServer.server_id],
                                                      preserve=[getattr(RolledUpServer, k) for k in row
                                                                if k != "server_id"]).execute())
        # the reporting server names itself with the zero GUID as parent (§3.2.4.5), its descendants by theirs
        for reporting in {row["server_id"] if row["parent_server_id"] == events.ZERO_GUID else row["parent_server_id"]
                          for row in rows}:
            DownstreamServer.update(last_rollup_at=utcnow()).where(
                DownstreamServer.account_guid == reporting).execute()
    return el("RollupDownstreamServersResponse")


@operation("RollupComputers", "reporting")
def rollup_computers(call: Call) -> El:
    """Computers of the downstream servers; answers those this server knows under another, more
    recently synced parent (``NewParent``): the downstream stops rolling them up."""
    _dummy_or_dss(call)
    skew = _skew(call)
    where = "computers.ComputerRollupInfo"
    changed: list[El] = []
    with write_transaction():
        for info in _items(call, "computers", "ComputerRollupInfo", COMPUTERS_BATCH):
            computer_id = (info.get("ComputerId") or "").strip().lower()
            if not 1 <= len(computer_id) <= 256:
                raise invalid(f"{where}.ComputerId")
            parent = _guid(info.get("ParentServerId"), f"{where}.ParentServerId")
            last_sync = _naive(_time(info.get("LastSyncTime"), f"{where}.LastSyncTime", required=False), skew,
                               f"{where}.LastSyncTime")
            last_status = _naive(_time(info.get("LastReportedStatusTime"), f"{where}.LastReportedStatusTime",
                                       required=False), skew, f"{where}.LastReportedStatusTime")
            details = child(info, "Details")
            held = RolledUpComputer.get_or_none(RolledUpComputer.computer_id == computer_id)
            if (held is not None and held.parent_server_id != parent and held.last_sync_time and last_sync
                    and held.last_sync_time > last_sync):
                changed.append(El("ChangedComputer", attributes=(("ComputerId", computer_id), ("Change", "NewParent"))))
                continue
            row = {"computer_id": computer_id, "parent_server_id": parent,
                   "full_domain_name": ((details.get("FullDomainName") if details is not None else "") or "")[:256],
                   "ip_address": ((details.get("IPAddress") if details is not None else "") or "")[:64],
                   "os_description": ((details.get("OSDescription") if details is not None else "") or "")[:256],
                   "last_sync_time": last_sync, "last_status_time": last_status, "received_at": utcnow()}
            RolledUpComputer.insert(**row).on_conflict(
                conflict_target=[RolledUpComputer.computer_id],
                preserve=[getattr(RolledUpComputer, k) for k in row if k != "computer_id"]).execute()
    return el("RollupComputersResponse", el("RollupComputersResult", changed))


@operation("GetOutOfSyncComputers", "reporting")
def get_out_of_sync_computers(call: Call) -> El:
    """The computers whose status this server has not taken at the rollup number the downstream
    holds (unknown here, or another number): it sends their full status again."""
    _dummy_or_dss(call)
    parent = _guid(text(call.body, "parentServerId"), "parentServerId")
    asked: dict[str, int] = {}
    for item in _items(call, "lastRollupNumbers", "ComputerLastRollupNumber", OUT_OF_SYNC_BATCH):
        computer_id = (text(item, "ComputerId") or "").lower()
        if not 1 <= len(computer_id) <= 256:
            raise invalid("lastRollupNumbers.ComputerLastRollupNumber.ComputerId")
        asked[computer_id] = _int(text(item, "RollupNumber"), "lastRollupNumbers.ComputerLastRollupNumber.RollupNumber")
    held: dict[str, tuple[str, int | None]] = {}
    ids = list(asked)
    for start in range(0, len(ids), 400):
        for row in RolledUpComputer.select().where(RolledUpComputer.computer_id.in_(ids[start:start + 400])):
            held[row.computer_id] = (row.parent_server_id, row.rollup_number)
    stale = [computer_id for computer_id, number in asked.items()
             if held.get(computer_id, (parent, None))[1] != number]
    return el("GetOutOfSyncComputersResponse", el("GetOutOfSyncComputersResult", [el("string", c) for c in stale]))


@operation("RollupComputerStatus", "reporting")
def rollup_computer_status(call: Call) -> El:
    """Each computer's states into the compliance report. The computer's parent is the one
    RollupComputers named (a computer of a server further down stays that server's, not the relaying
    one's); only a computer no rollup named yet gets the relaying server."""
    _dummy_or_dss(call)
    skew = _skew(call)
    parent = _guid(text(call.body, "parentServerId"), "parentServerId")
    where = "computers.ComputerStatusRollupInfo"
    parsed = []
    for info in _items(call, "computers", "ComputerStatusRollupInfo", STATUS_BATCH):
        computer_id = (text(info, "ComputerId") or "").lower()
        if not 1 <= len(computer_id) <= 256:
            raise invalid(f"{where}.ComputerId")
        number = _int(text(info, "RollupNumber"), f"{where}.RollupNumber")
        full = (text(info, "IsFullRollup") or "").lower() in ("true", "1")
        detected = _naive(_time(text(info, "EffectiveLastDetectionTime"), f"{where}.EffectiveLastDetectionTime",
                                required=False), skew, f"{where}.EffectiveLastDetectionTime")
        states = []
        for position, status in enumerate(children(child(info, "UpdateStatus"), "ComputerStatusRollupUpdateStatus")):
            if position == MAX_UPDATE_STATUSES:
                raise invalid(f"{where}.UpdateStatus")
            state = _int(text(status, "SummarizationState"), f"{where}.UpdateStatus.SummarizationState")
            if not 0 <= state < len(STATES):
                raise invalid(f"{where}.UpdateStatus.SummarizationState")
            when = _time(text(status, "LastChangeTime"), f"{where}.UpdateStatus.LastChangeTime") or datetime.now(UTC)
            states.append((_guid(text(status, "UpdateId"), f"{where}.UpdateStatus.UpdateId"), STATES[state],
                           _shift(when, skew, f"{where}.UpdateStatus.LastChangeTime")))
        parsed.append((computer_id, number, full, detected, states))
    ids = [item[0] for item in parsed]
    names: dict[str, str] = {}
    with write_transaction():
        owner = {row.computer_id: row.parent_server_id for start in range(0, len(ids), 400)
                 for row in RolledUpComputer.select(RolledUpComputer.computer_id, RolledUpComputer.parent_server_id)
                 .where(RolledUpComputer.computer_id.in_(ids[start:start + 400]))}
        for computer_id, number, full, detected, states in parsed:
            server = owner.get(computer_id) or parent
            name = names.get(server) or names.setdefault(server, reporter(server))
            compliance.record_rollup(computer_id, [s for s in states if s[1] != events.UNKNOWN], reported_by=name,
                                     full=full, detected_at=detected)
            RolledUpComputer.insert(computer_id=computer_id, parent_server_id=parent, rollup_number=number,
                                    received_at=utcnow()).on_conflict(
                conflict_target=[RolledUpComputer.computer_id],
                preserve=[RolledUpComputer.rollup_number, RolledUpComputer.received_at]).execute()
    return el("RollupComputerStatusResponse", el("RollupComputerStatusResult", True))
