"""The compliance view: which known devices run something other than their approved version.

One query function for the CLI (``devupdate devices list``) and the JSON API. The comparison is
the selection's own (``selection.installed_version`` and the one ``version_key``), so "outdated" here means
exactly "would be offered the approved files by an update check" — for every device, test
devices included (they are marked, since they may legitimately run a pending version).
"""

from __future__ import annotations

import json
import re
from typing import Any

import peewee

from devupdate.db import iso_utc
from devupdate.devices.inventory import Device
from devupdate.packages.description import version_key
from devupdate.selection import DeviceRequest, Module, Snapshot, family, installed_version, is_test_device

CURRENT, OUTDATED, UNMANAGED = "Current", "Outdated", "Unmanaged"




def _updates(snapshot: Snapshot, request: DeviceRequest, update_types: dict[str, str] | None) -> list[dict[str, Any]]:
    """One entry per rule of the device's family with an approved version: installed vs approved."""
    key = family(request.device_type, request.vendor, request.model, request.revision, request.locale)
    updates = []
    for rule in snapshot.rules.get(key, ()) + snapshot.rules.get(key[:4] + ("*",), ()):
        if rule.approved is None:
            continue
        installed = installed_version(rule, request)
        current = installed is not None and version_key(installed) == version_key(rule.approved.version)
        update_type = (update_types or {}).get(rule.rule_id, rule.update_type)
        updates.append({"RuleId": rule.rule_id, "UpdateType": update_type, "InstalledVersion": installed,
                        "ApprovedVersion": rule.approved.version, "Status": CURRENT if current else OUTDATED})
    return updates


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
    """The whole fleet for the dashboard, in one grouped query: ``(status row, devices)`` per distinct
    (family, reported versions). The rows carry ``Brand``, ``Model``, ``Versions``, ``Status`` and
    ``Updates`` exactly as :func:`device_status` computes them — a fleet of 100,000 phones is a few
    hundred groups, not 100,000 rows to build on every page view."""
    if snapshot is None:
        from devupdate.devices.snapshot import build_snapshot

        snapshot = build_snapshot()
    update_types = _update_types()
    columns = (Device.device_type, Device.brand, Device.model, Device.revision, Device.locale, Device.versions)
    query = Device.select(*columns, peewee.fn.COUNT(Device.id).alias("devices")).group_by(*columns).tuples()
    groups = []
    for device_type, brand, model, revision, locale, versions_text, devices in query.iterator():
        versions = json.loads(versions_text or "{}")
        updates = _updates(snapshot, _request(device_type, brand, model, revision, locale, versions), update_types)
        groups.append(({"Brand": brand, "Model": model, "Versions": versions, "Status": _status(updates),
                        "Updates": updates}, devices))
    return groups


def _update_types() -> dict[str, str]:
    from devupdate.rules.models import Rule

    return {rule.id: rule.update_type for rule in Rule.select(Rule.id, Rule.update_type)}


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


def list_devices(*, model: str | None = None, outdated: bool = False, snapshot: Snapshot | None = None,
                 limit: int | None = None, offset: int = 0, search: str | None = None) -> list[dict[str, Any]]:
    """Known devices ordered by ``DeviceId``; ``model`` matches case-insensitively; ``outdated``
    keeps only devices running something other than an approved version; ``search`` keeps devices
    whose MAC, serial or user ID contains the text (see :func:`search_condition`). A page
    (``limit``/``offset``) reads only as far as it needs."""
    if snapshot is None:
        from devupdate.devices.snapshot import build_snapshot

        snapshot = build_snapshot()
    update_types = _update_types()
    query = Device.select().order_by(Device.device_id)
    if model:
        query = query.where(peewee.fn.LOWER(Device.model) == model.lower())
    if search and search.strip():
        query = query.where(search_condition(search))
    if not outdated and (offset or limit is not None):
        query = query.offset(offset).limit(limit if limit is not None else -1)
        offset = 0
    rows = []
    for device in query.iterator():
        entry = device_status(snapshot, device, update_types)
        if outdated and entry["Status"] != OUTDATED:
            continue
        if offset:
            offset -= 1
            continue
        rows.append(entry)
        if limit is not None and len(rows) >= limit:
            break
    return rows
