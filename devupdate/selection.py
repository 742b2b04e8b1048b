"""Choosing what to offer a device (device-protocol.md §4). Pure: a request and a snapshot in,
files out — no database, no Flask, so it is cheap enough for the boot storm and easy to test.
The request model (:class:`DeviceRequest`) lives here: the parsers in ``devices/`` build it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devupdate.packages.description import version_key


@dataclass(frozen=True)
class Module:
    """One firmware module a device reports: its file name and the version it runs."""

    file_name: str
    version: str
    timestamp: str = ""


@dataclass(frozen=True)
class DeviceRequest:
    """An update check, parsed and validated (device-protocol.md §3)."""

    device_type: str
    mac: str  # normalized, '' when not given
    serial: str  # as sent (trimmed), '' when not given
    vendor: str
    model: str
    revision: str
    locale: str  # upper-case
    user_id: str = ""
    modules: tuple[Module, ...] = field(default_factory=tuple)

    @property
    def device_id(self) -> str:
        return self.mac or f"SN-{self.serial.upper()}"


@dataclass(frozen=True)
class OfferedFile:
    file_name: str
    signature_file_name: str | None
    version: str
    timestamp: str  # ISO 8601 UTC, when the image was imported
    path: str  # DeviceType/Brand/Model/Revision/Locale/Version/FileName, relative to DeviceUpdateFiles_*
    size: int
    sha256: str


@dataclass(frozen=True)
class VersionEntry:
    version: str
    files: tuple[OfferedFile, ...]


@dataclass(frozen=True)
class RuleEntry:
    rule_id: str
    update_type: str  # lower-case
    image_names: frozenset[str]  # lower-case file names of the rule's images (all versions)
    approved: VersionEntry | None
    pending: VersionEntry | None


@dataclass(frozen=True)
class DownloadEntry:
    sha256: str
    size: int
    imported_at: float  # POSIX time, for Last-Modified


@dataclass(frozen=True)
class Snapshot:
    """Everything the hot path needs, built once per generation of the rule tables."""

    generation: int = 0
    rules: dict[tuple[str, str, str, str, str], tuple[RuleEntry, ...]] = field(default_factory=dict)
    test_macs: frozenset[str] = frozenset()
    test_serials: frozenset[str] = frozenset()  # upper-case
    downloads: dict[str, DownloadEntry] = field(default_factory=dict)  # lower-case path → entry


def family(device_type: str, brand: str, model: str, revision: str, locale: str) -> tuple[str, str, str, str, str]:
    return (device_type.lower(), brand.lower(), model.lower(), revision.lower(), locale.lower())


def is_test_device(snapshot: Snapshot, request: DeviceRequest) -> bool:
    return bool(request.mac and request.mac in snapshot.test_macs) or bool(
        request.serial and request.serial.upper() in snapshot.test_serials)


def installed_version(rule: RuleEntry, request: DeviceRequest) -> str | None:
    for module in request.modules:
        name = module.file_name.lower()
        if name in rule.image_names or name.rsplit(".", 1)[0] == rule.update_type:
            return module.version
    return None


def select(snapshot: Snapshot, request: DeviceRequest) -> list[OfferedFile]:
    """Files of every matching rule whose target version differs from what the device runs."""
    key = family(request.device_type, request.vendor, request.model, request.revision, request.locale)
    candidates = snapshot.rules.get(key, ()) + snapshot.rules.get(key[:4] + ("*",), ())
    if not candidates:
        return []
    test_device = is_test_device(snapshot, request)
    offered: list[OfferedFile] = []
    for rule in candidates:
        target = rule.pending if test_device and rule.pending is not None else rule.approved
        if target is None:
            continue
        installed = installed_version(rule, request)
        if installed is not None and version_key(installed) == version_key(target.version):
            continue
        offered.extend(target.files)
    return offered
