"""Choosing what to offer a device (device-protocol.md §4). Pure: a request and a snapshot in,
files out — no database, no Flask, so it is cheap enough for the boot storm and easy to test.
The request model (:class:`DeviceRequest`) lives here: the parsers in ``devices/`` build it.
"""

from __future__ import annotations

import hashlib
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
class RolloutEntry:
    """A staged rollout of a rule's approved version, as plain values (the rollout table's row at the
    snapshot's generation): devices whose bucket is below ``share`` (basis points, 0–10,000) are offered
    the approved version, the others ``previous`` (``None``: nothing)."""

    share: int
    previous: VersionEntry | None


@dataclass(frozen=True)
class RuleEntry:
    rule_id: str
    update_type: str  # lower-case
    image_names: frozenset[str]  # lower-case file names of the rule's images (all versions)
    approved: VersionEntry | None
    pending: VersionEntry | None
    rollout: RolloutEntry | None = None
    name: str = ""  # the UpdateType as spelled in the rule (the device API's package name)


@dataclass(frozen=True)
class DownloadEntry:
    sha256: str
    size: int
    imported_at: float  # POSIX time, for Last-Modified
    rule_id: str = ""  # whose version the file belongs to (the activity series counts downloads per rule)
    version: str = ""
    rolled_out: bool = False  # an image of the version an active rollout of its rule rolls out


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


BUCKETS = 10_000  # rollout shares are in basis points


def bucket(rule_id: str, device_id: str) -> int:
    """The device's stable place in a rule's rollout, 0 … ``BUCKETS``-1: a hash of both, so each rule
    picks a different first 5 % and a device keeps its place as the share grows."""
    digest = hashlib.blake2b(f"{rule_id}|{device_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def in_rollout(rule: RuleEntry, device_id: str) -> bool:
    """Whether the device is offered the rule's approved version (always when no rollout runs)."""
    rollout = rule.rollout
    return rollout is None or rollout.share >= BUCKETS or bucket(rule.rule_id, device_id) < rollout.share


@dataclass(frozen=True)
class Target:
    """What one matching rule says the device should run, and what it runs now."""

    rule: RuleEntry
    version: VersionEntry
    installed: str | None

    @property
    def current(self) -> bool:
        return self.installed is not None and version_key(self.installed) == version_key(self.version.version)


def target_version(rule: RuleEntry, request: DeviceRequest, test_device: bool) -> VersionEntry | None:
    """Test devices: the pending version, else the approved one; the fleet: the approved version,
    or the previous one while a rollout has not reached the device's bucket."""
    if test_device:
        return rule.pending if rule.pending is not None else rule.approved
    if rule.rollout is not None and not in_rollout(rule, request.device_id):
        return rule.rollout.previous
    return rule.approved


def targets(snapshot: Snapshot, request: DeviceRequest) -> list[Target]:
    """Every matching rule with a target version — the one answer to "what should this device have",
    behind the Lync check (which sends only what differs) and the device API (which lists it all)."""
    key = family(request.device_type, request.vendor, request.model, request.revision, request.locale)
    candidates = snapshot.rules.get(key, ()) + snapshot.rules.get(key[:4] + ("*",), ())
    if not candidates:
        return []
    test_device = is_test_device(snapshot, request)
    found = []
    for rule in candidates:
        version = target_version(rule, request, test_device)
        if version is not None:
            found.append(Target(rule, version, installed_version(rule, request)))
    return found


def select(snapshot: Snapshot, request: DeviceRequest) -> list[OfferedFile]:
    """Files of every matching rule whose target version differs from what the device runs."""
    offered: list[OfferedFile] = []
    for target in targets(snapshot, request):
        if not target.current:
            offered.extend(target.version.files)
    return offered
