"""``backup create`` and ``backup restore``: one directory holds the database, the filestore and the
data directory's own files (``devupdate.toml``, ``tls/``, …), with a manifest of every file's size
and SHA-256.

Consistency with the filestore: the database is copied first, the filestore after it. An object
the copied database names was referenced then; ``files cleanup`` removes an object only a grace
period (``DEVUPDATE_FILE_CLEANUP_GRACE``, 24 h) after it stopped being referenced, so it is still on
disk while the filestore is copied; the backup checks that every object the database names is in
it and fails otherwise. Objects imported after the database copy are extra, and harmless.

The backup is written to ``DIR.partial`` and renamed to ``DIR`` when complete: a directory named
``DIR`` is always a whole backup. A restore checks every file against the manifest before it
changes anything, and refuses to overwrite an installation that has data unless told ``replace``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devupdate.backup import database
from devupdate.content import areas
from devupdate.errors import DevupdateError
from devupdate.settings import Settings

FORMAT = 1
MANIFEST = "manifest.json"
FILESTORE, HOME = "filestore", "home"
CHUNK = 1 << 20
#: data-directory entries that are not copied as files: the database and filestore have their own
#: part, ``run/`` is per-process state, locks and temporary files belong to running processes
_SKIPPED_TOP = {"run", "filestore", "devupdate.db", "devupdate.db-wal", "devupdate.db-shm", "devupdate.db-journal"}
_TEMP_PREFIX = ".tmp-"


@dataclass
class Report:
    """What a backup or restore did, for the CLI and its ``--json``."""

    directory: str
    database: str
    schema: int | None
    files: int = 0
    bytes: int = 0
    objects: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"Directory": self.directory, "Database": self.database, "Schema": self.schema, "Files": self.files,
                "Bytes": self.bytes, "Objects": self.objects, "Warnings": self.warnings}


def _copy(source: Path, target: Path) -> tuple[int, str]:
    """Copy one file, hashing what was copied; returns (size, sha256)."""
    digest = hashlib.sha256()
    size = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    shutil.copymode(source, target)
    return size, digest.hexdigest()


def _hash(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _walk(root: Path, skip_top: set[str], excluded: set[Path]) -> list[Path]:
    """Regular files under ``root`` (relative), minus writers in flight, the filestore's ledgers
    (rebuilt from the files on restore) and ``excluded`` directories (the backup itself)."""
    found: list[Path] = []
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        relative = here.relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not (relative == Path(".") and d in skip_top)
                             and d != ".filestore" and (here / d).resolve() not in excluded)
        for name in sorted(filenames):
            if relative == Path(".") and name in skip_top:
                continue
            if name.startswith(_TEMP_PREFIX) or name.endswith(".lock") or not (here / name).is_file():
                continue
            found.append(relative / name)
    return found


def _master_key_fingerprint(settings: Settings) -> str | None:
    key = settings.wsus_cookie_master_key
    return hashlib.sha256(key.encode()).hexdigest()[:16] if key else None


def _referenced_objects() -> set[str]:
    from devupdate.content.models import StoredObject
    from devupdate.db import tuples

    return {sha for (sha,) in tuples(StoredObject.select(StoredObject.sha256))}


def _schema_version() -> int | None:
    from devupdate import schema

    return schema.current_version()


def create(settings: Settings, directory: Path) -> Report:
    """Back the installation up into ``directory`` (which must not exist yet)."""
    from devupdate import db

    directory = Path(directory).absolute()
    if directory.exists():
        raise DevupdateError(f"{directory} already exists: name a new directory for the backup",
                             code="backup-exists")
    partial = directory.with_name(directory.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True, mode=0o700)
    url = settings.effective_database_url
    kind = database.kind_of(url)
    try:
        db.open_database(url).connect(reuse_if_open=True)
        schema_version = _schema_version()
        if schema_version is None:
            raise DevupdateError("the database has no devupdate schema: nothing to back up", code="no-database")
        db.database.close()
        files: dict[str, dict[str, Any]] = {}
        dump_name = database.DUMP_NAMES[kind]
        database.dump(url, partial / dump_name)
        size, sha = _hash(partial / dump_name)
        files[dump_name] = {"size": size, "sha256": sha}
        db.open_database(url).connect(reuse_if_open=True)
        referenced = _referenced_objects()  # at least what the copied database names (see the module doc)
        db.database.close()
        excluded = {directory.resolve(), partial.resolve()}
        for relative in _walk(settings.filestore_root, set(), excluded):
            size, sha = _copy(settings.filestore_root / relative, partial / FILESTORE / relative)
            files[f"{FILESTORE}/{relative.as_posix()}"] = {"size": size, "sha256": sha}
        images = {Path(name).name for name in files if name.startswith(f"{FILESTORE}/{areas.IMAGES}/")}
        missing = sorted(referenced - images)
        if missing:
            raise DevupdateError(f"{len(missing)} stored object(s) the database names are not in the filestore "
                                 f"(first: {missing[0]}): run 'devupdate filestore verify' and retry",
                                 code="backup-inconsistent")
        for relative in _walk(settings.home, _SKIPPED_TOP, excluded):
            size, sha = _copy(settings.home / relative, partial / HOME / relative)
            files[f"{HOME}/{relative.as_posix()}"] = {"size": size, "sha256": sha}
        manifest = {
            "Format": FORMAT, "Created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "Version": _version(), "Database": kind, "Schema": schema_version, "Objects": len(images),
            "CookieMasterKey": _master_key_fingerprint(settings), "Files": files,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", "utf-8")
        os.replace(partial, directory)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    report = Report(str(directory), kind, schema_version, files=len(files),
                    bytes=sum(f["size"] for f in files.values()), objects=len(images))
    if manifest["CookieMasterKey"] and not (settings.home / "devupdate.toml").is_file():
        report.warnings.append("the WSUS cookie master key comes from the environment and is not in the backup: "
                               "keep DEVUPDATE_WSUS_COOKIE_MASTER_KEY with it")
    return report


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("devupdate")
    except metadata.PackageNotFoundError:
        return "unknown"


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a backup, its shape checked: every file name the database dump or a plain relative
    path under ``filestore/`` or ``home/`` (never ``..``, never the database's own files), every entry a size and
    a SHA-256 — a damaged or hand-made manifest is refused before anything is read or written."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise DevupdateError(f"{directory} is not a devupdate backup (no {MANIFEST}); name the directory "
                             "'devupdate backup create' wrote", code="not-a-backup")
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DevupdateError(f"{path}: not valid JSON ({exc})", code="not-a-backup") from exc
    if (not isinstance(manifest, dict) or manifest.get("Format") != FORMAT
            or not isinstance(manifest.get("Files"), dict)):
        raise DevupdateError(f"{path}: not a backup of format {FORMAT}", code="not-a-backup")
    if manifest.get("Database") not in database.DUMP_NAMES:
        raise DevupdateError(f"{path}: Database is {manifest.get('Database')!r}, not one of "
                             f"{', '.join(sorted(database.DUMP_NAMES))}", code="backup-damaged")
    dump = database.DUMP_NAMES[manifest["Database"]]
    for name, entry in manifest["Files"].items():
        if name != dump and not _restorable(name):
            raise DevupdateError(f"backup manifest names {name!r}: not a file under {FILESTORE}/ or {HOME}/ "
                                 "this restore may write", code="backup-damaged")
        if (not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or isinstance(entry["size"], bool)
                or not isinstance(entry.get("sha256"), str)):
            raise DevupdateError(f"backup manifest entry {name!r} has no size and SHA-256", code="backup-damaged")
    return manifest


def _restorable(name: object) -> bool:
    """A manifest name a restore may write: ``filestore/…`` or ``home/…`` in plain parts, and no
    ``home/`` entry standing for what the restore writes itself (the database, the filestore, ``run/``)."""
    if not isinstance(name, str):
        return False
    parts = name.split("/")
    if len(parts) < 2 or parts[0] not in (FILESTORE, HOME):
        return False
    if any(not part or part in (".", "..") or "\\" in part or "\x00" in part for part in parts):
        return False
    return not (parts[0] == HOME and (parts[1] in _SKIPPED_TOP or parts[1] == ".filestore"))


def check(directory: Path, manifest: dict[str, Any]) -> None:
    """Every file of the manifest present, of its size and hash, and nothing outside the directory."""
    root = Path(directory).resolve()
    for name, entry in sorted(manifest["Files"].items()):
        path = (root / name).resolve()
        if root not in path.parents:
            raise DevupdateError(f"backup manifest names {name!r} outside the backup", code="backup-damaged")
        if not path.is_file():
            raise DevupdateError(f"backup file {name} is missing: the backup is incomplete", code="backup-damaged")
        size, sha = _hash(path)
        if (size, sha) != (entry.get("size"), entry.get("sha256")):
            raise DevupdateError(f"backup file {name} does not match the manifest (size or SHA-256): the backup is "
                                 "damaged; restore another one", code="backup-damaged")


def _swap_in(staging: Path, root: Path) -> None:
    """``staging`` becomes the filestore ``root`` by renames; the old one is removed once the new one is in
    place. A root that cannot be renamed (a mount point) is emptied and filled from ``staging`` instead."""
    old = root.with_name(root.name + ".replaced")
    shutil.rmtree(old, ignore_errors=True)
    try:
        if root.exists():
            os.replace(root, old)
        os.replace(staging, root)
    except OSError:
        root.mkdir(parents=True, exist_ok=True)
        for child in root.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        for child in staging.iterdir():
            os.replace(child, root / child.name)
        staging.rmdir()
    shutil.rmtree(old, ignore_errors=True)


def restore(settings: Settings, directory: Path, *, replace: bool = False) -> Report:
    """Put the backup in ``directory`` back into the installation ``settings`` name; afterwards the
    schema is brought to this version's (an older backup restores into a newer devupdate)."""
    directory = Path(directory).absolute()
    manifest = read_manifest(directory)
    url = settings.effective_database_url
    kind = database.kind_of(url)
    if manifest["Database"] != kind:
        raise DevupdateError(f"the backup holds a {manifest['Database']} database and this installation uses "
                             f"{kind}: restore into an installation of the same kind (DEVUPDATE_DATABASE_URL)",
                             code="backup-kind")
    check(directory, manifest)
    has_files = any(_walk(settings.filestore_root, set(), set()))
    if not replace and (not database.is_empty(url) or has_files):
        raise DevupdateError(f"the installation at {settings.home} already has data: restore into an empty data "
                             "directory and database, or pass --replace (stop every server first)",
                             code="restore-not-empty")
    if replace and kind == database.POSTGRESQL:
        current = database.schema_of(url)
        if current is not None and current != manifest.get("Schema"):
            raise DevupdateError(f"the database is at schema version {current} and the backup at "
                                 f"{manifest.get('Schema')}: --replace restores over the same version only; restore "
                                 "into an empty database instead (dropdb and createdb), the schema is migrated "
                                 "afterwards", code="restore-schema")
    settings.home.mkdir(parents=True, exist_ok=True)
    files = manifest["Files"]
    # the objects are staged beside the filestore first: a failed copy or database load leaves the
    # installation as it was, and the live filestore is swapped out only once both are complete
    staging = settings.filestore_root.with_name(settings.filestore_root.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)
    restored = 0
    try:
        staging.mkdir(parents=True)
        for name in sorted(files):
            if name.startswith(f"{FILESTORE}/"):
                _copy(directory / name, staging / name[len(FILESTORE) + 1:])
                restored += 1
        database.load(url, directory / database.DUMP_NAMES[kind], replace=replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap_in(staging, settings.filestore_root)
    for name in sorted(files):
        if name.startswith(f"{HOME}/"):
            target = settings.home / name[len(HOME) + 1:]
            if target.exists() and not replace:
                continue  # this installation's own settings win over the backup's
            _copy(directory / name, target)
            restored += 1
    from devupdate.runtime import open_runtime

    runtime = open_runtime(settings, upgrade=True)  # an older backup is migrated to this version's schema
    runtime.store.rescan()  # the ledgers are rebuilt from the restored files
    report = Report(str(directory), kind, _schema_version(), files=restored,
                    bytes=sum(f["size"] for f in files.values()), objects=manifest.get("Objects", 0))
    if manifest.get("CookieMasterKey") != _master_key_fingerprint(settings):
        report.warnings.append("the WSUS cookie master key differs from the one the backup was made with: set "
                               "DEVUPDATE_WSUS_COOKIE_MASTER_KEY to that key, or Windows clients get new cookies")
    return report
