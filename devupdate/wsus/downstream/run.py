"""One downstream sync run ([MS-WSUSSS] §3.2.4, spec/wsus.md §5.3, D1–D8).

Phases: authorization → config → categories → updates (or, in ``fault-in`` mode, the needed list)
→ release of held revisions → deployments (``replica``) → rollup (hierarchy reporting) → content.
Each phase that moves an anchor writes it in the transaction that completes the phase, so a run
stopped anywhere (``kill -9`` included) repeats the phase from the old anchor on the next run; that
is harmless because revisions are keyed by (UpdateID, RevisionNumber) and stored ones are not
fetched again. A revision that failed (isolated ``InternalServerError``, missing from the answer, a
blob that does not decode) is kept with the anchor, and the next runs fetch it again before the new
list, at most :data:`RETRY_RUNS` runs (``RetryRevisions`` in the summary). The deployment phase keeps
its old anchor while a deployment names an update still held or failed (``DeploymentsWaiting``), so
the next run applies it.

Faults (§4.2): ``ServerChanged`` — or another ServerId from ``GetRollupConfiguration`` — clears
the three anchors and starts again from authorization (D7); ``InvalidCookie``, ``CookieExpired`` and
``InvalidAuthorizationCookie`` redo authorization once per run; ``InvalidParameters`` with
``Message=filter`` clears that anchor once; ``InternalServerError`` on ``GetUpdateData`` splits the
batch in halves until the revisions it cannot give are isolated and counted failed. Transient
failures are retried by the transport (D6).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devupdate.db import utcnow, write_transaction
from devupdate.wsus.downstream import apply, deployments, files, messages, needed, phones, rollup
from devupdate.wsus.downstream.messages import BadAnswer, Cookie, UpstreamFault
from devupdate.wsus.downstream.models import UpstreamState
from devupdate.wsus.downstream.transport import Unreachable, Upstream
from filestore import FileStore

log = logging.getLogger("devupdate.wsus.downstream")

MODES = ("autonomous", "replica", "fault-in")
REAUTHORIZE = frozenset(("InvalidCookie", "CookieExpired", "InvalidAuthorizationCookie"))
SERVER_CHANGED = "ServerChanged"
#: listed identities checked against the store (and fetched) at a time
LIST_SLICE = 2_000
#: a revision failing this many runs in a row is no longer fetched again (logged); at most MAX_RETRY kept
RETRY_RUNS, MAX_RETRY = 5, 10_000


@dataclass
class Options:
    upstream: str
    mode: str = "autonomous"
    account_name: str = "devupdate"
    account_guid: str = ""
    version: str = ""
    products: tuple[str, ...] = ()
    classifications: tuple[str, ...] = ()
    parallel: int = 4
    actor: str = "sync"


@dataclass
class Summary:
    upstream: str
    mode: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    held: int = 0
    released: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    compressed: int = 0
    deployments: int = 0
    server_changed: int = 0
    fault_in: dict[str, Any] = field(default_factory=dict)
    phones: dict[str, Any] = field(default_factory=dict)
    rollup: dict[str, Any] = field(default_factory=dict)
    files: files.FileCounts = field(default_factory=files.FileCounts)
    anchors: dict[str, str | None] = field(default_factory=dict)
    deployments_waiting: int = 0
    retry: int = 0
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0

    def add(self, applied: apply.Applied) -> None:
        self.new += applied.new
        self.updated += applied.updated
        self.unchanged += applied.unchanged
        self.held += applied.held
        self.released += applied.released
        self.failed += applied.failed
        self.compressed += applied.compressed

    def as_dict(self, traffic: Any = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Upstream": self.upstream, "Mode": self.mode,
            "NewRevisions": self.new, "UpdatedRevisions": self.updated, "UnchangedRevisions": self.unchanged,
            "HeldRevisions": self.held, "ReleasedRevisions": self.released, "FailedRevisions": len(self.failed),
            "Failures": self.failed[:50], "CompressedBlobs": self.compressed,
            "Files": self.files.as_dict(), "DeploymentsApplied": self.deployments,
            "ServerChanged": self.server_changed, "DurationSeconds": round(self.duration, 3),
            "Anchors": self.anchors}
        if self.retry:
            out["RetryRevisions"] = self.retry
        if self.deployments_waiting:
            out["DeploymentsWaiting"] = self.deployments_waiting
        if self.fault_in:
            out["FaultIn"] = self.fault_in
        if self.phones:
            out["PhoneImages"] = self.phones
        if self.rollup:
            out["Rollup"] = self.rollup
        if traffic is not None:
            out["Requests"] = traffic.requests
            out["Retries"] = traffic.retries
            out["ServerBusy"] = traffic.busy
            out["BackoffSeconds"] = round(traffic.backoff_seconds, 3)
            out["Operations"] = dict(sorted(traffic.operations.items()))
        return out


def _expired(cookie: Cookie | None) -> bool:
    if cookie is None:
        return True
    try:
        when = messages.parse_expiration(cookie.expiration)
    except ValueError:
        return True
    return when <= datetime.now(UTC)


class Run:
    def __init__(self, options: Options, upstream: Upstream, store: FileStore, *,
                 on_content_request: Callable[[str, dict[str, str]], None] | None = None):
        self.options = options
        self.upstream = upstream
        self.store = store
        self.summary = Summary(options.upstream, options.mode)
        self.cookie: Cookie | None = None
        self.config: messages.ConfigData | None = None
        self.reauthorized = False
        self.filter_cleared: set[str] = set()
        self.on_content_request = on_content_request
        self.category_list: messages.RevisionList | None = None
        self.retried: dict[tuple[str, int], int] = {}  # identity → the runs it failed before this one
        self.rollup_config: messages.RollupConfig | None = None

    # -- state ---------------------------------------------------------------------------------------

    def state(self) -> UpstreamState:
        found = UpstreamState.get_or_none(UpstreamState.url == self.options.upstream)
        if found is None:
            with write_transaction():
                UpstreamState.insert(url=self.options.upstream).on_conflict_ignore().execute()
            found = UpstreamState.get_by_id(self.options.upstream)
        return found

    def _save(self, **fields: Any) -> None:
        """Write these state fields (an anchor only in the transaction completing its phase)."""
        fields["updated_at"] = utcnow()
        UpstreamState.update(**fields).where(UpstreamState.url == self.options.upstream).execute()

    def save_state(self, **fields: Any) -> None:
        """Write these state fields, inside the caller's transaction (the rollup's mark)."""
        self._save(**fields)

    def clear_anchors(self, why: str) -> None:
        log.warning("sync from %s: %s; anchors cleared, starting again from authorization", self.options.upstream, why)
        with write_transaction():
            self._save(config_anchor=None, sync_anchor=None, deployment_anchor=None, cookie_data=None,
                       cookie_expiration=None)
        self.cookie = None

    # -- the run -------------------------------------------------------------------------------------

    def run(self) -> Summary:
        restarts = 0
        while True:
            try:
                self._phases()
                break
            except UpstreamFault as fault:
                if fault.error_code == SERVER_CHANGED and restarts < 2:
                    restarts += 1
                    self.summary.server_changed += 1
                    self.clear_anchors("the upstream answered ServerChanged")
                    continue
                if fault.error_code in REAUTHORIZE and not self.reauthorized:
                    self.reauthorized = True
                    self.cookie = None
                    with write_transaction():
                        self._save(cookie_data=None, cookie_expiration=None)
                    continue
                raise
            finally:
                self.summary.duration = time.monotonic() - self.summary.started
                self._close_category_list()
        state = self.state()
        self.summary.anchors = {"ConfigAnchor": state.config_anchor, "SyncAnchor": state.sync_anchor,
                                "DeploymentAnchor": state.deployment_anchor}
        return self.summary

    def _phases(self) -> None:
        self._authorize()
        self._check_server_id()
        self._config()
        self._retry()
        self._categories()
        if self.options.mode == "fault-in":
            self.summary.fault_in = needed.fault_in(self)
        else:
            self._updates()
        self._release()  # before the deployments: one naming a revision held until now is applied
        if self.options.mode == "replica":
            self._deployments()
        self._rollup()
        if self.options.mode != "fault-in":
            self._content()
            self.summary.phones = phones.bring_in(mode=self.options.mode, actor=self.options.actor)

    # -- 1. authorization ----------------------------------------------------------------------------

    def call(self, operation: str, body: bytes, path: str | None = None, namespace: str | None = None) -> Any:
        service = messages.SERVER_SYNC
        return self.upstream.call(path or service.paths[0], namespace or service.namespace, operation, body)

    def _authorize(self) -> None:
        state = self.state()
        stored = (Cookie(state.cookie_expiration, state.cookie_data)
                  if state.cookie_data and state.cookie_expiration else None)
        if stored is not None and not _expired(stored) and self.cookie is None and not self.reauthorized:
            self.cookie = stored
            return
        if self.cookie is not None and not _expired(self.cookie):
            return
        found = self.call("GetAuthConfig", messages.get_auth_config())
        service_url = self.upstream.own_path(messages.auth_service_url(found), messages.DSS_AUTH.paths[0])
        auth = self.call("GetAuthorizationCookie",
                         messages.get_authorization_cookie(self.options.account_name, self.options.account_guid),
                         path=service_url, namespace=messages.DSS_AUTH.namespace)
        old = None if _expired(stored) else stored
        self.cookie = messages.cookie(self.call("GetCookie", messages.get_cookie(messages.authorization_cookie(auth),
                                                                                  old)))
        with write_transaction():
            self._save(cookie_expiration=self.cookie.expiration, cookie_data=self.cookie.encrypted_data)

    def _check_server_id(self) -> None:
        """D7: another ServerId than the one stored means another server (or a rebuilt one)."""
        try:
            found = self.call("GetRollupConfiguration", messages.get_rollup_configuration(),
                              path=messages.REPORTING.paths[0], namespace=messages.REPORTING.namespace)
        except Exception as exc:  # noqa: BLE001 - an upstream without the rollup service: no ServerId to follow
            log.info("sync from %s: no ServerId from GetRollupConfiguration (%s)", self.options.upstream, exc)
            return
        self.rollup_config = messages.rollup_config(found)
        server_id = self.rollup_config.server_id
        if not server_id:
            return
        state = self.state()
        if state.server_id and state.server_id != server_id:
            self.summary.server_changed += 1
            self.clear_anchors(f"the upstream's ServerId changed from {state.server_id} to {server_id}")
            self._authorize()
        with write_transaction():
            self._save(server_id=server_id)

    # -- 2. config -----------------------------------------------------------------------------------

    def _config(self) -> None:
        assert self.cookie is not None
        state = self.state()
        found = self.call("GetConfigData", messages.get_config_data(self.cookie, state.config_anchor))
        config = messages.config_data(found)
        if state.config_anchor and not config.languages and state.config != "{}":
            # a short answer (only what changed since the anchor) keeps the stored languages
            config = messages.ConfigData(config.catalog_only, config.lazy_sync, config.hosts_psf,
                                         config.max_updates_per_request, config.new_anchor,
                                         config.protocol_version, json.loads(state.config).get("Languages", []))
        self.config = config
        with write_transaction():
            self._save(config_anchor=config.new_anchor, config=json.dumps(config.as_dict()),
                       mode=self.options.mode)

    # -- 3./4. categories and updates ---------------------------------------------------------------------

    def revision_list(self, *, anchor: str | None, get_config: bool, categories: Sequence[tuple[str, bool]] = (),
                      classifications: Sequence[tuple[str, bool]] = ()) -> messages.RevisionList:
        assert self.cookie is not None
        service = messages.SERVER_SYNC
        try:
            return self.upstream.call_streamed(service.paths[0], service.namespace, "GetRevisionIdList",
                                               messages.get_revision_id_list(
                                                   self.cookie, anchor=anchor, get_config=get_config,
                                                   categories=categories, classifications=classifications),
                                               messages.read_revision_list)
        except UpstreamFault as fault:
            if fault.error_code == "InvalidParameters" and fault.message == "filter" and anchor \
                    and "sync" not in self.filter_cleared:
                self.filter_cleared.add("sync")
                log.warning("sync from %s: the upstream refused the anchor %r; syncing from none",
                            self.options.upstream, anchor)
                with write_transaction():
                    self._save(sync_anchor=None)
                return self.revision_list(anchor=None, get_config=get_config, categories=categories,
                                          classifications=classifications)
            raise

    def fetch(self, identities: list[tuple[str, int]]) -> apply.Applied:
        """GetUpdateData for these revisions in batches, each answer applied in one transaction."""
        applied = apply.Applied()
        size = self.config.max_updates_per_request if self.config else 100
        for start in range(0, len(identities), size):
            self._fetch_batch(identities[start:start + size], applied, retry_missing=True)
        return applied

    def _fetch_batch(self, batch: list[tuple[str, int]], applied: apply.Applied, *, retry_missing: bool) -> None:
        assert self.cookie is not None
        try:
            found = self.call("GetUpdateData", messages.get_update_data(self.cookie, batch))
        except UpstreamFault as fault:
            if fault.error_code != "InternalServerError":
                raise
            if len(batch) == 1:  # isolated: real WSUS answers this for an id it cannot give
                applied.failed.append({"UpdateID": batch[0][0], "RevisionNumber": str(batch[0][1]),
                                       "Reason": "InternalServerError from GetUpdateData"})
                return
            half = len(batch) // 2
            self._fetch_batch(batch[:half], applied, retry_missing=retry_missing)
            self._fetch_batch(batch[half:], applied, retry_missing=retry_missing)
            return
        data = messages.update_data(found)
        wanted = set(batch)
        got = [update for update in data.updates if update.identity in wanted]
        apply.apply_batch(got, data.urls, applied)
        missing = [identity for identity in batch if identity not in {u.identity for u in got}]
        if missing and retry_missing:
            self._fetch_batch(missing, applied, retry_missing=False)
        elif missing:
            applied.failed += [{"UpdateID": u, "RevisionNumber": str(n), "Reason": "not in the GetUpdateData answer"}
                               for u, n in missing]

    def _fetch_new(self, listed: messages.RevisionList) -> None:
        """GetUpdateData for the listed revisions not stored yet, a slice of the list at a time (so
        memory does not follow the list's length)."""
        for chunk in listed.batches(LIST_SLICE):
            stored = apply.stored_identities(chunk)
            todo = [identity for identity in dict.fromkeys(chunk) if identity not in stored]
            self.summary.unchanged += len(set(chunk)) - len(todo)
            self.summary.add(self.fetch(todo))

    def _retry(self) -> None:
        """Fetch again the revisions earlier runs could not fetch (not stored since)."""
        try:
            kept = json.loads(self.state().retry or "[]")
            self.retried = {(str(uid), int(number)): int(runs) for uid, number, runs in kept}
        except (ValueError, TypeError):
            self.retried = {}
        stored = apply.stored_identities(list(self.retried))
        todo = [identity for identity in self.retried if identity not in stored]
        if todo:
            self.summary.add(self.fetch(todo))

    def _retry_state(self) -> str:
        """The retry list to store with the sync anchor: this run's failures, each with its failed runs."""
        kept = []
        for identity in dict.fromkeys((f["UpdateID"], int(f["RevisionNumber"])) for f in self.summary.failed):
            runs = self.retried.get(identity, 0) + 1
            if runs >= RETRY_RUNS:
                log.warning("sync from %s: %s revision %d failed %d runs; not fetched again",
                            self.options.upstream, identity[0], identity[1], runs)
                continue
            kept.append([identity[0], identity[1], runs])
        self.summary.retry = len(kept)
        return json.dumps(kept[:MAX_RETRY])

    def _close_category_list(self) -> None:
        if self.category_list is not None:
            self.category_list.close()
            self.category_list = None

    def _categories(self) -> None:
        state = self.state()
        self._close_category_list()
        listed = self.revision_list(anchor=state.sync_anchor, get_config=True)
        self.category_list = listed
        self._fetch_new(listed)
        # categories and detectoids arrive in UpdateID order, a product before its family: released
        # now, before the updates naming them come, which would otherwise all be held behind them
        self._release()
        if self.options.mode == "fault-in":  # no updates phase: the categories' anchor completes the sync
            with write_transaction():
                self._save(sync_anchor=listed.anchor, retry=self._retry_state())

    def _release(self) -> None:
        """Held revisions whose names are all present now move into the catalog (D4)."""
        applied = apply.Applied()
        apply.release_held(applied)
        self.summary.add(applied)

    def _updates(self) -> None:
        state = self.state()
        previous = set(json.loads(state.selection or "[]"))
        products = [(uid, uid in previous) for uid in self.options.products]
        classes = [(uid, uid in previous) for uid in self.options.classifications]
        listed = self.revision_list(anchor=self.state().sync_anchor, get_config=False, categories=products,
                                    classifications=classes)
        try:
            self._fetch_new(listed)
        finally:
            listed.close()
        # the earlier of the two lists' anchors: a change between them is listed again next time (harmless)
        anchor = self.category_list.anchor if self.category_list and self.category_list.anchor else listed.anchor
        with write_transaction():
            self._save(sync_anchor=anchor, retry=self._retry_state(),
                       selection=json.dumps(sorted({*self.options.products, *self.options.classifications})))

    # -- 5. deployments (replica) ---------------------------------------------------------------------------

    def _deployments(self) -> None:
        assert self.cookie is not None
        state = self.state()
        found = self.call("GetDeployments", messages.get_deployments(self.cookie, state.deployment_anchor,
                                                                     state.sync_anchor))
        result = messages.deployments(found)
        failed = {failure["UpdateID"] for failure in self.summary.failed}
        with write_transaction():
            outcome = deployments.apply_deployments(result, actor=self.options.actor, failed=failed)
            self.summary.deployments += outcome.changed
            self.summary.deployments_waiting = outcome.waiting
            if outcome.waiting:
                log.warning("sync from %s: %d deployment(s) name an update not here yet; the deployment anchor "
                            "stays at %s", self.options.upstream, outcome.waiting, state.deployment_anchor or "none")
            else:
                self._save(deployment_anchor=result.anchor)

    # -- 7. rollup (before the content, as [MS-WSUSSS] §3.2.4.5 allows) -----------------------------------

    def _rollup(self) -> None:
        """Report this server's computers (and those rolled up here) to the upstream. A failure is
        logged and put in the summary: reporting never costs the catalog this run brought."""
        if self.rollup_config is None:
            self.summary.rollup = {"Skipped": "the upstream has no rollup service"}
            return
        try:
            self.summary.rollup = rollup.roll_up(self, self.rollup_config, me=self.options.account_guid,
                                                 name=self.options.account_name, version=self.options.version)
        except (UpstreamFault, BadAnswer, Unreachable, RuntimeError, OSError) as exc:
            log.warning("sync from %s: the rollup failed: %s; the next run sends it again", self.options.upstream, exc)
            self.summary.rollup = {"Error": str(exc)[:500]}

    # -- 6. content --------------------------------------------------------------------------------------

    def _content(self) -> None:
        config = self.config
        if config is None:
            return
        items = files.wanted(lazy=config.lazy_sync)
        fetcher = files.Fetcher(self.upstream, self.store, self.summary.files, catalog_only=config.catalog_only,
                                on_request=self.on_content_request)
        files.fetch_all(items, fetcher, parallel=self.options.parallel, on_missing=self._ask_upstream)

    def _ask_upstream(self, missing: list[files.Wanted]) -> None:
        """A 404: ask the upstream to fetch them from its origin (DownloadFiles, ≤ 100 a call)."""
        assert self.cookie is not None
        for start in range(0, len(missing), 100):
            chunk = missing[start:start + 100]
            try:
                self.call("DownloadFiles", messages.download_files(self.cookie, [item.sha1 for item in chunk]))
            except UpstreamFault as fault:
                if fault.error_code != "FileDigestsMissing":
                    log.warning("sync from %s: DownloadFiles: %s", self.options.upstream, fault)
                    continue
                unknown = set(filter(None, (messages.sha1_hex(part) for part in fault.message.split("|"))))
                for item in chunk:
                    if item.sha1 in unknown or not unknown:
                        files.mark(item.sha1, files.UNAVAILABLE, "FileDigestsMissing from DownloadFiles")
