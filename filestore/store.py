"""The quota-managed file store: content-addressed objects and named files in areas.

Layout under ``root``::

    <area>/<sha[:2]>/<sha256>     content-addressed objects (images)
    <area>/<relpath>              named files (device logs, audit logs)
    <area>/.tmp-<pid>-<random>    writers in flight (same filesystem: rename is atomic)
    .filestore/<area>.ledger      usage ledger + lock (see ledger.py)

Every write goes temp file -> fsync -> rename -> fsync directory, so readers
never see half a file and a crash leaves at worst a temp file. A writer holds
an ``flock`` on its temp file for its whole life; a temp file whose lock can be
taken belongs to a dead writer and is removed (at start, on ``rescan`` and
before refusing a write for quota), together with its reservation.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import os
import queue
import secrets
import stat
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import quote

from .errors import FileStoreError, ObjectNotFound, QuotaExceeded, TooLarge, UnknownArea
from .ledger import Held, Ledger, LedgerState
from .paths import (
    TEMP_PREFIX,
    check_area_name,
    check_contained,
    check_sha256,
    is_sha256,
    split_relpath,
)

CHUNK = 1 << 20  #: read/hash/write unit
RESERVE_STEP = 8 << 20  #: quota is reserved this much at a time, so locks stay off the per-chunk path
_META_DIR = ".filestore"
_MAX_SUFFIX = 100_000

Progress = Callable[[int], None]


class Readable(Protocol):
    """A stream the store reads: ``read(n)`` (a binary file, a request body); ``readinto`` is used
    when the stream has one."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class AreaConfig:
    """Limits of one area. ``quota_bytes=None`` means unlimited."""

    quota_bytes: int | None = None
    warn_fraction: float = 0.8

    def __post_init__(self) -> None:
        if self.quota_bytes is not None and (
            isinstance(self.quota_bytes, bool) or not isinstance(self.quota_bytes, int)
            or self.quota_bytes < 0
        ):
            raise ValueError(f"quota_bytes must be a non-negative int or None, not {self.quota_bytes!r}")
        if not 0.0 < float(self.warn_fraction) <= 1.0:
            raise ValueError(f"warn_fraction must be in (0, 1], not {self.warn_fraction!r}")


@dataclass(frozen=True)
class StoredObject:
    """A content-addressed object; ``created`` is False when it was already stored."""

    sha256: str
    sha1: str
    size: int
    created: bool


@dataclass(frozen=True)
class AreaUsage:
    """Usage of one area. ``used_bytes`` includes writes in flight; ``objects``
    counts every stored file (objects and named files)."""

    area: str
    used_bytes: int
    quota_bytes: int | None
    warn_fraction: float
    objects: int
    warning: bool
    full: bool


@dataclass(frozen=True)
class NamedEntry:
    relpath: str
    size: int
    mtime: float


@dataclass(frozen=True)
class VerifyProblem:
    area: str
    sha256: str
    problem: str


@dataclass
class _Area:
    name: str
    config: AreaConfig
    dir: str  # <root>/<name>, as configured
    real: str  # its realpath: names must resolve inside it
    ledger: Ledger


def _write_all(fd: int, data: memoryview | bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _suffixed(name: str, n: int) -> str:
    stem, ext = os.path.splitext(name)
    return f"{stem}_{n}{ext}"


class _Temp:
    """A temp file being written or staged; owns its descriptor and its flock."""

    def __init__(self, area: _Area, name: str, fd: int) -> None:
        self.area = area
        self.name = name
        self.path = os.path.join(area.dir, name)
        self.fd: int | None = fd
        self.reserved = 0
        self.size = 0
        self.sha256 = ""
        self.sha1 = ""
        self._sync: threading.Thread | None = None
        self._sync_errors: list[OSError] = []

    def sync_in_background(self) -> None:
        """Start the fsync of the written bytes on another thread (it releases the GIL): the writer
        goes on with its next object while the disk catches up; :meth:`synced` waits for it."""
        fd, errors = self.fd, self._sync_errors
        assert fd is not None and self._sync is None

        def run() -> None:  # holds no reference to the temp, so dropping one never waits here
            try:
                os.fsync(fd)
            except OSError as exc:
                errors.append(exc)

        self._sync = threading.Thread(target=run, daemon=True, name="filestore-fsync")
        self._sync.start()

    def synced(self) -> None:
        """Wait for a background fsync; re-raise its failure."""
        if self._sync is not None:
            self._sync.join()
            self._sync = None
        if self._sync_errors:
            raise self._sync_errors[0]

    def close(self) -> None:
        if self._sync is not None:  # never close a descriptor another thread still syncs
            self._sync.join()
            self._sync = None
        if self.fd is not None:
            os.close(self.fd)  # releases the flock
            self.fd = None

    def discard(self) -> None:
        """Remove the temp file and release its reservation; safe to call twice."""
        if self.fd is None:
            return
        with suppress(FileNotFoundError):
            os.unlink(self.path)
        with self.area.ledger.locked() as held:
            held.state.reservations.pop(self.name, None)
        self.close()

    def __del__(self) -> None:
        # No lock round-trip here (GC may run while this thread holds the area
        # lock): closing releases the flock, so the next sweep reclaims the file.
        if getattr(self, "fd", None) is not None:
            warnings.warn(f"staged file {self.path} was neither committed nor discarded",
                          ResourceWarning, stacklevel=1)
            self.close()


class Staged:
    """An object written to a temp file but not yet visible; its fsync runs in the background and
    :meth:`commit` waits for it.

    Lets an importer write every member of a package first and publish them
    only when all checks passed. The bytes count against the area quota until
    :meth:`commit` or :meth:`discard`. As a context manager it discards on exit
    unless committed.
    """

    def __init__(self, store: FileStore, temp: _Temp) -> None:
        self._store = store
        self._temp = temp
        self._result: StoredObject | None = None

    @property
    def area(self) -> str:
        return self._temp.area.name

    @property
    def sha256(self) -> str:
        return self._temp.sha256

    @property
    def sha1(self) -> str:
        return self._temp.sha1

    @property
    def size(self) -> int:
        return self._temp.size

    def commit(self) -> StoredObject:
        """Rename into place (atomic) and fsync the directory; idempotent."""
        if self._result is None:
            if self._temp.fd is None:
                raise FileStoreError("staged object was discarded; stage it again")
            self._result = self._store._commit_object(self._temp)
        return self._result

    def discard(self) -> None:
        """Drop the temp file and its reservation; a no-op after commit."""
        self._temp.discard()

    def open(self) -> BinaryIO:
        """Read back the staged bytes (e.g. a catalog checked before anything is committed)."""
        if self._result is not None:
            return self._store.open(self.area, self.sha256)
        if self._temp.fd is None:
            raise FileStoreError("staged object was discarded; stage it again")
        return open(self._temp.path, "rb")  # noqa: SIM115 - the caller closes it

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._result is None:
            self.discard()


class FileStore:
    """Quota-managed store rooted at ``root``; safe to use from many processes at once.

    Creating it makes the directories and removes temp files left by crashed
    writers (never those of writers still alive in other processes).
    """

    def __init__(self, root: Path | str, areas: dict[str, AreaConfig]) -> None:
        self.root = Path(root)
        meta = self.root / _META_DIR
        os.makedirs(meta, exist_ok=True)
        names = [check_area_name(a) for a in areas]
        for a in names:
            for b in names:
                if a != b and b.startswith(a + "/"):
                    raise ValueError(f"areas {a!r} and {b!r} overlap; areas may not contain each other")
        self._areas: dict[str, _Area] = {}
        for name, config in zip(names, areas.values(), strict=True):
            if not isinstance(config, AreaConfig):
                raise TypeError(f"area {name!r}: expected AreaConfig, not {type(config).__name__}")
            directory = str(self.root / name)
            os.makedirs(directory, exist_ok=True)
            ledger = Ledger(str(meta / (quote(name, safe="") + ".ledger")), functools.partial(self._rebuild_area, name))
            self._areas[name] = _Area(name, config, directory, os.path.realpath(directory), ledger)
        self.remove_orphans()

    # ------------------------------------------------------------------ areas

    @property
    def areas(self) -> list[str]:
        return list(self._areas)

    def _area(self, name: str) -> _Area:
        area = self._areas.get(name)
        if area is None:
            check_area_name(name)  # unsafe names get UnsafePath, not UnknownArea
            raise UnknownArea(f"unknown area {name!r}; configured areas: {', '.join(self._areas)}")
        return area

    def usage(self, area: str) -> AreaUsage:
        """Usage from the ledger: one shared lock and a small read, no walk."""
        a = self._area(area)
        with a.ledger.locked(exclusive=False) as held:
            st = held.state
            used, files = st.total, st.files
        quota = a.config.quota_bytes
        return AreaUsage(
            area=a.name, used_bytes=used, quota_bytes=quota,
            warn_fraction=a.config.warn_fraction, objects=files,
            warning=quota is not None and used >= quota * a.config.warn_fraction,
            full=quota is not None and used >= quota,
        )

    def usage_all(self) -> list[AreaUsage]:
        return [self.usage(name) for name in self._areas]

    def remove_orphans(self, area: str | None = None) -> int:
        """Remove temp files of dead writers and their reservations; returns how many."""
        total = 0
        for a in self._select(area):
            with a.ledger.locked() as held:
                total += self._sweep(a, held)
        return total

    def rescan(self, area: str | None = None) -> list[AreaUsage]:
        """Recount usage from the disk (after an unclean shutdown or manual changes)."""
        for a in self._select(area):
            with a.ledger.locked() as held:
                self._sweep(a, held)
                held.state.used, held.state.files = self._scan(a)
        return [self.usage(a.name) for a in self._select(area)]

    def _select(self, area: str | None) -> list[_Area]:
        return list(self._areas.values()) if area is None else [self._area(area)]

    def _scan(self, a: _Area) -> tuple[int, int]:
        """Bytes and count of stored regular files (temp files are not stored files)."""
        used = files = 0
        stack = [(a.dir, True)]
        while stack:
            directory, top = stack.pop()
            try:
                it = os.scandir(directory)
            except FileNotFoundError:
                continue
            with it:
                for entry in it:
                    if top and entry.name.startswith(TEMP_PREFIX):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, False))
                    elif entry.is_file(follow_symlinks=False):
                        try:
                            used += entry.stat(follow_symlinks=False).st_size
                            files += 1
                        except FileNotFoundError:
                            pass
        return used, files

    def _sweep(self, a: _Area, held: Held, adopt: bool = False) -> int:
        """Under the area lock: delete dead writers' temps, drop stale reservations.

        A temp file whose flock can be taken has no live writer. ``adopt``
        (when rebuilding a lost ledger) records live writers' temps at their
        current size. A stale reservation caught mid-commit means the rename
        may or may not have happened, so the area is recounted.
        """
        st = held.state
        live: dict[str, int] = {}
        removed = 0
        try:
            it = os.scandir(a.dir)
        except FileNotFoundError:
            return 0
        with it:
            temps = [e for e in it if e.name.startswith(TEMP_PREFIX)
                     and e.is_file(follow_symlinks=False)]
        for entry in temps:
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    live[entry.name] = os.fstat(fd).st_size
                    continue
                os.unlink(entry.path)  # under our flock: a writer racing to lock it will see nlink 0
                removed += 1
            finally:
                os.close(fd)
        recount = False
        for name in list(st.reservations):
            if name not in live:
                _, committing = st.reservations.pop(name)
                recount = recount or bool(committing)
        if adopt:
            for name, size in live.items():
                st.reservations.setdefault(name, [size, 0])
        if recount:
            st.used, st.files = self._scan(a)
        return removed

    def _rebuild_area(self, name: str) -> LedgerState:
        return self._rebuild(self._areas[name])

    def _rebuild(self, a: _Area) -> LedgerState:
        state = LedgerState()
        self._sweep(a, Held(-1, state, b""), adopt=True)
        state.used, state.files = self._scan(a)
        return state

    # ------------------------------------------------------------ writing

    def _check_quota(self, a: _Area, held: Held, mine: int, need: int, attempted: int) -> int:
        """Bytes this writer may hold at most (None quota: unlimited); raises if < need."""
        quota = a.config.quota_bytes
        if quota is None:
            return 1 << 62  # effectively unlimited
        others = held.state.total - mine
        if others + need > quota:
            self._sweep(a, held)  # a dead writer may be holding the space
            others = held.state.total - mine
            if others + need > quota:
                raise QuotaExceeded(a.name, quota, others, attempted)
        return quota - others

    def _reserve(self, t: _Temp, need: int, want: int, attempted: int) -> None:
        a = t.area
        with a.ledger.locked() as held:
            mine = held.state.reservations.get(t.name, [0, 0])[0]
            room = self._check_quota(a, held, mine, need, attempted)
            # Near a full quota take only what this chunk needs, so concurrent
            # writers are not refused for space this one may never use.
            grant = want if want <= room else need
            held.state.reservations[t.name] = [grant, 0]
            t.reserved = grant

    def _open_temp(self, a: _Area) -> _Temp:
        while True:
            name = f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
            path = os.path.join(a.dir, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_nlink:
                    return _Temp(a, name, fd)
                # a sweep took it between create and lock: try another name
            except BaseException:
                os.close(fd)
                with suppress(FileNotFoundError):
                    os.unlink(path)
                raise
            os.close(fd)

    def _receive(self, a: _Area, stream: Readable, *, size: int | None, progress: Progress | None,
                 hashing: bool, max_size: int | None = None, relpath: str = "",
                 background_sync: bool = False) -> _Temp:
        """Stream into a temp file, reserving quota as bytes arrive; fsynced before returning, or
        with ``background_sync`` on another thread (``_Temp.synced`` waits for it)."""
        if size is not None:
            if size < 0:
                raise ValueError(f"size must be >= 0, not {size}")
            if max_size is not None and size > max_size:
                raise TooLarge(a.name, relpath, max_size)
            if a.config.quota_bytes is not None:
                with a.ledger.locked() as held:  # refuse before creating anything
                    self._check_quota(a, held, 0, size, size)
        t = self._open_temp(a)
        pipe: _Pipeline | None = None
        try:
            if size:
                self._reserve(t, size, size, size)
            fd = t.fd
            assert fd is not None
            h256 = hashlib.sha256() if hashing else None
            h1 = hashlib.sha1(usedforsecurity=False) if hashing else None
            sinks: list[Callable[[memoryview | bytes], object]] = [partial(_write_all, fd)]
            if h256 is not None and h1 is not None:
                sinks += [h256.update, h1.update]
            views = [memoryview(bytearray(CHUNK)), memoryview(bytearray(CHUNK))]
            readinto = getattr(stream, "readinto", None)
            written = chunks = 0
            while True:
                chunk = _read_chunk(stream, readinto, views[chunks & 1])
                chunks += 1
                n = len(chunk)
                if pipe is not None:
                    pipe.wait()  # the previous chunk (in the other buffer) is done
                    if progress is not None:
                        progress(written)
                if not n:
                    break
                if max_size is not None and written + n > max_size:
                    raise TooLarge(a.name, relpath, max_size)
                if written + n > t.reserved:
                    self._reserve(t, written + n, max(written + n, t.reserved + RESERVE_STEP),
                                  written + n)
                if pipe is None and n == CHUNK:
                    pipe = _Pipeline(sinks)  # more is likely coming: go parallel
                if pipe is not None:
                    pipe.submit(chunk)
                    written += n
                else:
                    for sink in sinks:
                        sink(chunk)
                    written += n
                    if progress is not None:
                        progress(written)
            if pipe is not None:
                pipe.close()
                pipe = None
            if background_sync:
                t.sync_in_background()
            else:
                os.fsync(fd)
            t.size = written
            if h256 is not None and h1 is not None:
                t.sha256, t.sha1 = h256.hexdigest(), h1.hexdigest()
        except BaseException:
            if pipe is not None:
                with suppress(BaseException):  # the first error is the one to report
                    pipe.close()  # no write may still be running when the temp goes
            t.discard()
            raise
        return t

    def stage(self, area: str, stream: Readable, *, size: int | None = None,
              progress: Progress | None = None) -> Staged:
        """Write an object without publishing it (fsynced by :meth:`Staged.commit` at the latest);
        see :class:`Staged`."""
        a = self._area(area)
        t = self._receive(a, stream, size=size, progress=progress, hashing=True, background_sync=True)
        if t.reserved != t.size:
            try:
                with a.ledger.locked() as held:  # hold exactly what is on disk
                    held.state.reservations[t.name] = [t.size, 0]
                    t.reserved = t.size
            except BaseException:
                t.discard()
                raise
        return Staged(self, t)

    def put(self, area: str, stream: Readable, *, size: int | None = None,
            progress: Progress | None = None) -> StoredObject:
        """Store a stream content-addressed (SHA-256); ``size`` is a hint for early refusal.

        Raises QuotaExceeded before writing when ``size`` would not fit, or as
        soon as the streamed bytes would pass the quota; nothing is left behind.
        """
        a = self._area(area)
        t = self._receive(a, stream, size=size, progress=progress, hashing=True)
        return self._commit_object(t)

    def _commit_object(self, t: _Temp) -> StoredObject:
        try:
            t.synced()  # the bytes are on disk before the name is
        except BaseException:
            t.discard()
            raise
        a, sha = t.area, t.sha256
        prefix = os.path.join(a.dir, sha[:2])
        target = os.path.join(prefix, sha)
        created = renamed = new_dir = False
        try:
            check_contained(a.real, target, f"{a.name}/{sha[:2]}/{sha}")
            with a.ledger.locked() as held:
                st = held.state
                st.reservations[t.name] = [t.size, 1]
                held.flush()  # a crash from here on is detected and recounted
                old = _lstat(target)
                if old is not None and stat.S_ISREG(old.st_mode) and old.st_size == t.size:
                    os.unlink(t.path)  # already stored: dedupe
                else:
                    try:
                        os.mkdir(prefix)
                        new_dir = True
                    except FileExistsError:
                        pass
                    os.replace(t.path, target)
                    renamed = True
                    if old is None:
                        created = True
                        st.files += 1
                        st.used += t.size
                    else:  # a damaged copy (wrong size) is replaced by the good one
                        st.used += t.size - (old.st_size if stat.S_ISREG(old.st_mode) else 0)
                del st.reservations[t.name]
        except BaseException:
            t.discard()
            raise
        t.close()
        if renamed:
            _fsync_dir(prefix)
            if new_dir:
                _fsync_dir(a.dir)
        return StoredObject(sha256=sha, sha1=t.sha1, size=t.size, created=created)

    # ------------------------------------------------------------ objects

    def _object_path(self, a: _Area, sha256: str) -> str:
        sha = check_sha256(sha256)
        path = os.path.join(a.dir, sha[:2], sha)
        check_contained(a.real, path, f"{a.name}/{sha[:2]}/{sha}")
        return path

    def path(self, area: str, sha256: str) -> Path:
        """Where the object lives (for sendfile / X-Accel); does not check it exists."""
        return Path(self._object_path(self._area(area), sha256))

    def exists(self, area: str, sha256: str) -> bool:
        return os.path.isfile(self._object_path(self._area(area), sha256))

    def open(self, area: str, sha256: str) -> BinaryIO:
        path = self._object_path(self._area(area), sha256)
        try:
            return open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {sha256} in area {area!r}") from None

    def delete(self, area: str, sha256: str) -> bool:
        """Delete an object; False if it was not there."""
        a = self._area(area)
        return self._unlink(a, self._object_path(a, sha256), prune_dirs=False)

    def objects(self, area: str) -> Iterator[str]:
        """SHA-256 of every object in the area, in order."""
        a = self._area(area)
        try:
            prefixes = sorted(e.name for e in os.scandir(a.dir) if len(e.name) == 2
                              and e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return
        for prefix in prefixes:
            try:
                with os.scandir(os.path.join(a.dir, prefix)) as it:
                    names = sorted(e.name for e in it if e.name.startswith(prefix)
                                   and is_sha256(e.name) and e.is_file(follow_symlinks=False))
            except (FileNotFoundError, NotADirectoryError):
                continue
            yield from names

    def verify(self, area: str | None = None, progress: Progress | None = None) -> list[VerifyProblem]:
        """Re-hash every object; report those whose content does not match their name.

        ``progress`` gets the number of bytes hashed so far.
        """
        problems: list[VerifyProblem] = []
        done = 0
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        for a in self._select(area):
            for sha in self.objects(a.name):
                h = hashlib.sha256()
                try:
                    with open(os.path.join(a.dir, sha[:2], sha), "rb", buffering=0) as f:
                        while n := f.readinto(view):
                            h.update(view[:n])
                            done += n
                            if progress is not None:
                                progress(done)
                except OSError as exc:
                    problems.append(VerifyProblem(a.name, sha, f"unreadable: {exc}"))
                    continue
                actual = h.hexdigest()
                if actual != sha:
                    problems.append(VerifyProblem(a.name, sha, f"hash mismatch: content is {actual}"))
        return problems

    # -------------------------------------------------------- named files

    def _named(self, a: _Area, relpath: str) -> tuple[tuple[str, ...], str]:
        parts = split_relpath(relpath)
        path = os.path.join(a.dir, *parts)
        check_contained(a.real, path, relpath)
        return parts, path

    def named_path(self, area: str, relpath: str) -> Path:
        """Where a named file lives; does not check it exists."""
        return Path(self._named(self._area(area), relpath)[1])

    def write_named(self, area: str, relpath: str, stream: Readable, *, overwrite: bool = False,
                    max_size: int | None = None, size: int | None = None,
                    progress: Progress | None = None) -> str:
        """Store a stream under ``relpath``, atomically; returns the relpath used.

        Without ``overwrite`` an existing name is never replaced: ``x_1.ext``,
        ``x_2.ext``, ... is chosen with ``link()``, which fails rather than
        overwrite, so concurrent writers cannot clobber each other. More than
        ``max_size`` bytes -> TooLarge, with nothing left behind.
        """
        a = self._area(area)
        parts, _ = self._named(a, relpath)
        t = self._receive(a, stream, size=size, progress=progress, hashing=False,
                          max_size=max_size, relpath=relpath)
        made: list[str] = []
        try:
            with a.ledger.locked() as held:
                st = held.state
                st.reservations[t.name] = [t.size, 1]
                held.flush()
                parent = self._make_parents(a, parts, made)
                if overwrite:
                    used = "/".join(parts)
                    target = os.path.join(parent, parts[-1])
                    check_contained(a.real, target, used)
                    old = _lstat(target)
                    os.replace(t.path, target)
                    if old is None:
                        st.files += 1
                    st.used += t.size - (old.st_size if old and stat.S_ISREG(old.st_mode) else 0)
                else:
                    used, linked = self._link_unique(a, t.path, parent, parts)
                    if linked:
                        os.unlink(t.path)
                    st.files += 1
                    st.used += t.size
                del st.reservations[t.name]
        except BaseException:
            t.discard()
            raise
        t.close()
        _fsync_dir(parent)
        for d in made:
            _fsync_dir(os.path.dirname(d))
        return used

    def _make_parents(self, a: _Area, parts: tuple[str, ...], made: list[str]) -> str:
        path = a.dir
        for part in parts[:-1]:
            path = os.path.join(path, part)
            check_contained(a.real, path, "/".join(parts))
            try:
                os.mkdir(path)
                made.append(path)
            except FileExistsError:
                pass
        return path

    def _link_unique(self, a: _Area, src: str, parent: str,
                     parts: tuple[str, ...]) -> tuple[str, bool]:
        """Give ``src`` the first free name; True if it was hard-linked (src still exists)."""
        for n in range(_MAX_SUFFIX):
            name = parts[-1] if n == 0 else _suffixed(parts[-1], n)
            rel = "/".join((*parts[:-1], name))
            target = os.path.join(parent, name)
            check_contained(a.real, target, rel)
            try:
                os.link(src, target)
            except FileExistsError:
                continue
            except OSError as exc:  # filesystems without hard links
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                try:
                    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
                except FileExistsError:
                    continue
                os.replace(src, target)  # onto our own placeholder: still never clobbers
                return rel, False
            return rel, True
        raise FileStoreError(f"no free name for {'/'.join(parts)!r} after {_MAX_SUFFIX} tries; clean up the area")

    def append_named(self, area: str, relpath: str, data: bytes) -> None:
        """Append with one ``write`` to an ``O_APPEND`` file, so rows from many
        processes never interleave; quota-checked like every write."""
        a = self._area(area)
        parts, path = self._named(a, relpath)
        n = len(data)
        with a.ledger.locked() as held:
            st = held.state
            self._check_quota(a, held, 0, n, n)
            self._make_parents(a, parts, [])
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                st.files += 1
            except FileExistsError:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            try:
                written = os.write(fd, data)
                st.used += written
                if written < n:  # only on a full disk or a signal; finish rather than lose the tail
                    _write_all(fd, memoryview(data)[written:])
                    st.used += n - written
            finally:
                os.close(fd)

    def fsync_named(self, area: str, relpath: str) -> None:
        """Make appended data durable (appends themselves are not fsynced)."""
        path = self._named(self._area(area), relpath)[1]
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ObjectNotFound(f"no file {relpath!r} in area {area!r}") from None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def open_named(self, area: str, relpath: str) -> BinaryIO:
        path = self._named(self._area(area), relpath)[1]
        try:
            return open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no file {relpath!r} in area {area!r}") from None

    def delete_named(self, area: str, relpath: str) -> bool:
        """Delete a named file (and directories it leaves empty); False if absent."""
        a = self._area(area)
        return self._unlink(a, self._named(a, relpath)[1], prune_dirs=True)

    def list_named(self, area: str, prefix: str = "") -> list[NamedEntry]:
        """Every stored file whose relpath starts with ``prefix``, sorted by relpath."""
        a = self._area(area)
        start = a.dir
        if prefix:
            split_relpath(prefix.rstrip("/") or ".", "prefix")
            directory = prefix.rpartition("/")[0]
            if directory:
                start = self._named(a, directory)[1]
        entries: list[NamedEntry] = []
        base = len(a.dir) + 1
        stack = [start]
        while stack:
            try:
                it = os.scandir(stack.pop())
            except (FileNotFoundError, NotADirectoryError):
                continue
            with it:
                for e in it:
                    if e.name.startswith(TEMP_PREFIX):
                        continue
                    rel = e.path[base:]
                    if e.is_dir(follow_symlinks=False):
                        if rel.startswith(prefix) or prefix.startswith(rel + "/"):
                            stack.append(e.path)
                    elif e.is_file(follow_symlinks=False) and rel.startswith(prefix):
                        try:
                            s = e.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        entries.append(NamedEntry(rel, s.st_size, s.st_mtime))
        entries.sort(key=lambda e: e.relpath)
        return entries

    def _unlink(self, a: _Area, path: str, prune_dirs: bool) -> bool:
        with a.ledger.locked() as held:
            old = _lstat(path)
            if old is None or stat.S_ISDIR(old.st_mode):
                return False
            os.unlink(path)
            if stat.S_ISREG(old.st_mode):
                held.state.used = max(0, held.state.used - old.st_size)
                held.state.files = max(0, held.state.files - 1)
            if prune_dirs:  # under the lock, so no writer is between mkdir and link here
                parent = os.path.dirname(path)
                while parent != a.dir and parent.startswith(a.dir + os.sep):
                    try:
                        os.rmdir(parent)
                    except OSError:
                        break
                    parent = os.path.dirname(parent)
        return True


def _read_chunk(stream: Readable, readinto: Callable[[memoryview], int | None] | None,
                view: memoryview) -> memoryview | bytes:
    """Fill up to one chunk, so each chunk is one hash update and one write."""
    if readinto is not None:
        got = 0
        while got < CHUNK:
            n = readinto(view[got:])
            if n is None:
                raise FileStoreError("stream is non-blocking and had no data; pass a blocking stream")
            if not n:
                break
            got += n
        return view[:got]
    parts: list[bytes] = []
    got = 0
    while got < CHUNK:
        data = stream.read(CHUNK - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _Pipeline:
    """Feeds each chunk to every sink on its own thread.

    SHA-256, SHA-1 and the write of one chunk then run in parallel (hashlib
    and os.write release the GIL) while the caller reads the next chunk into
    the other buffer: this keeps a large stage close to plain-copy speed.
    """

    def __init__(self, sinks: list[Callable[[memoryview | bytes], object]]) -> None:
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._jobs: list[queue.SimpleQueue[memoryview | bytes | None]] = []
        self._threads: list[threading.Thread] = []
        self._pending = 0
        for sink in sinks:
            jobs: queue.SimpleQueue[memoryview | bytes | None] = queue.SimpleQueue()
            thread = threading.Thread(target=self._run, args=(sink, jobs), daemon=True,
                                      name="filestore-pipeline")
            thread.start()
            self._jobs.append(jobs)
            self._threads.append(thread)

    def _run(self, sink: Callable[[memoryview | bytes], object],
             jobs: queue.SimpleQueue[memoryview | bytes | None]) -> None:
        while (chunk := jobs.get()) is not None:
            try:
                sink(chunk)
                self._done.put(None)
            except BaseException as exc:  # handed to the caller's thread
                self._done.put(exc)

    def submit(self, chunk: memoryview | bytes) -> None:
        for jobs in self._jobs:
            jobs.put(chunk)
        self._pending += len(self._jobs)

    def wait(self) -> None:
        """Block until every submitted chunk is through every sink; re-raise a failure."""
        error = None
        while self._pending:
            exc = self._done.get()
            self._pending -= 1
            error = error or exc
        if error is not None:
            raise error

    def close(self) -> None:
        try:
            self.wait()
        finally:
            for jobs in self._jobs:
                jobs.put(None)
            for thread in self._threads:
                thread.join()
