"""The request audit log (device-protocol.md §7): one CSV row per update check, answered or refused.

Files live in the filestore area ``logs/audit`` (the original's ``Logs/Server/Audit``) as
``imageUpdates/RequestHandlerAuditLog_<server>_<YYYYMMDD>.log``, rolling over to
``…_<YYYYMMDD>_<n>.log`` once a file passes ``MaxLogFileSize``.

How rows stay whole and are never lost:

- each worker process keeps one ``O_APPEND`` descriptor open per current file and writes every
  row with a single ``os.write`` — the kernel appends it atomically at the end of the file, so
  rows from several processes never interleave, and a row is in the page cache (it survives a
  ``kill -9`` of the process) before the device gets its answer;
- a daemon thread ``fsync``s every ``LogFlushInterval`` minutes, or as soon as
  ``MaxLogCacheLimit`` bytes were written since the last sync, and at clean shutdown — never on
  the request path;
- a new file is created with its header already in it (temp file + ``link``), so no process can
  ever append a row above the header.

The file is opened in spreadsheets, so no cell may run there: a value starting with ``= + - @``
gets a leading ``'`` (tab and CR are blanked like every control character), and the check refuses
``#`` and ``;`` in module fields, which would forge a module in the Modules cell.

The filestore's quota ledger is brought up to date (``rescan`` of the area) at every sync; a
process that finds the area over quota drops rows (counted, and logged once per sync) rather
than fill the disk.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from devupdate.content.areas import LOGS_AUDIT
from devupdate.jobs import PeriodicJob, Retry

log = logging.getLogger("devupdate.requestlog")

AREA = LOGS_AUDIT
DIRECTORY = "imageUpdates"
PREFIX = "RequestHandlerAuditLog"
COLUMNS = ("Logging DateTime", "User Host Address", "Device Type", "Mac Address", "Serial Number", "Vendor",
           "Model", "Revision", "Locale", "Request Modules", "Response Modules", "User ID", "Result")
HEADER = (",".join(COLUMNS) + "\r\n").encode()
_UNSAFE_SERVER = re.compile(r"[^A-Za-z0-9_.-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FILE_NAME = re.compile(rf"^{PREFIX}_(?P<server>.+)_(?P<day>[0-9]{{8}})(?:_(?P<n>[0-9]+))?\.log$")


# --- rows (pure) ------------------------------------------------------------------------------------

class AuditRow(NamedTuple):
    """One update check as the audit log records it; blank strings for what is unknown. (A named
    tuple: built and joined once per check, it costs a fraction of a frozen dataclass.)"""

    address: str = ""
    device_type: str = ""
    mac: str = ""
    serial: str = ""
    vendor: str = ""
    model: str = ""
    revision: str = ""
    locale: str = ""
    request_modules: str = ""
    response_modules: str = ""
    user_id: str = ""
    result: str = ""


#: a cell a spreadsheet would evaluate: it starts (after blanks) with one of these (OWASP CSV injection)
_FORMULA_START = frozenset("=+-@")


def cell(value: str) -> str:
    """A CSV cell: control characters (tab, CR, …) become spaces, so a row is always one line; a
    value that would start a formula (``= + - @``, also after blanks) gets a leading ``'`` so a
    spreadsheet shows it as text instead of running it; quoted when needed."""
    if not value:
        return ""
    if _CONTROL.search(value):
        value = _CONTROL.sub(" ", value)
    if value.lstrip(" ")[:1] in _FORMULA_START:
        value = "'" + value
    if "," in value or '"' in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def request_modules(modules: Iterable) -> str:
    """``FileName;Version;TimeStamp`` per module, joined by ``#``."""
    return "#".join(f"{m.file_name};{m.version};{m.timestamp}" for m in modules)


def response_modules(files: Iterable) -> str:
    """``FileName;SignatureFileName;Version;TimeStamp`` per offered file, joined by ``#``."""
    return "#".join(f"{f.file_name};{f.signature_file_name or ''};{f.version};{f.timestamp}" for f in files)


_second: tuple[int, str] = (-1, "")  # (whole second, its formatted prefix): one gmtime per second, not per row


def format_time(now: float) -> str:
    """``2026-11-21T08:59:58.123Z`` (UTC, milliseconds)."""
    global _second
    whole = int(now)
    cached = _second  # one read of an immutable pair: safe across threads
    if cached[0] != whole:
        t = time.gmtime(whole)
        cached = (whole, f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
                         f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.")
        _second = cached
    return f"{cached[1]}{int(now * 1000) % 1000:03d}Z"


_PLAIN = re.compile(r'[\x00-\x1f\x7f"]')
_CELL_START = re.compile(r",[ =+\-@]")  # a cell that may start a formula (two cheap scans beat one alternation)
_FIRST_START = frozenset(" =+-@")


def format_row(row: AuditRow, now: float) -> bytes:
    line = ",".join(row)
    if (line.count(",") != 11 or _PLAIN.search(line) or line[:1] in _FIRST_START
            or _CELL_START.search(line)):  # some cell needs quoting, cleaning or neutralising
        line = ",".join(cell(value) for value in row)
    return f"{format_time(now)},{line}\r\n".encode("utf-8", "replace")


def safe_server_name(name: str) -> str:
    return _UNSAFE_SERVER.sub("-", name).strip("-.") or "server"


def file_relpath(server: str, day: str, n: int = 0) -> str:
    """Relative path in the ``logs/audit`` area of the ``n``-th file of ``day`` (YYYYMMDD)."""
    suffix = f"_{n}" if n else ""
    return f"{DIRECTORY}/{PREFIX}_{server}_{day}{suffix}.log"


def parse_file_name(name: str) -> tuple[str, str, int] | None:
    """``(server, YYYYMMDD, n)`` of an audit log file name, ``None`` for anything else."""
    match = _FILE_NAME.match(name)
    if not match:
        return None
    return match.group("server"), match.group("day"), int(match.group("n") or 0)


def _day(now: float) -> tuple[str, float]:
    """``YYYYMMDD`` of ``now`` (UTC) and the POSIX time the day ends."""
    t = time.gmtime(now)
    start = now - (t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec) - (now % 1)
    return f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}", start + 86400


# --- the writer -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogLimits:
    max_file_size: int = 1_024_000
    cache_limit: int = 512_000
    flush_seconds: float = 300.0


def limits_from_configuration(values: dict) -> LogLimits:
    return LogLimits(int(values["MaxLogFileSize"]), int(values["MaxLogCacheLimit"]),
                     float(values["LogFlushInterval"]) * 60)


class RequestLog:
    """One per worker process. ``write`` is the hot path: a lock, one ``fstat``, one ``write``."""

    CONFIG_REFRESH_SECONDS = 15.0

    def __init__(self, store, server_name: str, *, limits: LogLimits | None = None,
                 load_limits: Callable[[], LogLimits] | None = None, clock: Callable[[], float] = time.time):
        self.store = store
        self.server = safe_server_name(server_name)
        self.directory = str(store.named_path(AREA, f"{DIRECTORY}/x").parent)
        self.load_limits = load_limits
        self.limits = limits or (load_limits() if load_limits else LogLimits())
        self.clock = clock
        self.rows = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._fd = -1
        self._relpath = ""
        self._day = ""
        self._day_end = 0.0
        self._index = 0
        self._unsynced = 0
        self._since_check = 0
        self._retired: list[tuple[int, float]] = []  # (fd, when it was replaced)
        self._room: int | None = None
        self._room_checked = 0.0
        self._job: PeriodicJob | None = None
        self._next_sync = 0.0
        self._next_config = 0.0
        self._closed = False
        self._config_retry = Retry("request audit log: reading the configuration", first=self.CONFIG_REFRESH_SECONDS,
                                   maximum=self.CONFIG_REFRESH_SECONDS, logger=log)
        self._refresh_room()

    # hot path ----------------------------------------------------------------------------------

    def write(self, row: AuditRow) -> None:
        """Append one row; never raises (an audit problem must not turn a check into a 500).

        No lock is held across the ``write`` system call: a thread that releases the GIL for a
        syscall may wait milliseconds to get it back, and every other request thread would queue
        behind it. ``O_APPEND`` makes concurrent writes safe on their own; only switching files
        (new day, roll-over, checked every ``max_file_size / 64`` bytes) takes the lock."""
        now = self.clock()
        data = format_row(row, now)
        size = len(data)
        try:
            fd = self._fd
            if fd < 0 or now >= self._day_end or self._since_check >= self._check_every:
                fd = self._switch(now)
            if self._room is not None and not self._has_room(size):
                self.dropped += 1
                return
            written = os.write(fd, data)
            while written < size:  # only on a full disk or a signal: finish rather than tear the row
                written += os.write(fd, data[written:])
        except Exception:  # noqa: BLE001 - logged, counted; the device still gets its answer
            self.dropped += 1
            log.exception("request audit log: could not write a row")
            return
        self.rows += 1
        self._since_check += size
        self._unsynced += size
        if self._room is not None:
            self._room -= size
        if self._unsynced >= self.limits.cache_limit and self._job is not None:
            self._job.wake()

    def _switch(self, now: float) -> int:
        """Under the lock: open today's file, or roll over if the current one passed the limit."""
        with self._lock:
            if self._closed:
                raise RuntimeError("request audit log is closed")
            if self._fd < 0 or now >= self._day_end:
                day, self._day_end = _day(now)
                if day != self._day:
                    self._day, self._index = day, 0
                self._open()
            elif self._since_check >= self._check_every:
                if os.fstat(self._fd).st_size >= self.limits.max_file_size:
                    self._index += 1
                    self._open()
            self._since_check = 0
            return self._fd

    @property
    def _check_every(self) -> int:
        return self.limits.max_file_size // 64

    def _has_room(self, size: int) -> bool:
        if self._room is not None and self._room < size:
            if time.monotonic() - self._room_checked > 1.0:
                self._refresh_room()
            return self._room is None or self._room >= size
        return True

    # files -------------------------------------------------------------------------------------

    def _open(self) -> None:
        """Open the first file of the current day that has not passed the size limit."""
        if self._fd >= 0:
            self._retired.append((self._fd, time.monotonic()))
            self._fd = -1
            if self._job is not None:
                self._job.wake()
        os.makedirs(self.directory, exist_ok=True)
        while True:
            relpath = file_relpath(self.server, self._day, self._index)
            path = os.path.join(self.directory, relpath.rsplit("/", 1)[1])
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                self._create(path)
                size = len(HEADER)
            if size >= self.limits.max_file_size:
                self._index += 1
                continue
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            self._relpath = relpath
            return

    def _create(self, path: str) -> None:
        """Make ``path`` appear with its header in it, or not at all (another process won)."""
        if not self._has_room(len(HEADER)):
            raise OSError(errno.EDQUOT, f"filestore area {AREA} is over its quota")
        temp = os.path.join(self.directory, f".{PREFIX}.tmp-{os.getpid()}-{secrets.token_hex(6)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, HEADER)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)
            if self._room is not None:
                self._room -= len(HEADER)
        except FileExistsError:
            pass
        finally:
            os.unlink(temp)
        try:
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass

    @property
    def current_relpath(self) -> str:
        return self._relpath

    # syncing (background thread, and at shutdown) ----------------------------------------------

    #: a replaced descriptor stays open this long, so a thread that read it just before the switch
    #: can still finish its write (into the old file) and never hits a closed or reused number
    RETIRE_SECONDS = 10.0

    def sync(self) -> None:
        """fsync what was written, close long-replaced files, update the quota ledger."""
        with self._lock:
            fd = self._fd
            self._unsynced = 0
            now = time.monotonic()
            retired = [item for item in self._retired if now - item[1] >= self.RETIRE_SECONDS]
            self._retired = [item for item in self._retired if now - item[1] < self.RETIRE_SECONDS]
            recent = [old for old, _ in self._retired]
        for old in [fd, *recent]:
            if old >= 0:
                try:
                    os.fsync(old)
                except OSError as exc:
                    if not self._closed:
                        log.error("request audit log: fsync failed: %s", exc)
        for old, _ in retired:
            try:
                os.fsync(old)
            except OSError:
                log.exception("request audit log: fsync failed")
            finally:
                os.close(old)
        try:
            self.store.rescan(AREA)
        except Exception:  # noqa: BLE001
            log.exception("request audit log: quota ledger rescan failed")
        self._refresh_room()
        if self.dropped:
            log.error("request audit log: %d row(s) dropped so far (area %s over quota or unwritable)",
                      self.dropped, AREA)

    def _refresh_room(self) -> None:
        self._room_checked = time.monotonic()
        try:
            usage = self.store.usage(AREA)
        except Exception:  # noqa: BLE001
            self._room = None
            return
        self._room = None if usage.quota_bytes is None else usage.quota_bytes - usage.used_bytes

    def start(self) -> None:
        """Sync every ``flush_seconds``, and early once ``cache_limit`` bytes are unsynced."""
        if self._job is None:
            now = time.monotonic()
            self._next_sync = now + self.limits.flush_seconds
            self._next_config = now + self.CONFIG_REFRESH_SECONDS
            self._job = PeriodicJob("requestlog-sync", self._step, self.limits.flush_seconds,
                                    first_delay=min(self.limits.flush_seconds, self.CONFIG_REFRESH_SECONDS))
            self._job.start()

    def _step(self) -> float:
        """One wake-up: refresh the limits when due, sync when due or over the cache limit."""
        now = time.monotonic()
        if self.load_limits is not None and now >= self._next_config:
            self._next_config = now + self.CONFIG_REFRESH_SECONDS
            try:
                self.limits = self.load_limits()
                self._config_retry.succeeded()
            except Exception as exc:  # noqa: BLE001 - keep the last good limits; logged once per outage
                self._config_retry.failed(exc)
            self._next_sync = min(self._next_sync, now + self.limits.flush_seconds)
        if now >= self._next_sync or self._unsynced >= self.limits.cache_limit:
            self.sync()
            self._next_sync = time.monotonic() + self.limits.flush_seconds
        return max(0.05, min(self._next_sync, self._next_config) - time.monotonic())

    def close(self) -> None:
        """Clean shutdown: stop the thread, fsync, close. Idempotent."""
        if self._closed:
            return
        if self._job is not None:
            self._job.stop(wait=5)
        with self._lock:
            self._closed = True
            fd, self._fd = self._fd, -1
            self._day_end = 0.0
            retired, self._retired = [old for old, _ in self._retired], []
        for old in [*retired, fd]:
            if old >= 0:
                try:
                    os.fsync(old)
                except OSError:
                    pass
                os.close(old)


def list_files(store) -> list:
    """Every audit log file (filestore ``NamedEntry``), oldest day first."""
    return [entry for entry in store.list_named(AREA, f"{DIRECTORY}/")
            if parse_file_name(entry.relpath.rsplit("/", 1)[-1])]
