"""The compliance reports ([wsus] §1d W9): per computer, per update and per target group. One
implementation for ``devupdate wsus report``, the JSON API and the console.

The seven states fall into the report's columns: ``Needed`` = needed + downloaded (not installed
yet), ``Installed`` = installed + installed-pending-reboot (``PendingReboot`` also on its own),
``Failed``, ``NotApplicable``; per update, ``Unknown`` = the known computers without a state for it.
A computer is known once it got a cookie (the targeting tables) or reported events. Groups follow
the targeting mode: a computer belongs to its assigned groups (none: ``Unassigned Computers``) and
all their ancestors; a group's figures are the sums over the computers that belong to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from peewee import fn

from devupdate.db import iso_utc, tuples
from devupdate.errors import NotFound
from devupdate.wsus.catalog.models import Update
from devupdate.wsus.compliance import events
from devupdate.wsus.compliance.models import ComplianceState, ComputerStatus, ReportedEvent
from devupdate.wsus.targeting import precedence
from devupdate.wsus.targeting import service as targeting
from devupdate.wsus.targeting.models import UNASSIGNED_ID, Computer, ComputerGroup, TargetGroup

COLUMNS = ("Needed", "Installed", "Failed", "NotApplicable")
COLUMN_OF = {events.NEEDED: "Needed", events.DOWNLOADED: "Needed", events.INSTALLED: "Installed",
             events.PENDING_REBOOT: "Installed", events.FAILED: "Failed", events.NOT_APPLICABLE: "NotApplicable"}
MAX_PAGE = 5000
_IN_CHUNK = 500


def _zero() -> dict[str, int]:
    return dict.fromkeys(COLUMNS, 0)


def _add(counts: dict[str, int], state: str, count: int) -> None:
    column = COLUMN_OF.get(state)
    if column is not None:
        counts[column] += count
    if state == events.PENDING_REBOOT:
        counts["PendingReboot"] = counts.get("PendingReboot", 0) + count


def hresult(value: int | None) -> str | None:
    """A Win32HResult as Windows shows it: ``0x80240438``."""
    return None if value is None else f"0x{value & 0xFFFFFFFF:08X}"


def _chunks(values: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield list(values[start:start + _IN_CHUNK])


def _computers() -> dict[str, Computer | None]:
    """Every known computer: client id (lower case) → its targeting row (None: only reported events)."""
    known: dict[str, Computer | None] = {
        row[0]: None for row in tuples(ComputerStatus.select(ComputerStatus.client_id))}
    for computer in Computer.select():
        known[computer.computer_id.lower()] = computer
    return known


def _membership(known: Mapping[str, Computer | None]) -> dict[str, set[str]]:
    """client id → the groups it belongs to (assigned ones and their ancestors)."""
    parents = {gid: parent for gid, parent in tuples(TargetGroup.select(TargetGroup.id, TargetGroup.parent))}
    assigned: dict[int, list[str]] = {}
    for computer_pk, group_id in tuples(ComputerGroup.select(ComputerGroup.computer, ComputerGroup.group).where(
            ComputerGroup.source == targeting.targeting_mode())):
        assigned.setdefault(computer_pk, []).append(group_id)
    return {client: set(precedence.group_distances(
        assigned.get(computer.id, [UNASSIGNED_ID]) if computer is not None else [UNASSIGNED_ID], parents))
        for client, computer in known.items()}


def _counts_by_client(clients: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """client id → its counts, from the counters each batch keeps on the computer's status row."""
    columns = (ComputerStatus.client_id, ComputerStatus.needed, ComputerStatus.installed,
               ComputerStatus.failed, ComputerStatus.not_applicable, ComputerStatus.pending_reboot)
    query = ComputerStatus.select(*columns)
    parts: Iterable[list[str] | None] = _chunks(clients) if clients is not None else [None]
    out: dict[str, dict[str, int]] = {}
    for part in parts:
        page = query.where(ComputerStatus.client_id.in_(part)) if part is not None else query
        for client, needed, installed, failed, not_applicable, pending in tuples(page):
            out[client] = {"Needed": needed, "Installed": installed, "Failed": failed,
                           "NotApplicable": not_applicable, "PendingReboot": pending}
    return out


def computers(*, group: str | None = None, limit: int = 500, offset: int = 0,
              after: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per computer (by DNS name, then ComputerId): its counts, last sync (SyncUpdates), last
    status (the last report), last scan and scan error, and the events dropped from its batches.
    ``after``: only rows past this (lower-case DNS name, ComputerId) — the API's keyset."""
    known = _computers()
    if group is not None:
        target = targeting.resolve_group(group).id
        member = _membership(known)
        known = {client: row for client, row in known.items() if target in member[client]}

    def key(client: str) -> tuple[str, str]:
        computer = known[client]
        return ((computer.dns_name or "").lower() if computer is not None else "", client)

    order = sorted(known, key=key)
    if after is not None:
        order = [client for client in order if key(client) > after]
    page = order[max(0, offset):max(0, offset) + max(1, min(limit, MAX_PAGE))]
    counts = _counts_by_client(page)
    status = {row.client_id: row for part in _chunks(page)
              for row in ComputerStatus.select().where(ComputerStatus.client_id.in_(part))}
    return [_row(client, known[client], status.get(client), counts.get(client, _zero())) for client in page]


def _row(client: str, computer: Computer | None, state: ComputerStatus | None,
         figures: Mapping[str, int]) -> dict[str, Any]:
    """A computer's report row: its counts, last sync, status and scan."""
    return {
        "ComputerId": client, "TargetId": computer.id if computer is not None else None,
        "DnsName": computer.dns_name if computer is not None else None,
        **{column: figures[column] for column in COLUMNS}, "PendingReboot": figures.get("PendingReboot", 0),
        "LastSyncTime": iso_utc(computer.last_sync_at) if computer is not None else None,
        "LastStatusTime": iso_utc(state.last_report_at) if state is not None else None,
        "LastScanTime": iso_utc(state.last_scan_at) if state is not None else None,
        "LastScanError": hresult(state.last_scan_error) if state is not None else None,
        "LastScanErrorTime": iso_utc(state.last_scan_error_at) if state is not None else None,
        "EventsDropped": state.events_dropped if state is not None else 0,
        # the downstream server that rolled this computer up (§5.1); None for this server's own clients
        "ReportedBy": (state.reported_by or None) if state is not None else None,
    }


def _known_computer(ref: str) -> tuple[str, Computer | None]:
    """A computer by TargetID, ComputerID or DNS name (as ``devupdate wsus computers show``), or by the
    client id of one that only reported events (a downstream server's, §5.1)."""
    try:
        computer = targeting.resolve_computer(ref)
    except NotFound:
        client = ref.strip().lower()
        if ComputerStatus.get_or_none(ComputerStatus.client_id == client) is None:
            raise
        return client, None
    return computer.computer_id.lower(), computer


#: the order of a computer's updates: what needs attention first
_STATE_ORDER = {events.FAILED: 0, events.NEEDED: 1, events.DOWNLOADED: 2, events.PENDING_REBOOT: 3,
                events.INSTALLED: 4, events.NOT_APPLICABLE: 5}


def computer(ref: str, *, limit: int = 500) -> dict[str, Any]:
    """One computer's report row and its state per update, each with the event that set it (the
    EventID, its instance, TimeAtTarget and HRESULT, the app that reported it and when it arrived):
    failed first, then needed, downloaded, pending reboot, installed, not applicable; then by title."""
    client, found = _known_computer(ref)
    status = ComputerStatus.get_or_none(ComputerStatus.client_id == client)
    row = _row(client, found, status, _counts_by_client([client]).get(client, _zero()))
    states = list(ComplianceState.select().where(ComplianceState.client_id == client))
    update_ids = sorted({state.update_id for state in states})
    instances = sorted({state.event_instance_id for state in states})
    titles = {update_id: (title, kb) for part in _chunks(update_ids) for update_id, title, kb in tuples(
        Update.select(Update.update_id, Update.title, Update.kb_article).where(Update.update_id.in_(part)))}
    reported = {instance: (app, received) for part in _chunks(instances) for instance, app, received in tuples(
        ReportedEvent.select(ReportedEvent.event_instance_id, ReportedEvent.app_name, ReportedEvent.received_at)
        .where(ReportedEvent.event_instance_id.in_(part)))}

    def key(state: ComplianceState) -> tuple[int, str, str]:
        return (_STATE_ORDER.get(state.state, 9), (titles.get(state.update_id, (None,))[0] or "").casefold(),
                state.update_id)

    out = []
    for state in sorted(states, key=key)[:max(1, min(limit, MAX_PAGE))]:
        title, kb = titles.get(state.update_id, (None, None))
        app, received = reported.get(state.event_instance_id, (None, None))
        out.append({"UpdateID": state.update_id, "Title": title, "KB": kb, "State": state.state,
                    "RevisionNumber": state.revision_number, "HResult": hresult(state.win32_hresult),
                    "Event": {"EventID": state.event_id, "Name": events.EVENT_NAMES.get(state.event_id),
                              "EventInstanceID": state.event_instance_id,
                              "TimeAtTarget": iso_utc(state.time_at_target), "AppName": app,
                              "ReceivedTime": iso_utc(received) if received is not None else None},
                    "ChangedTime": iso_utc(state.changed_at)})
    return {**row, "Updates": out, "UpdatesTotal": len(states)}


def updates(*, group: str | None = None, limit: int = 500, offset: int = 0,
            after: tuple[int, int, str] | None = None) -> list[dict[str, Any]]:
    """One row per update some computer has a state for: the computers needing it, having it installed,
    failing, not applicable and unknown; the most failures first, then the most needed, then UpdateID.
    ``after``: only rows past this (-Failed, -Needed, UpdateID) — the API's keyset."""
    known = _computers()
    query = ComplianceState.select(ComplianceState.update_id, ComplianceState.state, fn.COUNT(ComplianceState.id))
    if group is not None:
        target = targeting.resolve_group(group).id
        member = _membership(known)
        known = {client: row for client, row in known.items() if target in member[client]}
        members = sorted(known)
        rows: list[tuple[str, str, int]] = []
        for part in _chunks(members):
            rows.extend(tuples(query.where(ComplianceState.client_id.in_(part))
                               .group_by(ComplianceState.update_id, ComplianceState.state)))
    else:
        rows = list(tuples(query.group_by(ComplianceState.update_id, ComplianceState.state)))
    per_update: dict[str, dict[str, int]] = {}
    for update_id, state, count in rows:
        _add(per_update.setdefault(update_id, _zero()), state, count)
    def key(update_id: str) -> tuple[int, int, str]:
        return (-per_update[update_id]["Failed"], -per_update[update_id]["Needed"], update_id)

    order = sorted(per_update, key=key)
    if after is not None:
        order = [update_id for update_id in order if key(update_id) > after]
    page = order[max(0, offset):max(0, offset) + max(1, min(limit, MAX_PAGE))]
    titles = {update_id: (title, kb) for part in _chunks(page) for update_id, title, kb in tuples(
        Update.select(Update.update_id, Update.title, Update.kb_article).where(Update.update_id.in_(part)))}
    total = len(known)
    out = []
    for update_id in page:
        figures = per_update[update_id]
        title, kb = titles.get(update_id, (None, None))
        stated = sum(figures[column] for column in COLUMNS)
        out.append({"UpdateID": update_id, "Title": title, "KB": kb,
                    **{column: figures[column] for column in COLUMNS},
                    "Unknown": max(0, total - stated), "PendingReboot": figures.get("PendingReboot", 0)})
    return out


def groups() -> list[dict[str, Any]]:
    """Every target group in tree order: the computers that belong to it, the sums of their counts,
    and how many of them need an update or failed one."""
    known = _computers()
    member = _membership(known)
    counts = _counts_by_client()
    sums: dict[str, dict[str, int]] = {}
    for client, groups_of in member.items():  # one pass over the computers, not one per group
        figures = counts.get(client)
        for group_id in groups_of:
            total = sums.setdefault(group_id, {**_zero(), "Computers": 0, "ComputersNeeding": 0,
                                               "ComputersFailed": 0})
            total["Computers"] += 1
            if figures is None:
                continue
            for column in COLUMNS:
                total[column] += figures[column]
            total["ComputersNeeding"] += 1 if figures["Needed"] else 0
            total["ComputersFailed"] += 1 if figures["Failed"] else 0
    out = []
    for group in targeting.list_groups():
        total = sums.get(group["Id"], {**_zero(), "Computers": 0, "ComputersNeeding": 0, "ComputersFailed": 0})
        out.append({"Id": group["Id"], "Name": group["Name"], "Path": group["Path"], "Depth": group["Depth"],
                    "Computers": total["Computers"], **{column: total[column] for column in COLUMNS},
                    "ComputersNeeding": total["ComputersNeeding"], "ComputersFailed": total["ComputersFailed"]})
    return out
