"""The selection snapshot: the rule tables as one immutable in-memory object per worker.

The hot path never queries the database. A background job reads the generation counter
every ``poll_seconds`` and rebuilds the snapshot only when it changed, so an approve made
anywhere (CLI, API, another node) is served by every worker within about a second — also
right after the database comes back from a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from devupdate import db
from devupdate.content.models import StoredObject
from devupdate.jobs import PeriodicJob, Retry
from devupdate.rules import rollout
from devupdate.rules.lifecycle import current_generation
from devupdate.rules.models import Rule, RuleRollout, RuleVersion, TestDevice, VersionFile
from devupdate.selection import DownloadEntry, OfferedFile, RolloutEntry, RuleEntry, Snapshot, VersionEntry, family

log = logging.getLogger("devupdate.snapshot")


def build_snapshot() -> Snapshot:
    """Read rules, versions, files and test devices in a handful of queries."""
    with db.database.atomic():  # one consistent view (REPEATABLE READ is not needed: generation re-read)
        generation = current_generation()
        versions = {(v.rule_id, v.version): v for v in RuleVersion.select()}
        files_by_version: dict[int, list] = defaultdict(list)
        query = (VersionFile.select(VersionFile, StoredObject).join(StoredObject).order_by(VersionFile.id))
        for item in query:
            files_by_version[item.rule_version_id].append(item)
        rules = list(Rule.select())
        tests = list(TestDevice.select())
        rollouts = {r.rule_id: r for r in RuleRollout.select().where(RuleRollout.state.in_(rollout.ACTIVE))}

    downloads: dict[str, DownloadEntry] = {}
    offered: dict[int, VersionEntry] = {}
    images_by_rule: dict[str, set[str]] = defaultdict(set)
    for version in versions.values():
        entries = []
        imported = db.iso_utc(version.imported_at)
        assert imported is not None  # imported_at is NOT NULL
        for item in files_by_version.get(version.id, []):
            path = f"{version.path_prefix}/{item.file_name}"
            rolling = rollouts.get(version.rule_id)
            watched = item.role == "image" and rolling is not None and rolling.version == version.version
            downloads[path.lower()] = DownloadEntry(item.blob.sha256, item.blob.size, version.imported_at.timestamp(),
                                                    version.rule_id, version.version, watched)
            entries.append(OfferedFile(item.file_name, item.signature_file_name, version.version,
                                       imported, path, item.blob.size, item.blob.sha256))
            if item.role == "image":
                images_by_rule[version.rule_id].add(item.file_name.lower())
        # images first, each followed by its catalog, as the phones expect
        entries.sort(key=lambda f: (f.signature_file_name is None, f.file_name.lower()))
        ordered = []
        for image in entries:
            catalog = image.signature_file_name
            if not catalog:
                continue
            ordered.append(image)
            ordered.extend(f for f in entries if f.signature_file_name is None and
                           f.file_name.lower() == catalog.lower())
        ordered.extend(f for f in entries if f not in ordered)
        offered[version.id] = VersionEntry(version.version, tuple(ordered))

    def entry(rule: Rule, version: str | None) -> VersionEntry | None:
        found = versions.get((rule.id, version)) if version else None
        return offered.get(found.id) if found else None

    def staged(rule: Rule) -> RolloutEntry | None:
        found = rollouts.get(rule.id)
        if found is None or found.version != rule.approved_version:
            return None
        return RolloutEntry(rollout.current_share(found), entry(rule, found.previous))

    by_family: dict[tuple, list[RuleEntry]] = defaultdict(list)
    for rule in rules:
        by_family[family(rule.device_type, rule.brand, rule.model, rule.revision, rule.locale)].append(
            RuleEntry(rule.id, rule.update_type.lower(), frozenset(images_by_rule[rule.id]),
                      entry(rule, rule.approved_version), entry(rule, rule.pending_version),
                      rollout=staged(rule), name=rule.update_type))
    return Snapshot(
        generation=generation,
        rules={key: tuple(value) for key, value in by_family.items()},
        test_macs=frozenset(t.identifier for t in tests if t.identifier_type == "MACAddress"),
        test_serials=frozenset(t.identifier.upper() for t in tests if t.identifier_type == "SerialNumber"),
        downloads=downloads)


class SnapshotHolder:
    """Holds the current snapshot; a :class:`PeriodicJob` checks the generation every ``poll_seconds``
    and rebuilds the snapshot when it moved. While the database is away the last good snapshot is
    served and the job retries every second at most, so a change made once it is back is served
    within about a second; :meth:`age` (seconds since the database last confirmed the snapshot)
    is what ``/healthz`` compares with ``snapshot_max_age``."""

    def __init__(self, poll_seconds: float = 0.5, max_age: float = 30.0):
        self.poll_seconds = poll_seconds
        self.max_age = max_age
        self._snapshot = Snapshot(generation=-1)
        self._lock = threading.Lock()
        self._confirmed: float | None = None  # monotonic time the database last confirmed the snapshot
        self._created = time.monotonic()
        self.job = PeriodicJob("snapshot-refresh", self._step, poll_seconds,
                               retry=Retry("snapshot refresh", first=0.1, maximum=1.0, logger=log))

    @property
    def generation(self) -> int:
        """The generation served now (-1 before the first load); never loads."""
        return self._snapshot.generation

    @property
    def current(self) -> Snapshot:
        if self._snapshot.generation < 0:
            self.refresh()
        return self._snapshot

    def _poll(self, force: bool = False) -> bool:
        """Rebuild when the generation moved (or ``force``); raises when the database fails."""
        with self._lock:
            db.database.connect(reuse_if_open=True)
            changed = force or self._snapshot.generation < 0 or current_generation() != self._snapshot.generation
            if changed:
                self._snapshot = build_snapshot()
            self._confirmed = time.monotonic()
            return changed

    def _step(self) -> None:
        self._poll()

    def refresh(self, force: bool = False) -> bool:
        """Refresh now; on failure keep serving the last good snapshot (logged once per outage)."""
        try:
            changed = self._poll(force)
        except Exception as exc:  # noqa: BLE001
            self.job.retry.failed(exc)
            return False
        self.job.retry.succeeded()
        return changed

    def age(self) -> float:
        """Seconds since the database last confirmed the snapshot is current (since start if never)."""
        return time.monotonic() - (self._confirmed if self._confirmed is not None else self._created)

    def stale_reason(self) -> str | None:
        """Why ``/healthz`` should fail, when the refresh job runs and the snapshot is older than the bound."""
        if not self.job.running:
            return None
        age = self.age()
        return f"snapshot is {age:.0f} s old (bound {self.max_age:g} s)" if age > self.max_age else None

    def start(self) -> None:
        self.job.start()

    def stop(self) -> None:
        self.job.stop()
