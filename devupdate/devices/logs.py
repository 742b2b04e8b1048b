"""Device logs (device-protocol.md §6): naming, listing and cleanup — one implementation for the
upload endpoint, ``devupdate logs list|cleanup``, the automatic cleanup job and (later) the API.

Layout in the filestore area ``logs/client`` (``<filestore>/logs/client`` on disk, the original's
``Logs/Client``)::

    <LogType>/<device id>/<file name>

The device id is the normalized MAC address (``0004F2AABBCC``) or, for devices that sent only a
serial number, ``SN-<SERIAL>`` (upper-case) — the same id the update check and the inventory use.
Cleanup also ages out the request audit logs (area ``logs/audit``): the original's
Clear-CsDeviceUpdateLog removes both, and both follow ``LogCleanUpInterval``.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import unicodedata
from dataclasses import dataclass

from devupdate.content.areas import LOGS_AUDIT, LOGS_CLIENT
from devupdate.errors import DevupdateError
from filestore import FileStore

CLIENT_AREA = LOGS_CLIENT
AUDIT_AREA = LOGS_AUDIT
CLEANUP_AREAS = (CLIENT_AREA, AUDIT_AREA)
_MAC_SEPARATORS = re.compile(r"[-:.]")
_MAC = re.compile(r"^[0-9A-F]{12}$")
_SERIAL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_BYTES = 200


# --- names ---------------------------------------------------------------------------------------

def device_id(mac: str | None, serial: str | None) -> str:
    """``0004F2AABBCC`` from any MAC spelling, else ``SN-<SERIAL>``; DevupdateError when neither is valid."""
    mac, serial = (mac or "").strip(), (serial or "").strip()
    if mac:
        normalized = _MAC_SEPARATORS.sub("", mac).upper()
        if not _MAC.match(normalized):
            raise DevupdateError("mac must be 12 hex digits (separators - : . allowed)", code="BadMacAddress")
        return normalized
    if serial:
        if not _SERIAL.match(serial):
            raise DevupdateError("serial may contain letters, digits, '-' and '_' only (at most 64)",
                                 code="BadSerialNumber")
        return f"SN-{serial.upper()}"
    raise DevupdateError("mac or serial is required to know which device the log belongs to",
                         code="MissingIdentity")


def safe_name(raw: str | None) -> str:
    """Reduce a client-supplied file name to a safe base name, or raise DevupdateError.

    Only the last component counts (``/`` and ``\\`` both separate, a drive letter is dropped),
    anything but letters, digits, ``.``, ``_`` and ``-`` becomes ``_``, leading dots are removed
    (no hidden files, no ``..``), and the name is cut to 200 bytes keeping its extension.
    ``../../x.txt`` → ``x.txt``, ``C:\\x.txt`` → ``x.txt``, ``x/..\\y.txt`` → ``y.txt``.
    """
    text = unicodedata.normalize("NFKC", raw or "")
    text = re.split(r"[/\\]", text)[-1]
    text = re.sub(r"^[A-Za-z]:", "", text)
    text = _UNSAFE.sub("_", text).lstrip(".")
    text = re.sub(r"_{2,}", "_", text)
    if len(text) > MAX_NAME_BYTES:
        stem, dot, ext = text.rpartition(".")
        ext = ext[:20] if dot else ""
        text = (stem if dot else text)[:MAX_NAME_BYTES - len(ext) - 1].rstrip(".") + ("." + ext if ext else "")
    if not text.strip("._-"):
        raise DevupdateError(f"file name {raw!r} has no usable characters; send name=<file>.<ext>",
                             code="BadFileName")
    return text


def extension(name: str) -> str:
    """Lower-case extension with its dot (``.clg2``), '' when there is none."""
    stem, dot, ext = name.rpartition(".")
    return f".{ext.lower()}" if dot and stem else ""


def canonical_type(value: str | None, valid: list[str]) -> str:
    """The configured spelling of a log type (matched case-insensitively), or DevupdateError."""
    wanted = (value or "").strip()
    for name in valid:
        if name.lower() == wanted.lower():
            return name
    if not wanted:
        raise DevupdateError(f"type is required; one of {', '.join(valid)}", code="MissingLogType")
    raise DevupdateError(f"log type {wanted[:40]!r} is not accepted; valid types: {', '.join(valid)}",
                         code="BadLogType")


def check_extension(name: str, valid: list[str]) -> None:
    ext = extension(name)
    if ext not in {v.lower() for v in valid}:
        shown = ext or "none"
        raise DevupdateError(f"file extension {shown!r} is not accepted; valid extensions: {' '.join(valid)}",
                             code="BadExtension")


def device_filter(value: str) -> str:
    """What ``--device`` matches: a MAC in any spelling, a serial, or a stored device id."""
    text = value.strip()
    mac = _MAC_SEPARATORS.sub("", text).upper()
    if _MAC.match(mac):
        return mac
    upper = text.upper()
    return upper if upper.startswith("SN-") else f"SN-{upper}"


# --- listing and cleanup -------------------------------------------------------------------------

@dataclass(frozen=True)
class LogFile:
    log_type: str
    device_id: str
    name: str
    relpath: str  # inside the area: <LogType>/<device id>/<name>
    size: int
    mtime: float

    def as_dict(self) -> dict[str, object]:
        return {"Type": self.log_type, "DeviceId": self.device_id, "FileName": self.name,
                "Path": f"Logs/Client/{self.relpath}", "Size": self.size, "LastWriteTime": _iso(self.mtime)}


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def list_logs(store: FileStore, *, log_type: str | None = None, device: str | None = None) -> list[LogFile]:
    """Device logs, sorted by type, device and name; filters are case-insensitive."""
    wanted_type = log_type.lower() if log_type else None
    wanted_device = device_filter(device) if device else None
    found = []
    for entry in store.list_named(CLIENT_AREA):
        parts = entry.relpath.split("/")
        if len(parts) != 3:
            continue  # not something the upload endpoint wrote
        kind, dev, name = parts
        if wanted_type and kind.lower() != wanted_type:
            continue
        if wanted_device and dev.upper() != wanted_device:
            continue
        found.append(LogFile(kind, dev, name, entry.relpath, entry.size, entry.mtime))
    found.sort(key=lambda f: (f.log_type.lower(), f.device_id, f.name))
    return found


@dataclass
class CleanupReport:
    days_back: int
    cutoff: float
    removed: list[dict[str, object]]

    @property
    def bytes_freed(self) -> int:
        return sum(int(item["Size"]) for item in self.removed)  # type: ignore[call-overload]

    def as_dict(self) -> dict[str, object]:
        return {"DaysBack": self.days_back, "Cutoff": _iso(self.cutoff), "FilesRemoved": len(self.removed),
                "BytesFreed": self.bytes_freed, "Removed": self.removed}


AUDITED_PATHS = 100


def cleanup(store: FileStore, days_back: int, *, now: float | None = None,
            areas: tuple[str, ...] = CLEANUP_AREAS) -> CleanupReport:
    """Delete log files last written more than ``days_back`` days ago (device logs and audit logs).

    Files still being written are never touched: a file written to within the window is younger
    than the cutoff, and temp files of uploads in flight are not listed.
    """
    if days_back < 0:
        raise DevupdateError("days back must be 0 or more", code="bad-value")
    cutoff = (time.time() if now is None else now) - days_back * 86400
    removed: list[dict[str, object]] = []
    for area in areas:
        if area not in store.areas:
            continue
        shown = "Logs/Client" if area == CLIENT_AREA else "Logs/Server/Audit"
        for entry in store.list_named(area):
            if entry.mtime < cutoff and store.delete_named(area, entry.relpath):
                removed.append({"Area": area, "Path": f"{shown}/{entry.relpath}", "Size": entry.size,
                                "LastWriteTime": _iso(entry.mtime)})
    return CleanupReport(days_back, cutoff, removed)


def cleanup_now(store: FileStore, days_back: int | None = None, *, actor: str) -> CleanupReport:
    """``logs cleanup`` (Clear-CsDeviceUpdateLog) from the CLI or the API: ``days_back`` defaults to
    LogCleanUpInterval. A run that removed files is audited as ``logs.cleanup`` (as ``files.cleanup``
    is): the counts and the first ``AUDITED_PATHS`` paths, so the row stays small however many went."""
    from devupdate import configuration
    from devupdate.audit.trail import record
    from devupdate.db import write_transaction

    if days_back is None:
        days_back = configuration.whole(configuration.effective(), "LogCleanUpInterval")
    report = cleanup(store, days_back)
    if report.removed:
        paths = [str(item["Path"]) for item in report.removed]
        with write_transaction():
            record(actor, "logs.cleanup", "logs", after={
                "DaysBack": report.days_back, "Cutoff": _iso(report.cutoff), "FilesRemoved": len(paths),
                "BytesFreed": report.bytes_freed, "Paths": paths[:AUDITED_PATHS],
                "PathsNotListed": max(0, len(paths) - AUDITED_PATHS)})
    return report


# --- configuration, cached per worker ------------------------------------------------------------

class ConfigCache:
    """``configuration.effective()`` re-read at most every ``ttl`` seconds (per process)."""

    def __init__(self, ttl: float = 5.0):
        self.ttl = ttl
        self._value: dict[str, object] | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def get(self) -> dict[str, object]:
        now = time.monotonic()
        value = self._value
        if value is not None and now - self._at < self.ttl:
            return value
        with self._lock:
            if self._value is not None and time.monotonic() - self._at < self.ttl:
                return self._value
            from devupdate import configuration, db

            db.database.connect(reuse_if_open=True)
            try:
                self._value = configuration.effective()
                self._at = time.monotonic()
            except Exception:
                if self._value is None:
                    raise
                self._at = time.monotonic() - self.ttl + 1  # database hiccup: keep the last values, retry soon
            return self._value


config_cache = ConfigCache()
