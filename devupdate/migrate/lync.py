"""``devupdate migrate lync``: a Lync / Skype for Business pool's device update state, recreated.

Two steps. :func:`plan` reads the exports and the cabs' descriptions (no write) and maps every rule,
test device and setting, or refuses with one line per thing it cannot map: a rule whose GUID no cab
has, a version that is in none of the cabs, a family that differs from the cab's, a MAC that is not
one, a value out of range. :func:`apply` carries the plan out in one database transaction through
the services the CLI, the API and the console use — ``import_cab``, ``lifecycle.adopt`` and
``lifecycle.remove``, ``test_devices.add``/``set_identifier``, ``configuration.set_value`` — so each
step is checked and audited as if an admin had done it; whatever fails, nothing is kept (image files
a rolled-back import had stored are removed as orphans).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devupdate import configuration
from devupdate.audit.trail import record
from devupdate.db import write_transaction
from devupdate.errors import DevupdateError
from devupdate.migrate.lyncexport import ExportError, LyncConfiguration, LyncRule, LyncTestDevice
from devupdate.packages import Limits, PackageError, UpdateDescription, scan_package
from devupdate.packages.description import parse_guid, parse_version
from devupdate.rules import test_devices
from devupdate.rules.models import Rule, TestDevice
from devupdate.settings import Settings


class MigrationRefused(DevupdateError):
    """The exports cannot be mapped; ``lines`` names each problem."""

    code = "cannot-migrate"

    def __init__(self, lines: list[str]):
        super().__init__(f"cannot migrate: {len(lines)} problem(s), nothing changed", code=self.code)
        self.lines = lines


@dataclass
class RulePlan:
    rule: LyncRule
    id: str
    approved: str | None
    pending: str | None
    restore: str | None


@dataclass
class Plan:
    cabs: list[tuple[Path, list[UpdateDescription]]] = field(default_factory=list)
    rules: list[RulePlan] = field(default_factory=list)
    dropped: list[UpdateDescription] = field(default_factory=list)  # in the cabs, not in the export
    devices: list[tuple[LyncTestDevice, str, str]] = field(default_factory=list)  # device, scope, identifier
    settings: list[tuple[str | None, str, object]] = field(default_factory=list)  # site, name, value

    def lines(self) -> list[str]:
        """What :func:`apply` will do, one line per step (the ``--dry-run`` output)."""
        out = []
        for path, updates in self.cabs:
            versions = ", ".join(sorted({u.version for u in updates}))
            out.append(f"import {path.name}: {len(updates)} update(s), version {versions}")
        for planned in self.rules:
            rule = planned.rule
            out.append(f"rule {planned.id} {rule.name} ({rule.device_type} {rule.revision} {rule.update_type}): "
                       f"approved {planned.approved or '-'}, pending {planned.pending or '-'}, "
                       f"restore {planned.restore or '-'}")
        for update in self.dropped:
            out.append(f"rule {update.id} {update.brand} {update.model} {update.locale}: in the cabs but not in "
                       "the Lync rules: not kept")
        for device, scope, identifier in self.devices:
            out.append(f"test device {scope}/{device.name}: {device.identifier_type} {identifier}")
        for site, name, value in self.settings:
            shown = " ".join(value) if isinstance(value, list) else "none" if value is None else value
            out.append(f"config {'site:' + site if site else 'global'}: {name} = {shown}")
        return out


def _version(text: str | None, where: str, problems: list[str]) -> str | None:
    if text is None:
        return None
    try:
        return parse_version(text)
    except PackageError:
        problems.append(f"{where}: {text!r} is not a version a.b.c.d")
        return None


def _same(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


def _plan_rules(plan: Plan, rules: list[LyncRule], problems: list[str]) -> None:
    by_id: dict[str, dict[str, UpdateDescription]] = {}
    brands = set()
    for _path, updates in plan.cabs:
        for update in updates:
            by_id.setdefault(update.id, {})[update.version] = update
            brands.add(update.brand.lower())
    seen = set()
    for rule in rules:
        where = f"{rule.source} line {rule.line} ({rule.name or rule.identity})"
        try:
            rule_id = parse_guid(rule.id)
        except PackageError:
            problems.append(f"{where}: Id {rule.id!r} is not a GUID")
            continue
        if rule_id in seen:
            problems.append(f"{where}: rule {rule_id} is listed twice")
            continue
        seen.add(rule_id)
        versions = [_version(getattr(rule, column), f"{where} {label}", problems)
                    for column, label in (("approved", "ApprovedVersion"), ("pending", "PendingVersion"),
                                          ("restore", "RestoreVersion"))]
        approved, pending, restore = versions
        known = by_id.get(rule_id)
        if known is None:
            hint = (f"no cab given has any {rule.brand} update: add the vendor's cab"
                    if rule.brand.lower() not in brands else "add the cab with its versions")
            problems.append(f"{where}: rule {rule_id} is in none of the cabs ({hint})")
            continue
        sample = next(iter(known.values()))
        for column, mine, theirs in (("DeviceType", rule.device_type, sample.device_type),
                                     ("Brand", rule.brand, sample.brand), ("Model", rule.model, sample.model),
                                     ("Revision", rule.revision, sample.revision),
                                     ("Locale", rule.locale, sample.locale),
                                     ("UpdateType", rule.update_type, sample.update_type)):
            if mine and not _same(mine, theirs):
                problems.append(f"{where}: {column} {mine!r} but the cab's rule {rule_id} says {theirs!r}")
        for label, version in (("ApprovedVersion", approved), ("PendingVersion", pending),
                               ("RestoreVersion", restore)):
            if version is not None and version not in known:
                problems.append(f"{where}: {label} {version} is in none of the cabs (they have "
                                f"{', '.join(sorted(known))} for this rule): add the cab with {version}")
        if approved is None and restore is not None:
            problems.append(f"{where}: a RestoreVersion ({restore}) without an ApprovedVersion")
        plan.rules.append(RulePlan(rule, rule_id, approved, pending, restore))
    for _path, updates in plan.cabs:
        for update in updates:
            if update.id not in seen and not Rule.select().where(Rule.id == update.id).exists() \
                    and update.id not in {u.id for u in plan.dropped}:
                plan.dropped.append(update)


def _plan_devices(plan: Plan, devices: list[LyncTestDevice], problems: list[str]) -> None:
    seen = set()
    for device in devices:
        where = f"{device.source} line {device.line} ({device.name})"
        try:
            scope = test_devices.scope_of(device.site)
            mac = device.identifier if device.identifier_type == "MACAddress" else None
            serial = device.identifier if device.identifier_type == "SerialNumber" else None
            _kind, identifier = test_devices.identifier_of(mac, serial)
        except DevupdateError as exc:
            problems.append(f"{where}: {exc.message}")
            continue
        if (scope, device.name) in seen:
            problems.append(f"{where}: {scope}/{device.name} is listed twice")
            continue
        seen.add((scope, device.name))
        plan.devices.append((device, scope, identifier))


def _plan_settings(plan: Plan, configs: list[LyncConfiguration], settings: Settings, problems: list[str]) -> None:
    scopes = set()
    for config in configs:
        scope = config.site or ""
        if scope in scopes:
            problems.append(f"{config.source} line {config.line}: {config.site or 'Global'} is listed twice")
            continue
        scopes.add(scope)
        for name, text in config.values.items():
            try:
                if config.site:
                    test_devices.scope_of(config.site)
                value = configuration.check_value(name, text, settings.quotas)
            except DevupdateError as exc:
                problems.append(f"{config.source} line {config.line} ({config.site or 'Global'}): {exc.message}")
                continue
            plan.settings.append((config.site, name, value))


def plan(settings: Settings, *, rules: list[LyncRule], cabs: list[Path],
         devices: Sequence[LyncTestDevice] = (), configs: Sequence[LyncConfiguration] = ()) -> Plan:
    """Map everything, or raise :class:`MigrationRefused` with every problem (the database must be open)."""
    result, problems = Plan(), []
    limits = Limits(max_total_size=settings.max_cab_size, max_ratio=settings.max_expansion_ratio)
    for path in cabs:
        try:
            updates, _ = scan_package(path, limits)  # descriptions only; the import reads it again
        except PackageError as exc:
            problems.append(f"{Path(path).name}: {exc.message}")
            continue
        except OSError as exc:
            problems.append(f"{Path(path).name}: cannot read it ({exc.strerror or exc})")
            continue
        result.cabs.append((Path(path), updates))
    if not cabs:
        problems.append("no cab given: name the vendor .cab files the Lync pool imported")
    _plan_rules(result, list(rules), problems)
    _plan_devices(result, list(devices), problems)
    _plan_settings(result, list(configs), settings, problems)
    if problems:
        raise MigrationRefused(problems)
    return result


def apply(runtime: Any, migration: Plan, *, actor: str) -> dict[str, Any]:
    """Carry ``migration`` out in one transaction; returns counts. Raises what a service refused."""
    from devupdate.content.cleanup import remove_orphans
    from devupdate.imports.service import import_cab
    from devupdate.rules import lifecycle

    imported: list[str] = []
    try:
        with write_transaction():
            for path, _updates in migration.cabs:
                imported.append(path.name)  # before the import: a refused one may have stored files too
                import_cab(runtime.store, runtime.settings, path, actor=actor)
            for planned in migration.rules:
                lifecycle.adopt(planned.id, actor, approved=planned.approved, pending=planned.pending,
                                restore=planned.restore)
            for update in migration.dropped:
                lifecycle.remove(update.id, actor)
            for device, scope, identifier in migration.devices:
                kind = device.identifier_type
                mac, serial = (identifier, None) if kind == "MACAddress" else (None, identifier)
                existing = TestDevice.get_or_none((TestDevice.scope == scope) & (TestDevice.name == device.name))
                if existing is None:
                    test_devices.add(device.name, mac=mac, serial=serial, site=device.site, actor=actor)
                elif (existing.identifier_type, existing.identifier) != (kind, identifier):
                    test_devices.set_identifier(device.name, mac=mac, serial=serial, site=device.site, actor=actor)
            for site, name, value in migration.settings:
                text = " ".join(value) if isinstance(value, list) else "none" if value is None else str(value)
                configuration.set_value(name, text, site=site, actor=actor, quotas=runtime.settings.quotas)
            summary = {"Cabs": len(migration.cabs), "Rules": len(migration.rules), "Dropped": len(migration.dropped),
                       "TestDevices": len(migration.devices), "Settings": len(migration.settings)}
            record(actor, "migrate.lync", "lync", detail=summary)
    except BaseException:
        if imported:
            remove_orphans(runtime.store)  # image files the rolled-back imports had stored
        raise
    return summary


__all__ = ["ExportError", "MigrationRefused", "Plan", "apply", "plan"]
