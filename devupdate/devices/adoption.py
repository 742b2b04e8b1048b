"""A rule's rollout as the fleet lived it: who runs what now (the inventory) and since the rule's
last approval, devices on the approved version over time (the hourly series of ``activity``, walked
back from now). What the rule page, ``GET /rules/{rule}/adoption`` and ``devupdate devices adoption``
show; the dashboard's days are :func:`activity_days`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import defaultdict
from typing import Any

import peewee

from devupdate.db import iso_utc, tuples
from devupdate.devices import activity
from devupdate.devices.inventory import Device
from devupdate.packages.description import version_key
from devupdate.rules.models import Rule, RuleVersion, VersionFile
from devupdate.selection import DeviceRequest, Module, RuleEntry, installed_version


def _family_condition(rule: Rule) -> peewee.Expression:
    lower = peewee.fn.LOWER
    condition = ((lower(Device.device_type) == rule.device_type.lower()) & (lower(Device.brand) == rule.brand.lower())
                 & (lower(Device.model) == rule.model.lower()) & (lower(Device.revision) == rule.revision.lower()))
    if rule.locale != "*":
        condition = condition & (lower(Device.locale) == rule.locale.lower())
    return condition


def _rule_entry(rule: Rule) -> RuleEntry:
    """The rule as the selection sees it, for ``installed_version`` (its image names: one indexed query)."""
    query = (VersionFile.select(VersionFile.file_name).join(RuleVersion)
             .where((RuleVersion.rule_id == rule.id) & (VersionFile.role == "image")))
    names = {name.lower() for (name,) in tuples(query)}
    return RuleEntry(rule.id, rule.update_type.lower(), frozenset(names), None, None)


def who_runs_what(rule: Rule) -> list[dict[str, Any]]:
    """The rule's devices now by the version of its module they report and by side, the approved
    version first, then newest first (``""``: not reported): one grouped query over the inventory."""
    entry = _rule_entry(rule)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"internal": 0, "external": 0})
    query = (Device.select(Device.versions, Device.network, peewee.fn.COUNT(Device.id))
             .where(_family_condition(rule)).group_by(Device.versions, Device.network))
    for versions_text, network, devices in tuples(query):
        try:
            versions = json.loads(versions_text or "{}")
        except ValueError:
            versions = {}
        request = DeviceRequest("", "", "", "", "", "", "", modules=tuple(Module(str(n), str(v))
                                                                          for n, v in versions.items()))
        side = "external" if network == "external" else "internal"
        counts[(installed_version(entry, request) or "")[:64]][side] += devices
    if rule.approved_version:
        counts[rule.approved_version]  # noqa: B018 - listed with 0 while nobody runs it yet
    rows = [{"Version": version or None, "Devices": sides["internal"] + sides["external"],
             "Internal": sides["internal"], "External": sides["external"],
             "Approved": bool(version) and version == rule.approved_version} for version, sides in counts.items()]

    def newest_first(row: dict[str, Any]) -> tuple:
        key = version_key(row["Version"] or "")
        return (row["Version"] is None, isinstance(key, str),
                tuple(-part for part in key) if isinstance(key, tuple) else (), str(key))

    return [row for row in rows if row["Approved"]] + sorted((row for row in rows if not row["Approved"]),
                                                             key=newest_first)

def adoption(rule: Rule, *, retention_days: int = 90, now: float | None = None) -> dict[str, Any]:
    """The rule's rollout since its last approval: devices on the approved version (and all its
    devices) at the end of each hour — each day beyond a week — from the current counts walked back
    through the hourly version changes; who runs what now; checks and downloads since the approval."""
    now = time.time() if now is None else now
    last = activity.hour_of(now)
    floor = last - retention_days * 24
    approved = rule.approved_version
    since = activity.hour_of_datetime(rule.approved_at) if approved and rule.approved_at else floor
    first = max(since, floor)
    versions = who_runs_what(rule)
    current = {row["Version"] or "": row["Devices"] for row in versions}
    rows = activity.rule_hours(rule.id, first)
    points = activity.curve(current, ((h, kind, version, n) for h, kind, version, _, n, _ in rows
                                      if kind in (activity.ARRIVE, activity.LEAVE)), first, last)
    daily = last - first > 7 * 24
    curve = [{"Time": iso_utc(activity.hour_start(hour + 1)) if hour < last else iso_utc(
                  dt.datetime.fromtimestamp(now, dt.UTC).replace(tzinfo=None)),
              "Approved": counts.get(approved, 0) if approved else 0, "Devices": sum(counts.values())}
             for hour, counts in points if not daily or hour == last or (hour + 1) % 24 == 0 or hour == first]
    checks = sum(n for _, kind, version, _, n, _ in rows if kind == activity.CHECK)
    downloads = [(n, size) for _, kind, version, _, n, size in rows
                 if kind == activity.DOWNLOAD and (not approved or version == approved)]
    return {"RuleId": rule.id, "ApprovedVersion": approved, "ApprovedTime": iso_utc(rule.approved_at),
            "Since": iso_utc(activity.hour_start(first)), "Resolution": "day" if daily else "hour",
            "Devices": sum(current.values()), "OnApproved": current.get(approved or "", 0) if approved else 0,
            "Versions": versions, "Curve": curve, "Checks": checks,
            "Downloads": sum(n for n, _ in downloads), "DownloadBytes": sum(size for _, size in downloads)}


def activity_days(days: int = 30, *, now: float | None = None) -> list[dict[str, Any]]:
    """Check-ins and downloads per UTC day (``devices.activity.daily``)."""
    return activity.daily(days, now=time.time() if now is None else now)
