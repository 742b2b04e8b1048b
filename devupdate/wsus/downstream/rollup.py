"""Hierarchy reporting as a downstream server ([MS-WSUSSS] §3.2.4.5, spec/wsus.md §5.1, §5.3 step 7):
what this server's computers reported, and what the servers below it rolled up here, sent on to the
upstream so its compliance report shows them, marked with this server.

It is a phase of every sync run, after the metadata and deployment phases and before the content
(§3.2.4.5 lets it run before or beside the content step), as Windows' DSS does after each
synchronization. Sequence: ``GetRollupConfiguration`` (taken from the ServerId check at the start of
the run) → ``RollupDownstreamServers`` (this server with the zero GUID as parent, then the servers
below, parents before children) → ``RollupComputers`` (when ``DoDetailedRollup``) →
``GetOutOfSyncComputers`` → ``RollupComputerStatus`` for the computers the upstream names, each with
its whole status (``IsFullRollup``), all in the upstream's batch sizes.

Only the computers changed since the last rollup the upstream accepted go into ``RollupComputers``
(as WSUS's DSS does): a high-water mark per upstream — the newest change time of what it took —
moves in the transaction after each accepted batch (batches in change order, of the upstream's
size), so a failed batch is sent again and a second run without news sends none. Writes take their
time a moment before they commit, so a run looks ``OVERLAP`` behind the mark again and skips only
what it already sent at that very change time (the edge). Another upstream ServerId or
``RollupResetGuid`` starts from nothing. The computers an upstream answered ``NewParent`` for are
kept (``RolledAway``) so their status is not sent there until a later rollup of them is taken.

A computer's ``RollupNumber`` is derived from its compliance rows (how many, the newest change, the
counters), so it changes exactly when its status does: ``GetOutOfSyncComputers`` with every
computer's number lets the upstream name those whose status it lacks, and only those are sent. A
rollup that fails is logged and reported in the run's summary; it never undoes the catalog the run
brought.
"""

from __future__ import annotations

import json
import logging
import uuid
import zlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from peewee import fn

from devupdate.db import tuples, write_transaction
from devupdate.wsus.catalog.models import Update
from devupdate.wsus.compliance import events
from devupdate.wsus.compliance.models import ComplianceState, ComputerStatus
from devupdate.wsus.downstream import messages
from devupdate.wsus.downstream.messages import RolledComputer, RolledServer
from devupdate.wsus.downstream.models import RolledAway
from devupdate.wsus.targeting.models import Computer, TargetGroup
from devupdate.wsus.upstream.models import RolledUpComputer, RolledUpServer

if TYPE_CHECKING:
    from devupdate.wsus.downstream.run import Run

log = logging.getLogger("devupdate.wsus.downstream")

ZERO_GUID = messages.ZERO_GUID
#: SummarizationState of each compliance state (§5.1: 0 unknown … 6 installed pending reboot)
STATE_NUMBER = {events.UNKNOWN: 0, events.NOT_APPLICABLE: 1, events.NEEDED: 2, events.DOWNLOADED: 3,
                events.INSTALLED: 4, events.FAILED: 5, events.PENDING_REBOOT: 6}
MAX_STATES = 20000  # UpdateStatus items of one computer the upstream takes (§7)
BUSY_WAIT = 60.0  # RollupComputerStatus answered false: wait at least a minute (§3.2.4.5)
BUSY_TRIES = 3
_IN = 500
#: a write commits a moment after it takes its time (and nodes' clocks differ a little): a rollup
#: looks this far behind its mark again, skipping what it sent at the very change time (the edge)
OVERLAP = timedelta(seconds=60)
T = TypeVar("T")


def _chunks(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def _ids(query: Any) -> set[str]:
    return {row[0] for row in tuples(query)}


def _server_summary() -> dict[str, int]:
    """The counts of DownstreamServerRollupServerSummary devupdate knows cheaply; the others are 0."""
    def own(*where: Any) -> set[str]:
        return _ids(ComputerStatus.select(ComputerStatus.client_id).where(ComputerStatus.reported_by == "", *where))

    needing, failing = own(ComputerStatus.needed > 0), own(ComputerStatus.failed > 0)
    computers = len(own_computers())
    return {"UpdateCount": Update.select().count(),
            "DeclinedUpdateCount": Update.select().where(Update.declined == True).count(),  # noqa: E712 - SQL
            "CustomComputerTargetGroupCount": TargetGroup.select().where(TargetGroup.builtin == False).count(),  # noqa: E712
            "ComputerTargetCount": computers, "ComputerTargetsNeedingUpdatesCount": len(needing),
            "ComputerTargetsWithUpdateErrorsCount": len(failing),
            "ComputersUpToDateCount": max(0, computers - len(needing | failing))}


def own_computers() -> list[str]:
    """This server's own clients (lower-case ids): those that got a cookie here or reported here."""
    known = {row[0].lower() for row in tuples(Computer.select(Computer.computer_id))}
    known |= _ids(ComputerStatus.select(ComputerStatus.client_id).where(ComputerStatus.reported_by == ""))
    rolled = _ids(RolledUpComputer.select(RolledUpComputer.computer_id))
    return sorted(known - rolled)


def servers(me: RolledServer) -> list[RolledServer]:
    """This server, then the servers rolled up here, parents before children."""
    rows = list(RolledUpServer.select())
    below: dict[str, list[RolledUpServer]] = {}
    for row in rows:
        parent = me.server_id if row.parent_server_id in (ZERO_GUID, me.server_id) else row.parent_server_id
        below.setdefault(parent, []).append(row)
    out, todo, seen = [me], [me.server_id], {me.server_id}
    while todo:
        for row in sorted(below.get(todo.pop(0), []), key=lambda r: r.server_id):
            if row.server_id in seen:
                continue
            seen.add(row.server_id)
            todo.append(row.server_id)
            parent = me.server_id if row.parent_server_id == ZERO_GUID else row.parent_server_id
            out.append(RolledServer(row.server_id, row.full_domain_name, _aware(row.last_sync_time), parent,
                                    row.version, bool(row.is_replica), _aware(row.last_rollup_time),
                                    {"ComputerTargetCount": row.computers}))
    return out


def _moment(value: Any) -> datetime | None:
    """A stored naive-UTC time (a string from some drivers)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def changes(own: set[str], since: datetime | None) -> dict[str, datetime]:
    """computer id → the newest change of what ``ComputerRollupInfo`` carries (a sync, a registration,
    a status report here; a rollup from below), for those changed after ``since`` (all when None)."""
    out: dict[str, datetime] = {}

    def note(computer: str, *moments: Any) -> None:
        for moment in map(_moment, moments):
            if moment is not None and (since is None or moment > since) and (
                    computer not in out or moment > out[computer]):
                out[computer] = moment

    mine = Computer.select(Computer.computer_id, Computer.created_at, Computer.registered_at, Computer.last_sync_at)
    reported = ComputerStatus.select(ComputerStatus.client_id, ComputerStatus.last_report_at).where(
        ComputerStatus.reported_by == "")
    rolled = RolledUpComputer.select(RolledUpComputer.computer_id, RolledUpComputer.received_at)
    if since is not None:
        mine = mine.where((Computer.created_at > since) | (Computer.registered_at > since)
                          | (Computer.last_sync_at > since))
        reported = reported.where(ComputerStatus.last_report_at > since)
        rolled = rolled.where(RolledUpComputer.received_at > since)
    for computer_id, *moments in tuples(mine):
        if computer_id.lower() in own:
            note(computer_id.lower(), *moments)
    for client, moment in tuples(reported):
        if client in own:
            note(client, moment)
    for computer_id, moment in tuples(rolled):
        note(computer_id, moment)
    return out


def describe(me: str, own: Sequence[str], rolled: Sequence[str]) -> list[RolledComputer]:
    """These computers as ``RollupComputers`` carries them: this server's own clients (parent: this
    server) and those rolled up here (parent: the server that has them)."""
    own = sorted(own)
    targeting = {c.computer_id.lower(): c for part in _chunks(own, _IN)
                 for c in Computer.select().where(fn.LOWER(Computer.computer_id).in_(list(part)))}
    status = {row.client_id: row for part in _chunks(own, _IN)
              for row in ComputerStatus.select().where(ComputerStatus.client_id.in_(list(part)))}
    out = []
    for client in own:
        computer, state = targeting.get(client), status.get(client)
        os = (computer.os_major or 0, computer.os_minor or 0, computer.os_build or 0, computer.os_sp_major or 0,
              computer.os_sp_minor or 0) if computer is not None else (0, 0, 0, 0, 0)
        out.append(RolledComputer(
            client, me, _aware(computer.last_sync_at) if computer is not None else None,
            _aware(state.last_report_at) if state is not None else None,
            full_domain_name=(computer.dns_name or "") if computer is not None else "",
            os_description=(computer.os_description or "") if computer is not None else "", os=os))
    for part in _chunks(sorted(rolled), _IN):
        for row in RolledUpComputer.select().where(RolledUpComputer.computer_id.in_(list(part))):
            out.append(RolledComputer(row.computer_id, row.parent_server_id, _aware(row.last_sync_time),
                                      _aware(row.last_status_time), full_domain_name=row.full_domain_name,
                                      ip_address=row.ip_address, os_description=row.os_description))
    return out


def rollup_numbers(clients: Sequence[str]) -> dict[str, int]:
    """client id → a number that changes when its status does (rows, newest change, counters)."""
    out: dict[str, int] = {}
    for part in _chunks(list(clients), _IN):
        shape = {client: f"{count}|{newest}" for client, count, newest in tuples(
            ComplianceState.select(ComplianceState.client_id, fn.COUNT(ComplianceState.id),
                                   fn.MAX(ComplianceState.changed_at))
            .where(ComplianceState.client_id.in_(list(part))).group_by(ComplianceState.client_id))}
        counters = {row[0]: "|".join(str(v) for v in row[1:]) for row in tuples(ComputerStatus.select(
            ComputerStatus.client_id, ComputerStatus.needed, ComputerStatus.installed, ComputerStatus.failed,
            ComputerStatus.not_applicable, ComputerStatus.pending_reboot, ComputerStatus.last_scan_at).where(
            ComputerStatus.client_id.in_(list(part))))}
        for client in part:
            key = f"{shape.get(client, '0|')}|{counters.get(client, '')}".encode()
            out[client] = zlib.crc32(key) & 0x7FFFFFFF
    return out


def statuses(clients: Sequence[str], numbers: dict[str, int]) -> list[messages.ComputerStatus]:
    """The whole status of each of ``clients``, as RollupComputerStatus carries it."""
    states: dict[str, list[tuple[str, int, datetime]]] = {client: [] for client in clients}
    detected: dict[str, datetime | None] = {}
    for part in _chunks(list(clients), _IN):
        for client, update_id, state, when in tuples(ComplianceState.select(
                ComplianceState.client_id, ComplianceState.update_id, ComplianceState.state,
                ComplianceState.time_at_target).where(ComplianceState.client_id.in_(list(part)))
                .order_by(ComplianceState.client_id, ComplianceState.update_id)):
            held = states[client]
            if len(held) < MAX_STATES and state in STATE_NUMBER:
                held.append((update_id, STATE_NUMBER[state], when.replace(tzinfo=UTC)))
        for client, scanned in tuples(ComputerStatus.select(ComputerStatus.client_id, ComputerStatus.last_scan_at)
                                      .where(ComputerStatus.client_id.in_(list(part)))):
            detected[client] = _aware(scanned)
    return [messages.ComputerStatus(client, numbers[client], detected.get(client), states[client], str(uuid.uuid4()))
            for client in clients]


def _reporting(run: Run, operation: str, body: bytes) -> Any:
    return run.call(operation, body, path=messages.REPORTING.paths[0], namespace=messages.REPORTING.namespace)


def _mark(run: Run, config: messages.RollupConfig) -> tuple[datetime | None, set[tuple[str, str]]]:
    """The stored high-water mark and its edge; another upstream identity or ``RollupResetGuid`` (the
    upstream dropped what it was sent) starts again from nothing."""
    state = run.state()
    reset = f"{config.server_id or ''}/{config.reset_guid or ''}"
    if state.rollup_reset != reset:
        with write_transaction():
            run.save_state(rollup_mark=None, rollup_edge="[]", rollup_reset=reset)
            RolledAway.delete().where(RolledAway.upstream == run.options.upstream).execute()
        return None, set()
    try:
        edge = {(str(computer), str(moment)) for computer, moment in json.loads(state.rollup_edge or "[]")}
    except (ValueError, TypeError):
        edge = set()
    return _moment(state.rollup_mark), edge


def _advance(run: Run, sent: Sequence[tuple[datetime, str]], edge: set[tuple[str, str]],
             changed: dict[str, str]) -> set[tuple[str, str]]:
    """After the upstream took a batch (sent in change order): the mark moves to its newest change,
    the edge keeps what was sent within the overlap before it, and the computers the upstream took
    away (or gave back) are noted. One transaction: a failed batch moves nothing."""
    mark = sent[-1][0]
    edge = {(computer, moment) for computer, moment in edge | {(c, m.isoformat()) for m, c in sent}
            if datetime.fromisoformat(moment) > mark - OVERLAP}
    with write_transaction():
        run.save_state(rollup_mark=mark, rollup_edge=json.dumps(sorted(edge)))
        ids = [computer for _m, computer in sent]
        for part in _chunks(ids, _IN):
            RolledAway.delete().where(RolledAway.upstream == run.options.upstream,
                                      RolledAway.computer_id.in_(list(part))).execute()
        rows = [{"upstream": run.options.upstream, "computer_id": computer} for computer in sorted(changed)]
        for rows_part in _chunks(rows, _IN):
            RolledAway.insert_many(list(rows_part)).on_conflict_ignore().execute()
    return edge


def roll_up(run: Run, config: messages.RollupConfig, *, me: str, name: str, version: str) -> dict[str, Any]:
    """The rollup phase; returns what it sent (for the run's summary)."""
    now = datetime.now(UTC)
    summary = _server_summary()
    listed = servers(RolledServer(me, name, now, ZERO_GUID, version, run.options.mode == "replica", now, summary))
    for servers_part in _chunks(listed, config.servers_batch):
        _reporting(run, "RollupDownstreamServers", messages.rollup_downstream_servers(now, servers_part))
    done: dict[str, Any] = {"Servers": len(listed), "Computers": 0, "StatusesSent": 0, "NewParent": 0}
    if not config.detailed:
        return done
    own = set(own_computers())
    mark, edge = _mark(run, config)
    since = None if mark is None else mark - OVERLAP
    due = sorted((moment, computer) for computer, moment in changes(own, since).items()
                 if (computer, moment.isoformat()) not in edge)
    for batch in _chunks(due, config.computers_batch):
        ids = [computer for _m, computer in batch]
        described = describe(me, [c for c in ids if c in own], [c for c in ids if c not in own])
        changed = messages.changed_computers(_reporting(run, "RollupComputers",
                                                        messages.rollup_computers(now, described)))
        edge = _advance(run, batch, edge, changed)
        done["Computers"] += len(batch)
        done["NewParent"] += len(changed)
    # the upstream knows these under another server now: their status is not this server's to send
    away = {row[0] for row in tuples(RolledAway.select(RolledAway.computer_id)
                                     .where(RolledAway.upstream == run.options.upstream))}
    everyone = own | _ids(RolledUpComputer.select(RolledUpComputer.computer_id))
    clients = sorted(everyone - away)
    numbers = rollup_numbers(clients)
    stale: list[str] = []
    for out_of_sync_part in _chunks(clients, config.out_of_sync_batch):
        stale += messages.out_of_sync(_reporting(run, "GetOutOfSyncComputers", messages.get_out_of_sync_computers(
            me, [(client, numbers[client]) for client in out_of_sync_part])))
    wanted = [client for client in dict.fromkeys(stale) if client in numbers]
    for status_part in _chunks(wanted, config.status_batch):
        _send_status(run, me, status_part, numbers)
        done["StatusesSent"] += len(status_part)
    return done


def _send_status(run: Run, me: str, batch: Iterable[str], numbers: dict[str, int]) -> None:
    body = messages.rollup_computer_status(datetime.now(UTC), me, statuses(list(batch), numbers))
    for attempt in range(1, BUSY_TRIES + 1):
        if messages.accepted(_reporting(run, "RollupComputerStatus", body)):
            return
        if attempt == BUSY_TRIES:
            raise RuntimeError(f"RollupComputerStatus: the upstream was busy {BUSY_TRIES} times")
        log.info("sync from %s: RollupComputerStatus answered busy; again in %.0f s", run.options.upstream, BUSY_WAIT)
        run.upstream.sleep(BUSY_WAIT)
