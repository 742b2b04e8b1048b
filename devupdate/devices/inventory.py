"""The device inventory: every device that checked for updates, as last seen.

The update check only puts the parsed request in an in-memory dict (one entry per device, the
latest wins); a background job writes the dict in batches with one upsert per batch every
``flush_seconds``, and once more at shutdown. The request path never touches the database.
``first_seen`` is set by the first insert and never changed; an older observation (another
worker's slower flush) never overwrites a newer one.

The same batch keeps the hourly activity series (``devices.activity``): each batch reads the
versions its devices had before (one indexed query), tallies checks, downloads and version
changes per rule, and writes them with the devices in one transaction, so a batch counts once.

A device API status report ``installed`` is an observation too (:meth:`InventoryRecorder.installed`):
the inventory then shows the reported version for that rule's module, as a check reporting it would.
It goes into the same batch: merged into a check pending for the device, else written by the same
upsert after one locked read of the stored versions per batch (``checks`` is not counted: it was not
a check). A later check replaces it, as the device's own word.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import peewee
from prometheus_client.core import GaugeMetricFamily

from devupdate import db, metrics
from devupdate.db import BaseModel, utcnow
from devupdate.devices import activity, groups
from devupdate.jobs import PeriodicJob, Retry
from devupdate.selection import DeviceRequest, Module, RuleEntry, Snapshot, family, installed_version

_json_string = json.encoder.encode_basestring_ascii  # what json.dumps uses for str

log = logging.getLogger("devupdate.inventory")


class Device(BaseModel):
    """One device as last seen. ``device_id`` is the normalized MAC, else ``SN-<SERIAL>``.

    Written far more often than read (every check of every device), so the only index is the
    unique ``device_id`` the upsert needs: each further index roughly doubled the write cost."""

    id = peewee.AutoField()
    device_id = peewee.CharField(max_length=80, unique=True)
    mac = peewee.CharField(max_length=12, default="")
    serial = peewee.CharField(max_length=64, default="")
    device_type = peewee.CharField(max_length=100)
    brand = peewee.CharField(max_length=100)
    model = peewee.CharField(max_length=100)
    revision = peewee.CharField(max_length=100, default="")
    locale = peewee.CharField(max_length=10)
    versions = peewee.TextField(default="{}")  # JSON {FileName: Version}
    user_id = peewee.CharField(max_length=256, default="")
    address = peewee.CharField(max_length=64, default="")
    network = peewee.CharField(max_length=10)  # internal | external
    first_seen = peewee.DateTimeField(default=utcnow)
    last_seen = peewee.DateTimeField(default=utcnow)
    checks = peewee.BigIntegerField(default=1)


def _metrics() -> list[GaugeMetricFamily]:
    now = utcnow()
    known = GaugeMetricFamily("devupdate_devices_known", "Devices in the inventory")
    known.add_metric([], Device.select().count())
    seen = GaugeMetricFamily("devupdate_devices_seen", "Devices that checked for updates within the window",
                             labels=["window"])
    for window, delta in (("1h", dt.timedelta(hours=1)), ("24h", dt.timedelta(days=1)),
                          ("7d", dt.timedelta(days=7))):
        seen.add_metric([window], Device.select().where(Device.last_seen >= now - delta).count())
    return [known, seen]


metrics.register_state("devices", _metrics)


@dataclass
class _Seen:
    request: DeviceRequest
    address: str
    network: str
    user: str
    first: float
    last: float
    count: int  # checks; 0 for status reports only
    installed: list[tuple[RuleEntry, str, str]] | None = None  # reports: (rule, package, version)


def with_installed(modules: tuple[Module, ...], rule: RuleEntry, package: str, version: str) -> tuple[Module, ...]:
    """The modules with ``version`` for the rule's module: under the name the device reported it by
    (the one :func:`devupdate.selection.installed_version` finds), else under the package name."""
    kept: list[Module] = []
    name = ""
    for module in modules:
        lowered = module.file_name.lower()
        if lowered in rule.image_names or lowered.rsplit(".", 1)[0] == rule.update_type:
            name = name or module.file_name
        else:
            kept.append(module)
    kept.append(Module(name or package, version))
    return tuple(kept)


def _datetime(posix: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(posix, dt.UTC).replace(tzinfo=None)


_SECONDS: dict[int, str] = {}


def _sqlite_time(posix: float) -> str:
    """The text peewee stores for a naive UTC datetime on SQLite: 'YYYY-MM-DD HH:MM:SS.ffffff'.
    The seconds part is memoized: a flush formats thousands of stamps from the same few seconds."""
    seconds, micro = divmod(round(posix * 1_000_000), 1_000_000)
    text = _SECONDS.get(seconds)
    if text is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        t = time.gmtime(seconds)
        text = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        _SECONDS[seconds] = text
    return f"{text}.{micro:06d}" if micro else text


UPDATED = ("mac", "serial", "device_type", "brand", "model", "revision", "locale", "versions", "user_id",
           "address", "network", "last_seen")
COLUMNS = ("device_id", "mac", "serial", "device_type", "brand", "model", "revision", "locale", "versions",
           "user_id", "address", "network", "first_seen", "last_seen", "checks")


def _values(seen: _Seen, sqlite: bool) -> tuple:
    """One observation as the upsert's parameters, in ``COLUMNS`` order."""
    req = seen.request
    modules = req.modules
    if len(modules) == 1:  # the common case, exactly as json.dumps writes it, at a fraction of the cost
        versions = f"{{{_json_string(modules[0].file_name)}:{_json_string(modules[0].version)}}}"
    else:
        versions = json.dumps(dict(sorted((m.file_name, m.version) for m in modules)), separators=(",", ":"))
    when = _sqlite_time if sqlite else _datetime
    return (req.device_id, req.mac, req.serial.upper(), req.device_type[:100], req.vendor[:100], req.model[:100],
            req.revision[:100], req.locale[:10], versions, (req.user_id or seen.user)[:256], seen.address[:64],
            seen.network, when(seen.first), when(seen.last), seen.count)


def _row(seen: _Seen) -> dict:
    return dict(zip(COLUMNS, _values(seen, sqlite=False), strict=True))


def _upsert_sql(placeholders: str) -> str:
    """One statement for both databases: insert, or update a known device. ``checks`` accumulates; the
    other fields take the newer observation only (workers flush independently, so an older one may
    arrive last); ``first_seen`` is never updated."""
    table = Device._meta.table_name

    def q(name: str) -> str:
        return f'"{name}"'

    newer = f'excluded.{q("last_seen")} >= {q(table)}.{q("last_seen")}'
    sets = [f"{q(c)} = CASE WHEN {newer} THEN excluded.{q(c)} ELSE {q(table)}.{q(c)} END" for c in UPDATED]
    sets.append(f'{q("checks")} = {q(table)}.{q("checks")} + excluded.{q("checks")}')
    return (f"INSERT INTO {q(table)} ({', '.join(q(c) for c in COLUMNS)}) VALUES {placeholders} "
            f"ON CONFLICT ({q('device_id')}) DO UPDATE SET {', '.join(sets)}")


def upsert(rows: list[dict], batch: int = 500) -> None:
    """Insert new devices and update known ones (rows are dicts keyed by ``COLUMNS``)."""
    sqlite = db.is_sqlite()

    def value(item):
        return str(item) if sqlite and isinstance(item, dt.datetime) else item  # str(): the form peewee writes

    upsert_values([tuple(value(row[column]) for column in COLUMNS) for row in rows], batch)


def upsert_values(rows: list[tuple], batch: int = 500) -> None:
    """The upsert, ``batch`` rows per transaction, through the driver's bulk path (``executemany`` on
    SQLite, ``execute_values`` on PostgreSQL): a peewee query costs ~100 µs a row to build, this
    costs what the database needs (~30 µs a row on SQLite). The group counters move with the rows."""
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        for attempt in range(RACE_ATTEMPTS):
            try:
                with db.write_transaction():
                    write_chunk(chunk, stored_groups([row[0] for row in chunk]))
                break
            except Raced:
                if attempt == RACE_ATTEMPTS - 1:
                    raise


class Raced(Exception):
    """Another writer inserted a device of this chunk after it was read, so its group before the write
    is unknown: the chunk's transaction is rolled back and the chunk written again (the row is visible
    then). PostgreSQL only; SQLite has one writer at a time."""


RACE_ATTEMPTS = 3


def _execute_upsert(chunk: list[tuple]) -> set[str] | None:
    """One chunk of the upsert, inside the caller's transaction. On PostgreSQL the device ids it
    inserted (not updated); on SQLite ``None`` (one writer at a time: nothing can come between)."""
    cursor = db.database.cursor()
    if db.is_sqlite():
        cursor.executemany(_upsert_sql("(" + ", ".join("?" for _ in COLUMNS) + ")"), chunk)
        return None
    from psycopg2.extras import execute_values

    returned = execute_values(cursor, _upsert_sql("%s") + ' RETURNING "device_id", (xmax = 0)', chunk,
                              page_size=len(chunk), fetch=True)
    return {device_id for device_id, inserted in returned if inserted}


def stored_groups(device_ids: list[str]) -> dict[str, groups.Group]:
    """The stored group columns of these devices (``groups.COLUMNS``; absent: new), read with a row
    lock on PostgreSQL so two workers flushing the same device count its change once."""
    if not device_ids:
        return {}
    columns = [getattr(Device, name) for name in groups.COLUMNS]
    query = db.locked(Device.select(Device.device_id, *columns).where(Device.device_id.in_(device_ids))
                      .order_by(Device.device_id))
    return {device_id: tuple(rest) for device_id, *rest in db.tuples(query)}


def write_chunk(chunk: list[tuple], before: dict[str, groups.Group]) -> None:
    """Upsert ``chunk`` (``COLUMNS`` tuples) and move the group counters, inside the caller's
    transaction; ``before`` is :func:`stored_groups` of the chunk, read in this transaction."""
    if not chunk:
        return
    inserted = _execute_upsert(chunk)
    ids = [row[0] for row in chunk]
    if inserted is not None and any(i not in before and i not in inserted for i in ids):
        raise Raced()
    groups.count(before.values(), stored_groups(ids).values())


def tally_checks(seen: list[_Seen], previous: dict[str, str], snapshot: Snapshot | None,
                 tally: activity.Tally) -> None:
    """Each device's checks into the hour of its latest one: the side's total, and per rule of its
    family the version it reports; where that version differs from the stored one, the device
    leaves the old version and arrives on the new one (a new device only arrives)."""
    for item in seen:
        req = item.request
        hour = activity.hour_of(item.last)
        side = item.network
        tally.add(hour, activity.CHECK, "", "", side, item.count)
        if snapshot is None:
            continue
        key = family(req.device_type, req.vendor, req.model, req.revision, req.locale)
        rules = snapshot.rules.get(key, ()) + snapshot.rules.get(key[:4] + ("*",), ())
        if not rules:
            continue
        before = None
        text = previous.get(req.device_id)
        if text is not None:
            try:
                stored = json.loads(text or "{}")
            except ValueError:
                stored = {}
            before = DeviceRequest(req.device_type, req.mac, req.serial, req.vendor, req.model, req.revision,
                                   req.locale, modules=tuple(Module(str(n), str(v)) for n, v in stored.items()))
        for rule in rules:
            now = (installed_version(rule, req) or "")[:64]
            tally.add(hour, activity.CHECK, rule.rule_id, now, side, item.count)
            old = None if before is None else (installed_version(rule, before) or "")[:64]
            if old != now:
                if old is not None:
                    tally.add(hour, activity.LEAVE, rule.rule_id, old, side)
                tally.add(hour, activity.ARRIVE, rule.rule_id, now, side)


def _merged(older: _Seen, newer: _Seen) -> _Seen:
    """Two observations of one device as one: either a check (``count`` > 0, its module list with any
    later report in it) or reports only."""
    newer.first = older.first = min(older.first, newer.first)
    if newer.count:  # a check says all the device runs
        newer.count += older.count
        return newer
    if older.count:  # reports after a check: the check's module list takes them
        modules = older.request.modules
        for rule, package, version in newer.installed or ():
            modules = with_installed(modules, rule, package, version)
        older.request = dataclasses.replace(older.request, modules=modules)
        older.address, older.network, older.last = newer.address, newer.network, max(older.last, newer.last)
        return older
    newer.installed = (older.installed or []) + (newer.installed or [])
    return newer


def _apply_reports(seen: _Seen, stored: str | None) -> None:
    """A device with status reports and no check in this batch: its stored module list (read under a
    row lock in the flush's transaction, so no other flush writes between) with the reported versions."""
    try:
        known = json.loads(stored or "{}")
    except ValueError:
        known = {}
    modules = tuple(Module(str(name), str(version)) for name, version in known.items())
    for rule, package, version in seen.installed or ():
        modules = with_installed(modules, rule, package, version)
    seen.request = dataclasses.replace(seen.request, modules=modules)


def _write_batch(chunk: list[_Seen], downloads: activity.Tally | None, snapshot: Snapshot | None,
                 sqlite: bool) -> None:
    """One transaction: the devices of ``chunk``, their group counters and the activity they make
    (with ``downloads``, the first chunk's)."""
    tally = activity.Tally()
    if downloads is not None:
        tally.merge(downloads)
    with db.write_transaction():
        before = stored_groups([seen.request.device_id for seen in chunk])
        previous = {device_id: group[-1] for device_id, group in before.items()}  # versions
        for seen in chunk:
            if seen.installed:
                _apply_reports(seen, previous.get(seen.request.device_id))
        tally_checks(chunk, previous, snapshot, tally)
        write_chunk([_values(seen, sqlite) for seen in chunk], before)
        activity.write(tally)


class InventoryRecorder:
    """Collects observations on the request path; writes them from its own job (backing off up to
    ``MAX_BACKOFF`` seconds while the database is away, nothing lost meanwhile)."""

    MAX_BACKOFF = 15.0
    PRUNE_EVERY = 3600.0

    def __init__(self, flush_seconds: float = 2.0, batch: int = 500, clock=time.time,
                 snapshot: Callable[[], Snapshot] | None = None, retention_days: int = 90):
        self.flush_seconds = flush_seconds
        self.batch = batch
        self.clock = clock
        #: the worker's selection snapshot (the rules a device's checks count for); None: totals only
        self.snapshot = snapshot
        self.retention_days = retention_days
        self._pruned_at = 0.0
        self._pending: dict[str, _Seen] = {}
        self._downloads = activity.Tally()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self.written = 0
        self.failures = 0
        self.job = PeriodicJob("inventory-flush", self._step, flush_seconds, retry=Retry(
            "inventory: writing the devices seen", first=flush_seconds, maximum=self.MAX_BACKOFF, logger=log))

    def observe(self, request: DeviceRequest, address: str, side: str, user: str = "") -> None:
        """Hot path: one dict update under a lock."""
        now = self.clock()
        network = "internal" if side == "Int" else "external"
        key = request.device_id
        with self._lock:
            seen = self._pending.get(key)
            if seen is None:
                self._pending[key] = _Seen(request, address, network, user, now, now, 1)
            else:  # the check says all the device runs: what a report said before is in it
                seen.request, seen.address, seen.network, seen.user = request, address, network, user
                seen.last = now
                seen.count += 1
                seen.installed = None

    def installed(self, request: DeviceRequest, address: str, side: str, user: str, rule: RuleEntry, package: str,
                  version: str) -> None:
        """Hot path: a status report ``installed`` (``request`` has the identity only), one dict update."""
        now = self.clock()
        network = "internal" if side == "Int" else "external"
        report = _Seen(request, address, network, user, now, now, 0, [(rule, package, version)])
        with self._lock:
            held = self._pending.get(request.device_id)
            self._pending[request.device_id] = report if held is None else _merged(held, report)

    def download(self, rule_id: str, version: str, side: str, size: int, *, whole: bool) -> None:
        """Hot path: an image sent (``whole``: a full answer or a range from its first byte, counted
        as a download; other ranges add their bytes only)."""
        network = "internal" if side == "Int" else "external"
        hour = activity.hour_of(self.clock())
        with self._lock:
            for rule in ("", rule_id) if rule_id else ("",):
                self._downloads.add(hour, activity.DOWNLOAD, rule, version if rule else "", network,
                                    1 if whole else 0, size)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> int:
        """Write everything observed so far; on failure keep it for the next try (never raises)."""
        try:
            written = self._write()
        except Exception as exc:  # noqa: BLE001 - database away: logged once per outage, retried
            self.job.retry.failed(exc)
            return 0
        self.job.retry.succeeded()
        return written

    def _write(self) -> int:
        """The job's step: write what is pending; on failure put it back (merged with newer sightings)
        and raise, so the job backs off."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
                downloads, self._downloads = self._downloads, activity.Tally()
            if not pending and not downloads:
                return 0
            now = self.clock()
            prune = now - self._pruned_at >= self.PRUNE_EVERY
            items = sorted(pending.values(), key=lambda seen: seen.request.device_id)  # one lock order
            done = 0
            unwritten: activity.Tally | None = downloads  # written with the first chunk
            try:
                db.database.connect(reuse_if_open=True)
                sqlite = db.is_sqlite()
                snapshot = self.snapshot() if self.snapshot is not None else None
                while done < len(items) or unwritten:
                    chunk = items[done:done + self.batch]
                    for attempt in range(RACE_ATTEMPTS):
                        try:
                            _write_batch(chunk, unwritten, snapshot, sqlite)
                            break
                        except Raced:
                            if attempt == RACE_ATTEMPTS - 1:
                                raise
                    unwritten = None
                    done += len(chunk)
                if prune:
                    with db.database.atomic():
                        removed = activity.prune(self.retention_days, now=now)
                    self._pruned_at = now
                    if removed:
                        log.info("activity: %d hourly rows older than %d days deleted", removed, self.retention_days)
            except Exception:
                self.failures += 1
                with self._lock:
                    if unwritten is not None:
                        self._downloads.merge(unwritten)
                    for seen in items[done:]:
                        key = seen.request.device_id
                        newer = self._pending.get(key)
                        if newer is None:
                            self._pending[key] = seen
                        else:
                            self._pending[key] = _merged(seen, newer)
                raise
            self.written += len(items)
            return len(items)

    def _step(self) -> None:
        self._write()

    def start(self) -> None:
        self.job.start()

    def close(self) -> None:
        """Stop the thread and write what is left (clean shutdown)."""
        self.job.stop(wait=10)
        self.flush()
