"""Known devices per (family, reported versions): the counters the dashboard, the rules list and the
rule pages read instead of grouping the whole inventory on every view.

The inventory writer keeps them in the transaction that writes the device rows (``count``: each
device's group before and after the upsert, read under the rows' locks), so they never drift from
the rows; migration 21 fills them once from the rows already there. A fleet of 100,000 phones is a
few thousand groups: reading them costs the same at any fleet size.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable

import peewee

from devupdate.db import BaseModel, tuples

#: the inventory columns a group is made of, in ``Group`` tuple order
COLUMNS = ("device_type", "brand", "model", "revision", "locale", "versions")

Group = tuple[str, str, str, str, str, str]


class DeviceGroup(BaseModel):
    """How many inventory rows have exactly these family columns and this ``versions`` text.
    ``key`` (SHA-256 of the six values) is the unique key: ``versions`` may be longer than an index entry."""

    id = peewee.AutoField()
    key = peewee.CharField(max_length=64, unique=True)
    device_type = peewee.CharField(max_length=100)
    brand = peewee.CharField(max_length=100)
    model = peewee.CharField(max_length=100)
    revision = peewee.CharField(max_length=100)
    locale = peewee.CharField(max_length=10)
    versions = peewee.TextField()
    devices = peewee.BigIntegerField(default=0)


def key_of(group: Group) -> str:
    return hashlib.sha256(json.dumps(group).encode()).hexdigest()


def count(before: Iterable[Group], after: Iterable[Group]) -> None:
    """Move the counters from the devices' groups ``before`` a write to their groups ``after`` it
    (inside the writer's transaction). Changed counters are written in key order, so two writers
    never wait for each other's counters in opposite orders; emptied groups are deleted."""
    deltas: Counter[Group] = Counter()
    for group in before:
        deltas[group] -= 1
    for group in after:
        deltas[group] += 1
    changed = sorted((key_of(group), group, delta) for group, delta in deltas.items() if delta)
    for start in range(0, len(changed), 200):
        part = changed[start:start + 200]
        rows = [{"key": key, **dict(zip(COLUMNS, group, strict=True)), "devices": delta} for key, group, delta in part]
        (DeviceGroup.insert_many(rows)
         .on_conflict(conflict_target=[DeviceGroup.key],
                      update={DeviceGroup.devices: DeviceGroup.devices + peewee.EXCLUDED.devices})
         .execute())
        DeviceGroup.delete().where(DeviceGroup.key.in_([key for key, _, delta in part if delta < 0])
                                   & (DeviceGroup.devices <= 0)).execute()


def fill(rows: Iterable[tuple]) -> int:
    """The counters from ``(device_type, …, versions, devices)`` rows (the inventory grouped once)."""
    filled = 0
    batch: list[dict] = []
    for *group, devices in rows:
        batch.append({"key": key_of(tuple(group)), **dict(zip(COLUMNS, group, strict=True)), "devices": devices})
        if len(batch) >= 200:
            DeviceGroup.insert_many(batch).execute()
            filled, batch = filled + len(batch), []
    if batch:
        DeviceGroup.insert_many(batch).execute()
    return filled + len(batch)


def groups() -> Iterable[tuple[str, str, str, str, str, str, int]]:
    """Every non-empty group with its device count."""
    return tuples(DeviceGroup.select(*(getattr(DeviceGroup, c) for c in COLUMNS), DeviceGroup.devices)
                  .where(DeviceGroup.devices > 0))


def known_devices() -> int:
    """Devices in the inventory (the sum of the counters: no scan of the rows)."""
    return int(DeviceGroup.select(peewee.fn.COALESCE(peewee.fn.SUM(DeviceGroup.devices), 0)).scalar() or 0)
