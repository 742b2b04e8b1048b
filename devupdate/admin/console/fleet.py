"""What the fleet looks like and what an action would change for it: the aggregates the web console's
dashboard shows and the JSON API can serve — plain functions over the rules, the inventory and the
compliance view, no Flask.

- :func:`awaiting_approval` — rules with a pending version;
- :func:`devices_seen` — devices that checked in during the last hours;
- :func:`version_distribution` — installed versions per model and update type (the dashboard chart);
- :func:`summary` — all of the above for the dashboard, with filestore usage;
- :func:`preview` (from ``devupdate.rules.preview``) — the sentence a confirmation states before
  approve / reset / restore.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import peewee

from devupdate.db import tuples, utcnow
from devupdate.devices.groups import DeviceGroup, known_devices
from devupdate.devices.inventory import Device
from devupdate.packages.description import version_key
from devupdate.rules.models import Rule
from devupdate.rules.preview import ACTIONS, family_label, preview, state_token  # noqa: F401  (re-exported)

UNKNOWN = "unknown"


def awaiting_approval() -> list[Rule]:
    """Rules with a pending version, oldest import first."""
    return list(Rule.select().where(Rule.pending_version.is_null(False))
                .order_by(Rule.pending_at, Rule.brand, Rule.model, Rule.locale))


def devices_seen(hours: int = 24, *, now: dt.datetime | None = None) -> dict[str, int]:
    """How many known devices checked for updates in the last ``hours`` (by network side)."""
    since = (now or utcnow()) - dt.timedelta(hours=hours)
    counts: dict[str, int] = dict(tuples(Device.select(Device.network, peewee.fn.COUNT(Device.id))
                                         .where(Device.last_seen >= since).group_by(Device.network)))
    return {"Hours": hours, "Devices": sum(counts.values()), "Internal": counts.get("internal", 0),
            "External": counts.get("external", 0), "Known": known_devices()}


def _sort_versions(versions: Counter, approved: set[str]) -> list[dict[str, Any]]:
    def order(version: str):
        key = version_key(version)
        return (version == UNKNOWN, isinstance(key, str), tuple(-part for part in key) if isinstance(key, tuple)
                else (), str(key))
    return [{"Version": version, "Devices": count, "Approved": version in approved}
            for version, count in sorted(versions.items(), key=lambda item: order(item[0]))]


def version_distribution(groups: Iterable[tuple[dict[str, Any], int]]) -> list[dict[str, Any]]:
    """Installed versions per (Brand, Model, UpdateType), from ``(compliance row, devices)`` pairs
    (``compliance.fleet_groups()``, or ``(row, 1)`` per ``compliance.list_devices()`` row).

    Managed devices count the version the compliance view found for each rule (``unknown`` when
    the device did not report the module); devices no approved rule covers count the modules they
    reported, by file stem (``CPE.nbt`` → ``CPE``). ``Approved`` marks approved versions, listed even
    when no device runs them yet.
    """
    counts: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    approved: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    names: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    for row, devices in groups:
        entries = [(u["UpdateType"], u["InstalledVersion"] or UNKNOWN, u["ApprovedVersion"]) for u in row["Updates"]]
        if not entries:
            entries = [(name.rsplit(".", 1)[0], version, None) for name, version in row["Versions"].items()]
        for update_type, installed, approved_version in entries:
            key = (row["Brand"].lower(), row["Model"].lower(), update_type.lower())
            names.setdefault(key, (row["Brand"], row["Model"], update_type))
            counts[key][installed] += devices
            if approved_version:
                approved[key].add(approved_version)
    rows = []
    for key in sorted(counts):
        for version in approved[key]:
            counts[key][version] += 0  # an approved version nobody runs yet is still shown, with 0
        brand, model, update_type = names[key]
        rows.append({"Brand": brand, "Model": model, "UpdateType": update_type,
                     "Devices": sum(counts[key].values()), "ApprovedVersions": sorted(approved[key]),
                     "Versions": _sort_versions(counts[key], approved[key])})
    return rows


def family_devices(rule: Rule) -> int:
    """Known devices of the rule's family (``*`` locale: every locale)."""
    return family_device_counts([rule])[rule.id]


def family_device_counts(rules: list[Rule]) -> dict[str, int]:
    """Known devices per rule (by rule id), from the group counters of these rules' brands and models
    (``devices.groups``): a page of 50 rules reads the few groups it shows, not the inventory."""
    lower = peewee.fn.LOWER
    columns = (lower(DeviceGroup.device_type), lower(DeviceGroup.brand), lower(DeviceGroup.model),
               lower(DeviceGroup.revision), lower(DeviceGroup.locale))
    counts: dict[tuple, int] = {}
    if rules:
        query = (DeviceGroup.select(*columns, peewee.fn.SUM(DeviceGroup.devices))
                 .where(lower(DeviceGroup.brand).in_(sorted({rule.brand.lower() for rule in rules}))
                        & lower(DeviceGroup.model).in_(sorted({rule.model.lower() for rule in rules}))
                        & (DeviceGroup.devices > 0))
                 .group_by(*columns))
        for *family, count in tuples(query):
            counts[tuple(family)] = int(count)
    result = {}
    for rule in rules:
        key = (rule.device_type.lower(), rule.brand.lower(), rule.model.lower(), rule.revision.lower())
        result[rule.id] = sum(count for family, count in counts.items()
                              if family[:4] == key and (rule.locale == "*" or family[4] == rule.locale.lower()))
    return result


def summary(store, service_name: str, *, hours: int = 24, snapshot=None) -> dict[str, Any]:
    """Everything the dashboard shows, in one call: rules awaiting approval, devices seen, the
    compliance counts, the version distribution and the filestore usage per area (``snapshot``:
    the one phones are served, else one built for the call)."""
    from devupdate.content.usage import usage_rows
    from devupdate.devices.compliance import fleet_groups
    from devupdate.rules.lifecycle import rule_dict

    groups = fleet_groups(snapshot)
    compliance: Counter = Counter()
    for row, devices in groups:
        compliance[row["Status"]] += devices
    return {"AwaitingApproval": [rule_dict(rule, service_name) for rule in awaiting_approval()],
            "DevicesSeen": devices_seen(hours),
            "Compliance": dict(compliance),
            "VersionDistribution": version_distribution(groups),
            "Storage": usage_rows(store)}

