"""Check-ins and downloads over time: one row per hour, kind, rule, version and side.

Written by the inventory's batch (``inventory.InventoryRecorder``), never on the request path: the
check and the download only bump in-memory counters. Four kinds of row:

- ``check``: checks in the hour — with ``rule_id`` empty every check of the side, otherwise the
  checks of the rule's devices by the version they reported (``""``: the module not reported);
- ``download``: image downloads (full, or a range from the first byte) and the bytes sent — totals
  with ``rule_id`` empty, and per rule and version;
- ``arrive`` / ``leave``: devices that began / stopped reporting a version of a rule in the hour
  (the batch compares the inventory row before its upsert with the new check).

A rule's rollout curve needs no per-device history: the inventory says exactly who runs what now,
and walking the ``arrive``/``leave`` rows back from now gives the count of any earlier hour. The
unique index leads with ``rule_id`` and ``hour``, so the dashboard (``rule_id = ''``) and a rule page
each read one index range; rows older than the retention (``activity_retention_days``) are deleted
by the batch once an hour.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import peewee

from devupdate import db
from devupdate.db import BaseModel

CHECK, DOWNLOAD, ARRIVE, LEAVE = "check", "download", "arrive", "leave"
KINDS = (CHECK, DOWNLOAD, ARRIVE, LEAVE)
SIDES = ("internal", "external")
HOUR = 3600
#: (hour, kind, rule_id, version, side) → [events, bytes]
Key = tuple[int, str, str, str, str]


class ActivityHour(BaseModel):
    """One hour of one kind of activity for one rule version and side (see the module's docstring)."""

    id = peewee.AutoField()
    hour = peewee.IntegerField()  # whole hours since 1970-01-01 00:00 UTC
    kind = peewee.CharField(max_length=8)
    rule_id = peewee.CharField(max_length=36, default="")
    version = peewee.CharField(max_length=64, default="")
    side = peewee.CharField(max_length=8)
    events = peewee.BigIntegerField(default=0)
    bytes = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "activity_hour"
        indexes = ((("rule_id", "hour", "kind", "version", "side"), True), (("hour",), False))


def hour_of(posix: float) -> int:
    return int(posix // HOUR)


def hour_start(hour: int) -> dt.datetime:
    """The hour's first second as a naive UTC datetime (how the database keeps times)."""
    return dt.datetime.fromtimestamp(hour * HOUR, dt.UTC).replace(tzinfo=None)


def hour_of_datetime(value: dt.datetime) -> int:
    return hour_of(value.replace(tzinfo=dt.UTC).timestamp() if value.tzinfo is None else value.timestamp())


class Tally:
    """Counts collected between two writes, keyed like the table's unique index."""

    def __init__(self) -> None:
        self.rows: dict[Key, list[int]] = defaultdict(lambda: [0, 0])

    def add(self, hour: int, kind: str, rule_id: str, version: str, side: str, events: int = 1,
            size: int = 0) -> None:
        row = self.rows[(hour, kind, rule_id, version[:64], side)]
        row[0] += events
        row[1] += size

    def merge(self, other: Tally) -> None:
        for key, (events, size) in other.rows.items():
            row = self.rows[key]
            row[0] += events
            row[1] += size

    def __len__(self) -> int:
        return len(self.rows)


_COLUMNS = ("hour", "kind", "rule_id", "version", "side", "events", "bytes")


def _upsert_sql(placeholders: str) -> str:
    table = ActivityHour._meta.table_name
    return (f'INSERT INTO "{table}" ({", ".join(f"{chr(34)}{c}{chr(34)}" for c in _COLUMNS)}) VALUES {placeholders} '
            f'ON CONFLICT ("rule_id", "hour", "kind", "version", "side") DO UPDATE SET '
            f'"events" = "{table}"."events" + excluded."events", "bytes" = "{table}"."bytes" + excluded."bytes"')


def write(tally: Tally) -> int:
    """Add the tally to the stored hours (inside the caller's transaction): one upsert statement
    through the driver's bulk path; returns the rows written."""
    values = [(*key, events, size) for key, (events, size) in tally.rows.items()]
    if not values:
        return 0
    cursor = db.database.cursor()
    if db.is_sqlite():
        cursor.executemany(_upsert_sql("(" + ", ".join("?" for _ in _COLUMNS) + ")"), values)
    else:
        from psycopg2.extras import execute_values

        execute_values(cursor, _upsert_sql("%s"), values, page_size=max(1, len(values)))
    return len(values)


def prune(retention_days: int, *, now: float) -> int:
    """Delete the hours older than ``retention_days`` (the hour index); returns the rows deleted."""
    cutoff = hour_of(now) - retention_days * 24
    return ActivityHour.delete().where(ActivityHour.hour < cutoff).execute()


# --- reading ---------------------------------------------------------------------------------------

def daily(days: int, *, now: float) -> list[dict[str, Any]]:
    """Check-ins and downloads per UTC day for the last ``days`` days (today included), oldest first,
    every day present (zeros where nothing happened): one grouped query over the totals' index range."""
    today = hour_of(now) // 24
    first = today - days + 1
    day = ActivityHour.hour / 24  # integer division on both databases (an integer column)
    query = (ActivityHour.select(day.alias("day"), ActivityHour.kind, ActivityHour.side,
                                 peewee.fn.SUM(ActivityHour.events), peewee.fn.SUM(ActivityHour.bytes))
             .where((ActivityHour.rule_id == "") & (ActivityHour.hour >= first * 24)
                    & ActivityHour.kind.in_((CHECK, DOWNLOAD)))
             .group_by(day, ActivityHour.kind, ActivityHour.side))
    rows: dict[int, dict[str, Any]] = {
        d: {"Date": (dt.date(1970, 1, 1) + dt.timedelta(days=d)).isoformat(), "Checks": 0, "ChecksInternal": 0,
            "ChecksExternal": 0, "Downloads": 0, "DownloadsInternal": 0, "DownloadsExternal": 0, "DownloadBytes": 0}
        for d in range(first, today + 1)}
    for d, kind, side, events, size in db.tuples(query):
        row = rows.get(int(d))
        if row is None:
            continue
        name = "Checks" if kind == CHECK else "Downloads"
        row[name] += int(events)
        row[name + ("Internal" if side == "internal" else "External")] += int(events)
        if kind == DOWNLOAD:
            row["DownloadBytes"] += int(size or 0)
    return list(rows.values())


def rule_hours(rule_id: str, since_hour: int) -> list[tuple[int, str, str, str, int, int]]:
    """A rule's rows from ``since_hour`` on, as (hour, kind, version, side, events, bytes): one index range."""
    query = (ActivityHour.select(ActivityHour.hour, ActivityHour.kind, ActivityHour.version, ActivityHour.side,
                                 ActivityHour.events, ActivityHour.bytes)
             .where((ActivityHour.rule_id == rule_id) & (ActivityHour.hour >= since_hour)))
    return [tuple(row) for row in db.tuples(query)]


def curve(current: Mapping[str, int], transitions: Iterable[tuple[int, str, str, int]], first_hour: int,
          last_hour: int) -> list[tuple[int, dict[str, int]]]:
    """Devices per version at the end of every hour from ``first_hour`` to ``last_hour`` (the hour
    ``current`` was counted in), walking back from ``current`` through the (hour, kind, version,
    devices) ``arrive`` / ``leave`` rows: at the end of hour h-1 a version had what it had at the end
    of h, less the devices that arrived on it during h, plus those that left it."""
    change: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for hour, kind, version, devices in transitions:
        if first_hour < hour <= last_hour:
            change[hour][version] += devices if kind == ARRIVE else -devices
    counts = {version: int(n) for version, n in current.items()}
    points = [(last_hour, dict(counts))]
    for hour in range(last_hour, first_hour, -1):
        for version, delta in change.get(hour, {}).items():
            counts[version] = counts.get(version, 0) - delta
        points.append((hour - 1, {v: max(0, n) for v, n in counts.items()}))
    points.reverse()
    return points
