"""The compliance view: which known devices run something other than their approved version.

One query function for the CLI (``devupdate devices list``) and the JSON API. The comparison is
the selection's own (``selection.installed_version`` / ``version_key``), so "outdated" here means
exactly "would be offered the approved files by an update check" — for every device, test
devices included (they are marked, since they may legitimately run a pending version).
"""

from __future__ import annotations

import json
import re
from typing import Any

import peewee

from devupdate.devices.inventory import Device
from devupdate.devices.request import DeviceRequest, Module
from devupdate.selection import Snapshot, family, installed_version, is_test_device, version_key

CURRENT, OUTDATED, UNMANAGED = "Current", "Outdated", "Unmanaged"


def _time(value) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def device_status(snapshot: Snapshot, device: Device, update_types: dict[str, str] | None = None) -> dict[str, Any]:
    """One inventory row with its compliance: ``Status`` and one entry per rule with an approved version.
    ``update_types`` maps rule id to the UpdateType as spelled in the rule (the snapshot keeps it lower-case)."""
    versions: dict[str, str] = json.loads(device.versions or "{}")
    request = DeviceRequest(device_type=device.device_type, mac=device.mac, serial=device.serial,
                            vendor=device.brand, model=device.model, revision=device.revision,
                            locale=device.locale, user_id=device.user_id,
                            modules=tuple(Module(name, version) for name, version in versions.items()))
    key = family(device.device_type, device.brand, device.model, device.revision, device.locale)
    updates = []
    for rule in snapshot.rules.get(key, ()) + snapshot.rules.get(key[:4] + ("*",), ()):
        if rule.approved is None:
            continue
        installed = installed_version(rule, request)
        current = installed is not None and version_key(installed) == version_key(rule.approved.version)
        update_type = (update_types or {}).get(rule.rule_id, rule.update_type)
        updates.append({"RuleId": rule.rule_id, "UpdateType": update_type, "InstalledVersion": installed,
                        "ApprovedVersion": rule.approved.version, "Status": CURRENT if current else OUTDATED})
    if not updates:
        status = UNMANAGED
    else:
        status = OUTDATED if any(u["Status"] == OUTDATED for u in updates) else CURRENT
    return {"DeviceId": device.device_id, "MACAddress": device.mac or None, "SerialNumber": device.serial or None,
            "DeviceType": device.device_type, "Brand": device.brand, "Model": device.model,
            "Revision": device.revision, "Locale": device.locale, "Versions": versions,
            "UserID": device.user_id or None, "Address": device.address, "Network": device.network,
            "TestDevice": is_test_device(snapshot, request), "FirstSeen": _time(device.first_seen),
            "LastSeen": _time(device.last_seen), "Checks": device.checks, "Status": status, "Updates": updates}


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
    whose MAC, serial or user ID contains the text (see :func:`search_condition`)."""
    if snapshot is None:
        from devupdate.devices.snapshot import build_snapshot

        snapshot = build_snapshot()
    from devupdate.rules.models import Rule

    update_types = {rule.id: rule.update_type for rule in Rule.select(Rule.id, Rule.update_type)}
    query = Device.select().order_by(Device.device_id)
    if model:
        query = query.where(peewee.fn.LOWER(Device.model) == model.lower())
    if search and search.strip():
        query = query.where(search_condition(search))
    rows = []
    for device in query.iterator():
        entry = device_status(snapshot, device, update_types)
        if outdated and entry["Status"] != OUTDATED:
            continue
        rows.append(entry)
    if offset or limit is not None:
        rows = rows[offset:None if limit is None else offset + limit]
    return rows
