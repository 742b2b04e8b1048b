"""Importing a vendor .cab (update-packages.md §3): all of it or nothing, once.

The order is what makes it safe:
1. read and validate the package (nothing stored yet);
2. stage every image and catalog into the filestore (temp files, hashed while written);
3. journal the objects about to appear, then rename them into place;
4. one database transaction: blobs, rules, versions, their WSUS catalog updates, the import record,
   the audit row — and the journal row's deletion.
A crash before 4 commits leaves a journal row; the next start deletes the objects it names that
no committed row references. A refusal at any step discards what was staged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peewee
from cryptography import x509

from devupdate.audit.trail import record
from devupdate.content.areas import IMAGES
from devupdate.content.models import StoredObject
from devupdate.db import locked, utcnow, write_transaction
from devupdate.errors import Conflict, DevupdateError, QuotaFull, TooLarge
from devupdate.imports.models import ImportJournal, ImportRecord
from devupdate.packages import (
    Limits,
    PackageError,
    TrustAnchorError,
    UpdateDescription,
    check_catalog,
    load_trust_anchors,
    scan_package,
)
from devupdate.packages.errors import SIZE_CODES
from devupdate.processes import pid_alive
from devupdate.rules.catalog import publish_rules, sync_deployments
from devupdate.rules.lifecycle import bump_generation, rule_key, sync_version_refs
from devupdate.rules.models import Rule, RuleVersion, VersionFile
from devupdate.settings import Settings
from devupdate.wsus.mode import refuse_if_replica
from filestore import FileStore, QuotaExceeded

JOURNAL_STALE_SECONDS = 24 * 3600


@dataclass
class ImportResult:
    outcome: str  # imported | nothing-new
    file_name: str
    size: int
    sha256: str
    rules: list[dict[str, Any]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    record_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"Outcome": self.outcome, "FileName": self.file_name, "Size": self.size, "SHA256": self.sha256,
                "Rules": self.rules, "Findings": self.findings, "ImportId": self.record_id}


def path_prefix(update: UpdateDescription) -> str:
    """Where a version's files are served: DeviceType/Brand/Model/Revision/Locale/Version."""
    return "/".join((update.device_type, update.brand, update.model, update.revision, update.locale,
                     update.version))


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def import_cab(store: FileStore, settings: Settings, path: Path | str, *, actor: str, file_name: str | None = None,
               progress: Callable[[int], None] | None = None,
               on_total: Callable[[int], None] | None = None) -> ImportResult:
    """Import one cab; raises DevupdateError (recorded in the audit trail) when refused."""
    file_name = file_name or Path(path).name
    digest = _BackgroundHash(Path(path))
    size = 0
    try:
        refuse_if_replica("phone packages")  # imported upstream, they come with the sync
        size = Path(path).stat().st_size
        if size > settings.max_cab_size:
            raise TooLarge(f"{file_name} is {size} bytes, above the limit of {settings.max_cab_size}; "
                           "raise DEVUPDATE_MAX_CAB_SIZE to accept it", code="cab-too-large")
        limits = Limits(max_total_size=settings.max_cab_size, max_ratio=settings.max_expansion_ratio)
        if _imported_before(digest.result()):
            updates, _ = scan_package(path, limits)  # descriptions only: a re-import stores nothing
            if _already_done(updates):
                result = ImportResult("nothing-new", file_name, size, digest.result())
                return _finish(result, actor, created={}, updates=updates)
        if on_total:
            on_total(size)
        with _staging() as staged:
            def stage(member, stream):
                item = store.stage(IMAGES, stream, size=member.size, progress=progress)
                staged.append(item)
                return item
            updates, by_name = scan_package(path, limits, stage=stage)
            result = ImportResult("nothing-new", file_name, size, digest.result())
            result.findings = _check_catalogs(updates, by_name, settings)
            needed = {by_name[name.lower()] for update in updates for ref in update.files
                      for name in filter(None, (ref.name, ref.catalog))}
            created = _commit_objects(needed)
            try:
                return _finish(result, actor, created=created, updates=updates, staged=by_name)
            except BaseException:
                _forget_objects(store, created)
                raise
    except PackageError as exc:
        # the reader names the file it opened; an upload staged under a temp name is reported by its own name
        message = exc.message.replace(Path(path).name, file_name) if Path(path).name != file_name else exc.message
        refusal = DevupdateError(message, code=exc.code, status=413 if exc.code in SIZE_CODES else 400)
    except QuotaExceeded as exc:
        refusal = QuotaFull(f"{exc}; free space with 'devupdate files cleanup' or raise DEVUPDATE_QUOTA_IMAGES")
    except DevupdateError as exc:
        refusal = exc
    except OSError as exc:
        refusal = DevupdateError(f"cannot read {file_name}: {exc.strerror or exc}", code="unreadable")
    except peewee.IntegrityError:
        refusal = Conflict(f"another import of the same rules committed first while {file_name} was being "
                           "imported; import it again", code="concurrent-import")
    record_refusal(actor, file_name, size, digest.result(default=""), refusal)
    raise refusal


class _BackgroundHash:
    """SHA-256 of the cab computed on another thread (hashlib releases the GIL) while it is decoded."""

    def __init__(self, path: Path):
        self._value: str | None = None
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            self._value = _hash_file(path)[0]
        except OSError as exc:
            self._error = exc

    def result(self, default: str | None = None) -> str:
        self._thread.join()
        if self._value is None:
            if default is not None:
                return default
            raise self._error or OSError("hash failed")
        return self._value


@contextlib.contextmanager
def _staging() -> Iterator[list]:
    """Whatever was staged and not committed is discarded, whatever happens."""
    staged: list = []
    try:
        yield staged
    finally:
        for item in staged:
            with contextlib.suppress(Exception):
                item.discard()


def record_refusal(actor: str, file_name: str, size: int, sha256: str, refusal: DevupdateError) -> None:
    """The refused import in the import records and the admin audit trail (``sha256`` '' when the
    cab never arrived whole)."""
    with write_transaction():
        entry = ImportRecord.create(actor=actor, file_name=file_name, size=size, sha256=sha256,
                                    outcome="refused", code=refusal.code, message=refusal.message,
                                    finished_at=utcnow())
        record(actor, "import", file_name, outcome="refused",
               detail={"ImportId": entry.id, "Size": size, "SHA256": sha256, **refusal.as_dict()})


def _imported_before(sha256: str) -> bool:
    return ImportRecord.select().where((ImportRecord.sha256 == sha256) &
                                       (ImportRecord.outcome.in_(["imported", "nothing-new"]))).exists()


def _already_done(updates: list[UpdateDescription]) -> bool:
    """Every update of the cab is still pending or approved: importing it again changes nothing."""
    for update in updates:
        rule = Rule.get_or_none(Rule.key == _key(update))
        if rule is None or update.version not in (rule.pending_version, rule.approved_version):
            return False
    return True


def _key(update: UpdateDescription) -> str:
    return rule_key(update.device_type, update.brand, update.model, update.revision, update.locale,
                    update.update_type)


def _check_catalogs(updates: list[UpdateDescription], staged: dict[str, Any], settings: Settings) -> list[str]:
    if settings.catalog_policy == "off":
        return []
    anchors = _trust_anchors(settings)
    findings = []
    for update in updates:
        for ref in update.files:
            if not ref.catalog:
                continue
            image = staged[ref.name.lower()]
            with staged[ref.catalog.lower()].open() as handle:
                catalog_bytes = handle.read()
            for finding in check_catalog(catalog_bytes, bytes.fromhex(image.sha1), bytes.fromhex(image.sha256),
                                         anchors):
                if finding.code == "no-trust-anchors" and settings.catalog_policy == "warn":
                    continue  # no anchors configured: 'warn' checks hashes and signatures, not the chain
                findings.append(f"{update.model}/{update.locale} {ref.name}: {finding}")
    findings = sorted(set(findings))
    if findings and settings.catalog_policy == "enforce":
        raise DevupdateError("catalog verification failed (DEVUPDATE_CATALOG_POLICY=enforce): "
                             + "; ".join(findings), code="catalog-check-failed")
    return findings


def _trust_anchors(settings: Settings) -> list[x509.Certificate] | None:
    """The configured anchors, parsed once per import; an unreadable file is a settings error."""
    if not settings.trust_anchors:
        if settings.catalog_policy == "enforce":
            raise DevupdateError("DEVUPDATE_CATALOG_POLICY=enforce needs DEVUPDATE_TRUST_ANCHORS (a PEM file of the "
                                 "CA certificates vendor catalogs chain to)", code="bad-settings")
        return None
    try:
        return load_trust_anchors(Path(settings.trust_anchors).read_bytes())
    except OSError as exc:
        problem = exc.strerror
    except TrustAnchorError as exc:
        problem = f"{exc}; give a PEM file of CA certificates"
    raise DevupdateError(f"DEVUPDATE_TRUST_ANCHORS={settings.trust_anchors}: {problem}", code="bad-settings")


def _commit_objects(staged: set) -> dict[str, Any]:
    """Journal, then rename staged files into place. Returns sha256 → StoredObject."""
    hashes = sorted({item.sha256 for item in staged})
    with write_transaction():
        journal = ImportJournal.create(host=socket.gethostname(), pid=os.getpid(), objects=json.dumps(hashes))
    committed: dict[str, Any] = {"__journal__": journal.id}
    for item in staged:
        if item.sha256 not in committed:
            committed[item.sha256] = item.commit()
        else:
            item.discard()  # same bytes under another name: one object
    return committed


def _forget_objects(store: FileStore, created: dict[str, Any]) -> None:
    """Undo _commit_objects after a failed transaction: delete what no committed row uses."""
    for sha256, stored in created.items():
        if sha256 != "__journal__" and stored.created and not StoredObject.exists(sha256):
            store.delete(IMAGES, sha256)
    ImportJournal.delete().where(ImportJournal.id == created.get("__journal__")).execute()


def _finish(result: ImportResult, actor: str, *, created: dict[str, Any], updates: list[UpdateDescription],
            staged: dict[str, Any] | None = None) -> ImportResult:
    with write_transaction():
        touched = []
        entry = ImportRecord.create(actor=actor, file_name=result.file_name, size=result.size,
                                    sha256=result.sha256, outcome="nothing-new")
        for sha256, stored in created.items():
            if sha256 != "__journal__":
                StoredObject.insert(sha256=sha256, sha1=stored.sha1, size=stored.size).on_conflict_ignore().execute()
        for update in updates:
            touched.append(_apply_update(update, staged, actor, entry.id) if staged else
                           {"Id": update.id, "Version": update.version, "Change": "unchanged"})
        if staged:  # their catalog updates (C10), after every rule lock is held: rules, then the catalog
            publish_rules([(Rule.get_by_id(rule["Id"]), rule["Change"] == "created") for rule in touched])
            for rule_id in sorted({rule["Id"] for rule in touched}):
                sync_deployments(Rule.get_by_id(rule_id), rule_id, actor)
        changed = [rule for rule in touched if rule["Change"] != "unchanged"]
        result.outcome = "imported" if changed else "nothing-new"
        result.rules, result.record_id = touched, entry.id
        entry.outcome, entry.rules, entry.finished_at = result.outcome, json.dumps(touched), utcnow()
        entry.findings = json.dumps(result.findings)
        entry.save()
        if changed:
            bump_generation()
        record(actor, "import", result.file_name, outcome="ok",
               detail={"ImportId": entry.id, "Outcome": result.outcome, "Size": result.size,
                       "SHA256": result.sha256, "Rules": touched, "Findings": result.findings})
        if "__journal__" in created:
            ImportJournal.delete().where(ImportJournal.id == created["__journal__"]).execute()
    return result


def _apply_update(update: UpdateDescription, staged: dict[str, Any], actor: str, import_id: int) -> dict[str, Any]:
    key = _key(update)
    rule = locked(Rule.select().where(Rule.key == key)).first()
    change = "unchanged"
    if rule is None:
        if Rule.get_or_none(Rule.id == update.id) is not None:
            raise Conflict(f"rule {update.id} already exists for another device family; the package reuses "
                           f"its GUID for {key}", code="rule-id-conflict")
        rule = Rule.create(id=update.id, key=key, device_type=update.device_type, brand=update.brand,
                           model=update.model, revision=update.revision, locale=update.locale,
                           update_type=update.update_type)
        change = "created"
    files = {}
    for ref in update.files:
        files[ref.name] = ("image" if ref.catalog else "file", ref.catalog, staged[ref.name.lower()].sha256)
        if ref.catalog:
            files[ref.catalog] = ("catalog", None, staged[ref.catalog.lower()].sha256)
    version = RuleVersion.get_or_none((RuleVersion.rule_id == rule.id) & (RuleVersion.version == update.version))
    if version is None:
        version = RuleVersion.create(rule_id=rule.id, version=update.version, path_prefix=path_prefix(update),
                                     import_id=import_id)
        for name, (role, catalog, sha256) in files.items():
            VersionFile.create(rule_version=version, file_name=name, signature_file_name=catalog, role=role,
                               blob=sha256)
        change = change if change == "created" else "new-version"
    else:
        existing = {f.file_name: (f.role, f.signature_file_name, f.blob_id) for f in version.files}
        if existing != files:
            raise Conflict(f"version {update.version} of rule {rule.id} ({update.model} {update.locale}) was "
                           "imported before with different files; vendors must not reuse a version number",
                           code="version-conflict")
    if update.version not in (rule.pending_version, rule.approved_version):
        before = {"PendingVersion": rule.pending_version}
        rule.pending_version, rule.pending_at, rule.pending_by, rule.updated_at = (
            update.version, utcnow(), actor, utcnow())
        rule.save()
        record(actor, "rule.pending", rule.id, before=before, after={"PendingVersion": update.version})
        change = change if change != "unchanged" else "pending"
    sync_version_refs(rule.id, {rule.approved_version, rule.pending_version, rule.restore_version})
    return {"Id": rule.id, "Version": update.version, "Change": change}


def recover_crashed_imports(store: FileStore) -> list[str]:
    """Delete objects that imports which died before committing left in the images area."""
    removed: list[str] = []
    host, now = socket.gethostname(), utcnow()
    for journal in ImportJournal.select():
        same_host = journal.host == host
        if same_host and journal.pid == os.getpid():
            continue
        dead = same_host and not pid_alive(journal.pid)
        stale = (now - journal.started_at).total_seconds() > JOURNAL_STALE_SECONDS
        if not (dead or stale):
            continue
        with write_transaction():
            for sha256 in json.loads(journal.objects):
                if not StoredObject.exists(sha256) and store.delete(IMAGES, sha256):
                    removed.append(sha256)
            journal.delete_instance()
    return removed
