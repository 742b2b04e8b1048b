"""Recording a ``ReportEventBatch`` ([wsus] §3.9): the events in the log, their effects (the pure
table of ``events.py``) on the state per (computer, update), and the computer's status.

One transaction per batch. The computer's status row is locked first, so batches of one computer
apply one after the other; batches of different computers do not wait for each other. An event
whose ``EventInstanceID`` is already stored is ignored (and counted), also when the same id comes
twice in one batch; the unique index keeps that true when two servers' workers race.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from devupdate import db
from devupdate.wsus.compliance import events
from devupdate.wsus.compliance.models import (
    MAX_STORED_ITEMS,
    MAX_STORED_STRING,
    MAX_STRING,
    ComplianceState,
    ComputerStatus,
    ReportedEvent,
    counters_of,
)
from devupdate.wsus.targeting.models import Computer

log = logging.getLogger("devupdate.wsus.compliance")

#: the UpdateIDs that are roots (§3.5 step 1) of the reporting computer, for AGENT_STATUS_30's "every
#: other root → not applicable". The store cannot compute them (the roots follow from the scan's
#: selection, a layer above): the Reporting operation hands :func:`record_batch` a function that reads
#: them, called at most once per batch, inside its transaction, and only when the batch has a 156.
RootsOf = Callable[[], Iterable[str]]


@dataclass(frozen=True)
class Reported:
    """One ``ReportingEvent`` as the operation read it (values checked, strings bounded)."""

    event_instance_id: str  # lower-case GUID
    target: str  # TargetID/Sid as sent, lower case
    time_at_target: datetime  # aware UTC
    event_id: int
    namespace_id: int = events.NAMESPACE
    source_id: int = 0
    sequence_number: int = 0
    update_id: str | None = None  # None for the zero GUID
    revision_number: int | None = None
    win32_hresult: int = 0
    app_name: str = ""
    replacement_strings: tuple[str, ...] = ()
    misc_data: tuple[str, ...] = ()

    def as_event(self) -> events.Event:
        return events.Event(self.event_id, self.time_at_target, self.update_id, self.win32_hresult,
                            self.misc_data, self.namespace_id)


@dataclass
class BatchResult:
    taken: int = 0
    duplicates: int = 0
    dropped_other_computer: int = 0
    dropped_namespace: int = 0
    states_changed: int = 0
    changed: dict[str, str] = field(default_factory=dict)  # UpdateID → new state


def bounded(value: str | None, limit: int = MAX_STRING) -> str:
    """Stored text: at most ``limit`` characters (§7), NULs removed (PostgreSQL refuses them)."""
    return (value or "").replace("\x00", "")[:limit]


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _chunks(values: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def record_batch(client_id: str, batch: Sequence[Reported], *, reported_by: str = "",
                 roots: RootsOf | None = None) -> BatchResult:
    """Store the events of ``client_id``'s batch and apply them; another computer's events (their
    ``TargetID``) and other namespaces are dropped and counted, known ``EventInstanceID``s ignored.

    ``roots``: the computer's roots (§3.5), which an AGENT_STATUS_30 that does not list them makes
    not applicable; the updates the computer already has a state for count as well (a status report
    covers every update the client evaluated: one it no longer lists is neither needed, installed,
    failed nor downloaded)."""
    client_id = client_id.lower()
    result = BatchResult()
    mine: list[Reported] = []
    for reported in batch:
        if reported.target != client_id:
            result.dropped_other_computer += 1
        elif reported.namespace_id != events.NAMESPACE:
            result.dropped_namespace += 1
        else:
            mine.append(reported)
    now = db.utcnow()
    with db.write_transaction():
        ComputerStatus.insert(client_id=client_id, reported_by=reported_by).on_conflict_ignore().execute()
        status = db.locked(ComputerStatus.select().where(ComputerStatus.client_id == client_id)).get()
        fresh = _new_events(mine, result)
        if fresh:
            ReportedEvent.insert_many([_row(client_id, reported, now, reported_by) for reported in fresh]
                                      ).on_conflict_ignore().execute()
            _apply(client_id, fresh, status, result, now, reported_by, roots)
        status.events_taken += result.taken
        status.events_duplicate += result.duplicates
        status.events_dropped += result.dropped_other_computer + result.dropped_namespace
        status.last_report_at = now
        status.save()
        # the computer's LastStatusTime of the targeting tables (computers show)
        Computer.update(last_status_at=now).where(Computer.computer_id == client_id).execute()
    if result.dropped_other_computer:
        log.warning("ReportEventBatch of %s: %d events of other computers dropped", client_id,
                    result.dropped_other_computer)
    return result


def _new_events(mine: Sequence[Reported], result: BatchResult) -> list[Reported]:
    seen: set[str] = set()
    unique: list[Reported] = []
    for reported in mine:
        if reported.event_instance_id in seen:
            result.duplicates += 1
            continue
        seen.add(reported.event_instance_id)
        unique.append(reported)
    known: set[str] = set()
    for chunk in _chunks([reported.event_instance_id for reported in unique]):
        known.update(row[0] for row in db.tuples(ReportedEvent.select(ReportedEvent.event_instance_id).where(
            ReportedEvent.event_instance_id.in_(list(chunk)))))
    fresh = [reported for reported in unique if reported.event_instance_id not in known]
    result.duplicates += len(unique) - len(fresh)
    result.taken = len(fresh)
    return fresh


def _row(client_id: str, reported: Reported, now: datetime, reported_by: str) -> dict[str, object]:
    return {"event_instance_id": reported.event_instance_id, "client_id": client_id,
            "event_id": reported.event_id, "namespace_id": reported.namespace_id, "source_id": reported.source_id,
            "sequence_number": reported.sequence_number, "update_id": reported.update_id,
            "revision_number": reported.revision_number, "time_at_target": _naive(reported.time_at_target),
            "received_at": now, "win32_hresult": reported.win32_hresult,
            "app_name": bounded(reported.app_name, MAX_STORED_STRING),
            "replacement_strings": json.dumps([bounded(s, MAX_STORED_STRING)
                                               for s in reported.replacement_strings[:MAX_STORED_ITEMS]]),
            "misc_data": json.dumps([bounded(s, MAX_STORED_STRING) for s in reported.misc_data[:MAX_STORED_ITEMS]]),
            "reported_by": reported_by}


def _held_time(held: tuple[str, datetime], agent_status_at: datetime | None) -> datetime:
    """When a held state was last asserted: its event's time, or for not applicable the newest status
    report's (every status covers every update with a state: one not listing it re-asserted it)."""
    state, when = held
    if state == events.NOT_APPLICABLE and agent_status_at is not None and agent_status_at > when:
        return agent_status_at
    return when


def _apply(client_id: str, fresh: Sequence[Reported], status: ComputerStatus, result: BatchResult,
           now: datetime, reported_by: str, roots_of: RootsOf | None) -> None:
    current: dict[str, tuple[str, datetime]] = {
        update_id: (state, when) for update_id, state, when in db.tuples(ComplianceState.select(
            ComplianceState.update_id, ComplianceState.state, ComplianceState.time_at_target).where(
            ComplianceState.client_id == client_id))}
    before = dict(current)
    computed: set[str] | None = None  # the computer's roots, read at the batch's first 156
    changed: dict[str, dict[str, object]] = {}
    for reported in sorted(fresh, key=lambda r: r.time_at_target):  # stable: batch order on a tie
        when = _naive(reported.time_at_target)
        if status.last_status_at is None or when > status.last_status_at:
            status.last_status_at = when
        roots: set[str] = set()
        if reported.event_id == events.AGENT_STATUS_30:
            if computed is None:
                computed = set(roots_of()) if roots_of is not None else set()
            roots = computed | set(current)
        effect = events.effect(reported.as_event(), roots)
        if effect.scan_finished and (status.last_scan_at is None or when >= status.last_scan_at):
            status.last_scan_at = when
        if effect.scan_failed and (status.last_scan_error_at is None or when >= status.last_scan_error_at):
            status.last_scan_error_at, status.last_scan_error = when, effect.scan_error
        for update_id, state in effect.states.items():
            held = current.get(update_id)
            if held is not None and not events.newer(when, _held_time(held, status.agent_status_at)):
                continue
            if held is not None and held[0] == state == events.NOT_APPLICABLE and reported.event_id == \
                    events.AGENT_STATUS_30:
                continue  # re-asserted: the row counts as new as agent_status_at, no write
            current[update_id] = (state, when)
            changed[update_id] = {
                "client_id": client_id, "update_id": update_id, "state": state, "time_at_target": when,
                "event_id": reported.event_id, "event_instance_id": reported.event_instance_id,
                "revision_number": reported.revision_number if update_id == reported.update_id else None,
                "win32_hresult": effect.hresult if state == events.FAILED else None, "changed_at": now,
                "reported_by": reported_by}
        if reported.event_id == events.AGENT_STATUS_30 and (status.agent_status_at is None
                                                              or when > status.agent_status_at):
            status.agent_status_at = when
    rows = list(changed.values())
    for start in range(0, len(rows), 500):
        ComplianceState.insert_many(rows[start:start + 500]).on_conflict(
            conflict_target=[ComplianceState.client_id, ComplianceState.update_id],
            preserve=[ComplianceState.state, ComplianceState.time_at_target, ComplianceState.event_id,
                      ComplianceState.event_instance_id, ComplianceState.revision_number,
                      ComplianceState.win32_hresult, ComplianceState.changed_at, ComplianceState.reported_by],
        ).execute()
    for update_id in changed:  # the counters follow every change (the computer's row is locked)
        old = before.get(update_id)
        for column in counters_of(old[0]) if old is not None else ():
            setattr(status, column, getattr(status, column) - 1)
        for column in counters_of(current[update_id][0]):
            setattr(status, column, getattr(status, column) + 1)
    result.states_changed = len(changed)
    result.changed = {update_id: current[update_id][0] for update_id in changed}


#: events deleted per statement by :func:`prune_events` (each a short transaction)
PRUNE_CHUNK = 5000


def prune_events(retention_days: int, *, now: datetime | None = None) -> int:
    """Delete the reported events received more than ``retention_days`` ago, ``PRUNE_CHUNK`` per
    transaction; the compliance state they set stays. A batch resent after that is applied again,
    but changes no state an event as new already set. Returns how many were deleted."""
    cutoff = (_naive(now) if now else db.utcnow()) - timedelta(days=retention_days)
    deleted = 0
    while True:
        with db.database.atomic():
            ids = [row[0] for row in db.tuples(ReportedEvent.select(ReportedEvent.id).where(
                ReportedEvent.received_at < cutoff).order_by(ReportedEvent.id).limit(PRUNE_CHUNK))]
            if ids:
                ReportedEvent.delete().where(ReportedEvent.id.in_(ids)).execute()
        deleted += len(ids)
        if len(ids) < PRUNE_CHUNK:
            return deleted


#: the event log is pruned hourly, in one process of the installation at a time (every worker starts
#: the job; the one holding the installation's lock runs it, :class:`devupdate.jobs.InstallationJob`)
PRUNE_EVERY = 3600.0


def start_prune_job(settings: Any) -> Any:
    """The hourly :func:`prune_events` as a started :class:`devupdate.jobs.InstallationJob` (``stop()``);
    ``<home>/wsus-event-prune.lock`` records its last run."""
    from devupdate.jobs import InstallationJob

    days = int(getattr(settings, "wsus_event_retention_days", 30))

    def run() -> dict[str, int]:
        removed = prune_events(days)
        if removed:
            log.info("reported events: %d older than %d days deleted", removed, days)
        return {"Deleted": removed, "RetentionDays": days}

    return InstallationJob("wsus-event-prune", run, PRUNE_EVERY, settings.home, first_delay=60.0, logger=log).start()


def record_rollup(client_id: str, states: Sequence[tuple[str, str, datetime]], *, reported_by: str,
                  full: bool, detected_at: datetime | None = None) -> int:
    """The states a downstream server rolled up for one of its computers ([wsus] §5.1
    ``RollupComputerStatus``): (UpdateID, state, LastChangeTime) each replacing a state changed no
    later (a rollup arriving late never undoes a newer one), the counters kept, the computer and its
    states marked ``reported_by``. ``full``: the list is the computer's whole status, so states it no
    longer names are dropped. A computer that reports to this server itself (``reported_by`` empty) is
    left as its own reports made it: those are first-hand. Returns the states changed."""
    client_id = client_id.lower()[:256]
    now = db.utcnow()
    with db.write_transaction():
        ComputerStatus.insert(client_id=client_id, reported_by=reported_by).on_conflict_ignore().execute()
        status = db.locked(ComputerStatus.select().where(ComputerStatus.client_id == client_id)).get()
        if not status.reported_by:
            return 0
        current: dict[str, tuple[str, datetime]] = {
            update_id: (state, when) for update_id, state, when in db.tuples(ComplianceState.select(
                ComplianceState.update_id, ComplianceState.state, ComplianceState.time_at_target).where(
                ComplianceState.client_id == client_id))}
        before = dict(current)
        changed: dict[str, dict[str, object]] = {}
        for update_id, state, moment in states:
            when = _naive(moment)
            held = current.get(update_id)
            if held is not None and (held[0] == state or (held[1] is not None and when < held[1])):
                continue
            current[update_id] = (state, when)
            changed[update_id] = {
                "client_id": client_id, "update_id": update_id, "state": state, "time_at_target": when,
                "event_id": 0, "event_instance_id": "", "revision_number": None, "win32_hresult": None,
                "changed_at": now, "reported_by": reported_by}
        dropped = sorted(set(current) - {update_id for update_id, _, _ in states}) if full else []
        rows = list(changed.values())
        for start in range(0, len(rows), 500):
            ComplianceState.insert_many(rows[start:start + 500]).on_conflict(
                conflict_target=[ComplianceState.client_id, ComplianceState.update_id],
                preserve=[ComplianceState.state, ComplianceState.time_at_target, ComplianceState.event_id,
                          ComplianceState.event_instance_id, ComplianceState.revision_number,
                          ComplianceState.win32_hresult, ComplianceState.changed_at, ComplianceState.reported_by],
            ).execute()
        for part in _chunks(dropped):
            ComplianceState.delete().where((ComplianceState.client_id == client_id)
                                           & ComplianceState.update_id.in_(list(part))).execute()
        for update_id in [*changed, *dropped]:
            old = before.get(update_id)
            for column in counters_of(old[0]) if old is not None else ():
                setattr(status, column, getattr(status, column) - 1)
            if update_id in changed:
                for column in counters_of(current[update_id][0]):
                    setattr(status, column, getattr(status, column) + 1)
        status.reported_by = reported_by
        status.last_report_at = now
        if detected_at is not None:
            status.last_scan_at = _naive(detected_at)
        status.save()
    return len(changed) + len(dropped)
