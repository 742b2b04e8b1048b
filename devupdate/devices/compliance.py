"""The compliance view: which known devices run something other than their approved version.

One query function for the CLI (``devupdate devices list``) and the JSON API. The comparison is
the selection's own (``selection.installed_version`` and the one ``version_key``), so "outdated" here means
exactly "would be offered the approved files by an update check" — for every device, test
devices included (they are marked, since they may legitimately run a pending version).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import peewee
from prometheus_client.core import GaugeMetricFamily

from devupdate import metrics
from devupdate.db import iso_utc, tuples, utcnow
from devupdate.devices.groups import groups as device_groups
from devupdate.devices.inventory import Device
from devupdate.errors import DevupdateError
from devupdate.packages.description import version_key
from devupdate.selection import DeviceRequest, Module, Snapshot, family, installed_version, is_test_device

CURRENT, OUTDATED, UNMANAGED = "Current", "Outdated", "Unmanaged"


def _updates(snapshot: Snapshot, request: DeviceRequest, update_types: dict[str, str] | None,
             keys: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One entry per rule of the device's family with an approved version: installed vs approved
    (``keys``: a memo of ``version_key`` for a caller comparing many rows)."""
    key = family(request.device_type, request.vendor, request.model, request.revision, request.locale)
    updates = []
    memo = {} if keys is None else keys
    for rule in snapshot.rules.get(key, ()) + snapshot.rules.get(key[:4] + ("*",), ()):
        if rule.approved is None:
            continue
        installed = installed_version(rule, request)
        current = installed is not None and _key(memo, installed) == _key(memo, rule.approved.version)
        update_type = (update_types or {}).get(rule.rule_id, rule.update_type)
        updates.append({"RuleId": rule.rule_id, "UpdateType": update_type, "InstalledVersion": installed,
                        "ApprovedVersion": rule.approved.version, "Status": CURRENT if current else OUTDATED})
    return updates


def _key(memo: dict[str, Any], version: str) -> Any:
    found = memo.get(version)
    if found is None:
        found = memo[version] = version_key(version)
    return found


def _status(updates: list[dict[str, Any]]) -> str:
    if not updates:
        return UNMANAGED
    return OUTDATED if any(u["Status"] == OUTDATED for u in updates) else CURRENT


def _request(device_type: str, brand: str, model: str, revision: str, locale: str, versions: dict[str, str],
             mac: str = "", serial: str = "", user_id: str = "") -> DeviceRequest:
    return DeviceRequest(device_type=device_type, mac=mac, serial=serial, vendor=brand, model=model,
                         revision=revision, locale=locale, user_id=user_id,
                         modules=tuple(Module(name, version) for name, version in versions.items()))


def device_status(snapshot: Snapshot, device: Device, update_types: dict[str, str] | None = None) -> dict[str, Any]:
    """One inventory row with its compliance: ``Status`` and one entry per rule with an approved version.
    ``update_types`` maps rule id to the UpdateType as spelled in the rule (the snapshot keeps it lower-case)."""
    versions: dict[str, str] = json.loads(device.versions or "{}")
    request = _request(device.device_type, device.brand, device.model, device.revision, device.locale, versions,
                       device.mac, device.serial, device.user_id)
    updates = _updates(snapshot, request, update_types)
    return {"DeviceId": device.device_id, "MACAddress": device.mac or None, "SerialNumber": device.serial or None,
            "DeviceType": device.device_type, "Brand": device.brand, "Model": device.model,
            "Revision": device.revision, "Locale": device.locale, "Versions": versions,
            "UserID": device.user_id or None, "Address": device.address, "Network": device.network,
            "TestDevice": is_test_device(snapshot, request), "FirstSeen": iso_utc(device.first_seen),
            "LastSeen": iso_utc(device.last_seen), "Checks": device.checks, "Status": _status(updates),
            "Updates": updates}


def fleet_groups(snapshot: Snapshot | None = None) -> list[tuple[dict[str, Any], int]]:
    """The whole fleet for the dashboard: ``(status row, devices)`` per distinct (family, reported
    versions), read from the counters the inventory writer keeps (``devices.groups``). The rows carry
    ``Brand``, ``Model``, ``Versions``, ``Status`` and ``Updates`` exactly as :func:`device_status`
    computes them — a fleet of 100,000 phones is a few thousand groups, not 100,000 rows to read on
    every page view. The counts are read every time; a group's row depends only on the group, the
    snapshot and the rules' update types, so it is computed once per snapshot served (the rows are
    shared: read them, do not change them)."""
    if snapshot is None:
        from devupdate.devices.snapshot import build_snapshot

        snapshot = build_snapshot()
    update_types = _update_types()
    global _GROUP_ROWS
    memo = _GROUP_ROWS  # this call's own: another thread may replace it, never change it under this one
    if memo.snapshot is not snapshot or memo.update_types != update_types or len(memo.rows) > 100_000:
        memo = _GROUP_ROWS = _GroupRows(snapshot, update_types)
    found = []
    for *group, devices in device_groups():
        key = tuple(group)
        row = memo.rows.get(key)
        if row is None:
            device_type, brand, model, revision, locale, versions_text = group
            versions = json.loads(versions_text or "{}")
            updates = _updates(snapshot, _request(device_type, brand, model, revision, locale, versions),
                               update_types, memo.keys)
            row = memo.rows[key] = {"Brand": brand, "Model": model, "Versions": versions, "Status": _status(updates),
                                    "Updates": updates}
        found.append((row, devices))
    return found


class _GroupRows:
    """The status rows of the groups for one snapshot and set of update types."""

    def __init__(self, snapshot: Snapshot | None = None, update_types: dict[str, str] | None = None) -> None:
        self.snapshot = snapshot  # held: the served one is replaced, not changed, when the rules change
        self.update_types = update_types or {}
        self.rows: dict[tuple, dict[str, Any]] = {}
        self.keys: dict[str, Any] = {}  # version_key memo


_GROUP_ROWS = _GroupRows()


def _update_types() -> dict[str, str]:
    from devupdate.rules.models import Rule

    return dict(tuples(Rule.select(Rule.id, Rule.update_type)))


def search_condition(text: str) -> peewee.Expression:
    """Devices whose MAC (in any spelling), serial, device id or user ID contains ``text``,
    case-insensitively — the inventory search of the console and the API."""
    text = text.strip()
    condition = (Device.device_id.contains(text.upper()) | Device.serial.contains(text.upper())
                 | Device.user_id.contains(text))
    mac = re.sub(r"[-:.\s]", "", text).upper()
    if mac and re.fullmatch(r"[0-9A-F]+", mac):
        condition = condition | Device.mac.contains(mac)
    return condition


STATUSES = {CURRENT.lower(): CURRENT, OUTDATED.lower(): OUTDATED, UNMANAGED.lower(): UNMANAGED}
#: what ``sort`` accepts (``-`` in front: descending)
SORTS: dict[str, Any] = {"device": Device.device_id, "model": Device.model, "brand": Device.brand,
                         "user": Device.user_id, "first-seen": Device.first_seen,
                         "last-seen": Device.last_seen, "checks": Device.checks}
_AGE = re.compile(r"([0-9]{1,4})([hdw]?)")
_AGE_UNITS = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "": dt.timedelta(days=1),
              "w": dt.timedelta(weeks=1)}


def parse_age(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``2w`` or a bare number of days, as a duration (``--not-seen-since``)."""
    match = _AGE.fullmatch(text.strip().lower())
    if not match:
        raise DevupdateError(f"{text[:40]!r} is not an age: write a number of days, hours or weeks such as "
                             "30d, 12h or 2w", code="bad-age")
    return int(match.group(1)) * _AGE_UNITS[match.group(2)]


def parse_status(text: str) -> str:
    status = STATUSES.get(text.strip().lower())
    if status is None:
        raise DevupdateError(f"{text[:40]!r} is not a status: use current, outdated or unmanaged", code="bad-status")
    return status


def parse_sort(text: str) -> str:
    if text.lstrip("-") not in SORTS:
        raise DevupdateError(f"{text[:40]!r} is not a sort key: use one of {', '.join(SORTS)} "
                             "(a leading '-' sorts descending)", code="bad-sort")
    return text


def sort_key(device: Device, sort: str) -> tuple[Any, str]:
    """Where ``device`` stands in ``sort`` order: its sort column's value and its DeviceId (the tie-break)."""
    return getattr(device, SORTS[sort.lstrip("-")].name), device.device_id


def device_query(*, model: str | None = None, search: str | None = None, not_seen_since: dt.timedelta | None = None,
                 sort: str = "device", now: dt.datetime | None = None, after: tuple[Any, str] | None = None) -> Any:
    """The inventory rows matching the filters the database can answer, in ``sort`` order (ties by DeviceId);
    ``after`` (a :func:`sort_key`) keeps the rows that come after that position (keyset paging)."""
    column = SORTS[parse_sort(sort).lstrip("-")]
    descending = sort.startswith("-")
    order = [column.desc() if descending else column.asc()]
    if column is not Device.device_id:
        order.append(Device.device_id)
    query = Device.select().order_by(*order)
    if after is not None:
        value, device_id = after
        beyond = column < value if descending else column > value
        query = query.where(beyond | ((column == value) & (Device.device_id > device_id)))
    if model:
        if "*" in model:
            query = query.where(peewee.fn.LOWER(Device.model) ** model.lower().replace("*", "%"))
        else:
            query = query.where(peewee.fn.LOWER(Device.model) == model.lower())
    if search and search.strip():
        query = query.where(search_condition(search))
    if not_seen_since is not None:
        query = query.where(Device.last_seen < (now or utcnow()) - not_seen_since)
    return query


def list_devices(*, model: str | None = None, outdated: bool = False, snapshot: Snapshot | None = None,
                 limit: int | None = None, offset: int = 0, search: str | None = None, status: str | None = None,
                 not_seen_since: dt.timedelta | None = None, sort: str = "device",
                 now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """:func:`device_page` without the positions."""
    return [row for _, row in device_page(model=model, outdated=outdated, snapshot=snapshot, limit=limit,
                                          offset=offset, search=search, status=status,
                                          not_seen_since=not_seen_since, sort=sort, now=now)]


def device_page(*, model: str | None = None, outdated: bool = False, snapshot: Snapshot | None = None,
                limit: int | None = None, offset: int = 0, search: str | None = None, status: str | None = None,
                not_seen_since: dt.timedelta | None = None, sort: str = "device", now: dt.datetime | None = None,
                after: tuple[Any, str] | None = None) -> list[tuple[tuple[Any, str], dict[str, Any]]]:
    """Known devices, the one listing of the CLI, the API and the console: ``model`` matches
    case-insensitively (``*`` wildcards); ``status`` keeps devices of one compliance status
    (``outdated`` is ``status="Outdated"``); ``search`` keeps devices whose MAC, serial or user ID
    contains the text (see :func:`search_condition`); ``not_seen_since`` keeps devices whose last check
    is older than that; ``sort`` is a key of :data:`SORTS`. A page (``limit``/``offset``, or ``after``
    a position) reads only as far as it needs. Each row comes with its :func:`sort_key`."""
    if snapshot is None:
        from devupdate.devices.snapshot import build_snapshot

        snapshot = build_snapshot()
    wanted = OUTDATED if outdated else (parse_status(status) if status else None)
    update_types = _update_types()
    query = device_query(model=model, search=search, not_seen_since=not_seen_since, sort=sort, now=now, after=after)
    if wanted is None and (offset or limit is not None):
        query = query.offset(offset).limit(limit if limit is not None else -1)
        offset = 0
    rows = []
    for device in query.iterator():
        entry = device_status(snapshot, device, update_types)
        if wanted is not None and entry["Status"] != wanted:
            continue
        if offset:
            offset -= 1
            continue
        rows.append((sort_key(device, sort), entry))
        if limit is not None and len(rows) >= limit:
            break
    _attach_reports([entry for _, entry in rows])
    return rows


def count_devices(*, model: str | None = None, search: str | None = None,
                  not_seen_since: dt.timedelta | None = None, now: dt.datetime | None = None) -> int:
    """How many devices the database-side filters keep (the status filter needs every row's versions)."""
    return device_query(model=model, search=search, not_seen_since=not_seen_since, now=now).order_by().count()


def _attach_reports(rows: list[dict[str, Any]]) -> None:
    """Each update's latest device API status report (``LastReport``, ``None`` without one): a device
    that reported ``failed`` for the approved version shows it here, beside what it runs."""
    from devupdate.devices.reports import DeviceReport

    latest: dict[tuple[str, str], Any] = {}
    ids = [row["DeviceId"] for row in rows]
    for start in range(0, len(ids), 500):
        query = DeviceReport.select().where(DeviceReport.device_id.in_(ids[start:start + 500]))
        for report in query.order_by(DeviceReport.reported_at, DeviceReport.id):
            latest[(report.device_id, report.rule_id)] = report
    for row in rows:
        for update in row["Updates"]:
            found = latest.get((row["DeviceId"], update["RuleId"]))
            update["LastReport"] = None if found is None else {
                "Version": found.version, "State": found.state, "Code": found.code or None,
                "Message": found.message or None, "Time": iso_utc(found.reported_at)}


def find_device(text: str) -> Device:
    """One inventory row by DeviceId, MAC (any spelling) or serial; a clear 404 otherwise."""
    raw = text.strip()
    mac = re.sub(r"[-:.\s]", "", raw).upper()
    device = Device.get_or_none((Device.device_id == raw.upper()) | (Device.device_id == mac)
                                | ((Device.serial == raw.upper()) & (Device.serial != "")))
    if device is None:
        raise DevupdateError(f"no known device {raw[:80]!r}: give its MAC address, serial number or DeviceId "
                             "as 'devupdate devices list' shows it", status=404, code="not-found")
    return device


def device_detail(text: str, *, store=None, audit_rows: int = 20) -> dict[str, Any]:
    """Everything the device page shows: the compliance row, the versions it reported per module over
    time (the device API's status reports: first and last report of each version), its uploaded logs and
    the audit-trail rows that name it (test-device entries by MAC or serial, newest first)."""
    from devupdate.audit.models import AuditEvent
    from devupdate.audit.trail import event_dict
    from devupdate.devices.reports import DeviceReport

    device = find_device(text)
    from devupdate.devices.snapshot import build_snapshot

    entry = device_status(build_snapshot(), device, _update_types())
    _attach_reports([entry])
    history = [{"Package": r.package, "Version": r.version, "State": r.state, "RuleId": r.rule_id,
                "FirstReported": iso_utc(r.first_reported), "LastReported": iso_utc(r.reported_at),
                "Code": r.code or None, "Message": r.message or None}
               for r in DeviceReport.select().where(DeviceReport.device_id == device.device_id)
               .order_by(DeviceReport.first_reported.desc(), DeviceReport.id.desc()).limit(200)]
    for name, version in sorted(entry["Versions"].items()):  # what it reports now, seen until its last check
        history.append({"Package": name, "Version": version, "State": "reported", "RuleId": None,
                        "FirstReported": None, "LastReported": entry["LastSeen"], "Code": None, "Message": None})
    names = [value for value in (device.mac, device.serial, device.device_id) if value]
    condition = None
    for value in names:
        part = (AuditEvent.target.contains(value) | AuditEvent.after.contains(value)
                | AuditEvent.before.contains(value))
        condition = part if condition is None else condition | part
    audit = [event_dict(e) for e in AuditEvent.select().where(condition).order_by(AuditEvent.id.desc())
             .limit(audit_rows)] if condition is not None else []
    logs_found: list[dict[str, Any]] = []
    if store is not None:
        from devupdate.devices.logs import list_logs

        logs_found = [f.as_dict() for f in list_logs(store, device=device.device_id)]
    return {**entry, "History": history, "Logs": logs_found, "Audit": audit}


# --- scrape-time gauges (devupdate.metrics) --------------------------------------------------------

def _metrics() -> list[GaugeMetricFamily]:
    """Compliance per rule and installed version from the grouped fleet (a few hundred groups at
    100,000 devices), the fleet by status, and how long each pending version has waited."""
    from devupdate.rules.models import Rule

    rules = {rule.id: rule for rule in Rule.select(Rule.id, Rule.brand, Rule.model, Rule.locale, Rule.pending_version,
                                                   Rule.pending_at)}

    def name(rule_id: str) -> str:
        rule = rules.get(rule_id)
        return f"{rule.brand} {rule.model} {rule.locale}" if rule else rule_id

    per_version: dict[tuple[str, str, str], int] = {}
    by_status = {CURRENT: 0, OUTDATED: 0, UNMANAGED: 0}
    for row, devices in fleet_groups():
        by_status[row["Status"]] += devices
        for update in row["Updates"]:
            key = (update["RuleId"], update["InstalledVersion"] or "none", update["Status"].lower())
            per_version[key] = per_version.get(key, 0) + devices
    rule_devices = GaugeMetricFamily("devupdate_rule_devices", "Known devices of each rule's family with an approved "
                                     "version, by the version they run and whether it is the approved one",
                                     labels=["rule_id", "rule", "version", "status"])
    for (rule_id, version, status), devices in sorted(per_version.items()):
        rule_devices.add_metric([rule_id, name(rule_id), version, status], devices)
    fleet = GaugeMetricFamily("devupdate_devices_by_status", "Known devices by compliance: current (every approved "
                              "version installed), outdated (would be offered one), unmanaged (no approved rule)",
                              labels=["status"])
    for status, devices in by_status.items():
        fleet.add_metric([status.lower()], devices)
    since = GaugeMetricFamily("devupdate_rule_pending_since_timestamp_seconds", "Unix time each pending version "
                              "arrived (alert on rules waiting for approval too long)",
                              labels=["rule_id", "rule", "version"])
    for rule in rules.values():
        if rule.pending_version and rule.pending_at:
            since.add_metric([rule.id, name(rule.id), rule.pending_version],
                             rule.pending_at.replace(tzinfo=dt.UTC).timestamp())
    return [rule_devices, fleet, since]


metrics.register_state("compliance", _metrics)
