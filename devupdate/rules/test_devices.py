"""Test devices (management.md §2): devices that receive pending versions before the fleet."""

from __future__ import annotations

import re
from typing import Any

import peewee

from devupdate.audit.trail import record
from devupdate.db import database, is_sqlite, utcnow, write_transaction
from devupdate.errors import Conflict, DevupdateError, NotFound
from devupdate.rules.lifecycle import bump_generation
from devupdate.rules.models import TestDevice

_MAC_SEPARATORS = re.compile(r"[-:.]")
_SERIAL = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_NAME = re.compile(r"^[^\x00-\x1f/]{1,200}$")


def normalize_mac(text: str) -> str:
    """'00-04-f2-aa-bb-cc' → '0004F2AABBCC'. Six to fifty two-hex-digit pairs (the stored column's 100)."""
    mac = _MAC_SEPARATORS.sub("", text.strip()).upper()
    if not 12 <= len(mac) <= 100 or len(mac) % 2 or not re.fullmatch(r"[0-9A-F]+", mac):
        raise DevupdateError(f"{text!r} is not a MAC address (12 hex digits, separated by - or : or not)",
                             code="bad-mac")
    return mac


def normalize_serial(text: str) -> str:
    """Serials compare case-insensitively; stored upper-case."""
    serial = text.strip()
    if not _SERIAL.match(serial):
        raise DevupdateError(f"{text!r} is not a serial number (letters, digits, '-' and '_' only)",
                             code="bad-serial")
    return serial.upper()


def scope_of(site: str | None) -> str:
    if site is None:
        return "global"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", site):
        raise DevupdateError(f"site name {site!r}: use letters, digits, '.', '_' or '-'", code="bad-site")
    return f"site:{site}"


def identifier_of(mac: str | None, serial: str | None) -> tuple[str, str]:
    if mac is not None and serial is None:
        return "MACAddress", normalize_mac(mac)
    if serial is not None and mac is None:
        return "SerialNumber", normalize_serial(serial)
    raise DevupdateError("give exactly one of --mac or --serial", code="bad-identifier")


def device_dict(device: TestDevice) -> dict[str, Any]:
    return {"Name": device.name, "Scope": device.scope, "IdentifierType": device.identifier_type,
            "Identifier": device.identifier}


def _refuse_taken(scope: str, kind: str, identifier: str, name: str) -> None:
    """One device, one test device per scope: a second name for the same MAC or serial is refused
    (inside the write transaction; on PostgreSQL concurrent adds of one identifier queue on a lock)."""
    if not is_sqlite():
        database.execute_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"test-device/{scope}/{identifier}",))
    other = TestDevice.get_or_none((TestDevice.scope == scope) & (TestDevice.identifier_type == kind)
                                   & (TestDevice.identifier == identifier) & (TestDevice.name != name))
    if other is not None:
        raise Conflict(f"{kind} {identifier} is already test device {other.name!r} in {scope}; use that one, or "
                       "remove it first", code="duplicate-test-device-identifier")


def add(name: str, *, mac: str | None = None, serial: str | None = None, site: str | None = None,
        actor: str) -> TestDevice:
    if not _NAME.match(name):
        raise DevupdateError(f"test device name {name!r}: 1–200 printable characters, no '/'", code="bad-name")
    kind, identifier = identifier_of(mac, serial)
    scope = scope_of(site)
    try:
        with write_transaction():
            _refuse_taken(scope, kind, identifier, name)
            device = TestDevice.create(name=name, scope=scope, identifier_type=kind, identifier=identifier)
            bump_generation()
            record(actor, "test-device.add", f"{scope}/{name}", after=device_dict(device))
    except peewee.IntegrityError:
        raise Conflict(f"a test device named {name!r} already exists in {scope}; "
                       "change it with 'devupdate test-devices set'", code="duplicate-test-device") from None
    return device


def _get(name: str, scope: str) -> TestDevice:
    device = TestDevice.get_or_none((TestDevice.name == name) & (TestDevice.scope == scope))
    if device is None:
        raise NotFound(f"no test device named {name!r} in {scope}; see 'devupdate test-devices list'",
                       code="no-such-test-device")
    return device


def set_identifier(name: str, *, mac: str | None = None, serial: str | None = None, site: str | None = None,
                   actor: str) -> TestDevice:
    kind, identifier = identifier_of(mac, serial)
    scope = scope_of(site)
    with write_transaction():
        device = _get(name, scope)
        _refuse_taken(scope, kind, identifier, name)
        before = device_dict(device)
        device.identifier_type, device.identifier, device.updated_at = kind, identifier, utcnow()
        device.save()
        bump_generation()
        record(actor, "test-device.set", f"{scope}/{name}", before=before, after=device_dict(device))
    return device


def remove(name: str, *, site: str | None = None, actor: str) -> dict[str, Any]:
    scope = scope_of(site)
    with write_transaction():
        device = _get(name, scope)
        before = device_dict(device)
        device.delete_instance()
        bump_generation()
        record(actor, "test-device.remove", f"{scope}/{name}", before=before)
    return before


def list_devices(site: str | None = None) -> list[TestDevice]:
    query = TestDevice.select().order_by(TestDevice.scope, TestDevice.name)
    if site is not None:
        query = query.where(TestDevice.scope == scope_of(site))
    return list(query)
