"""The downstream sync's actions, one implementation for the CLI, the JSON API, the console and the
schedule: run a sync, show the history, the scheduled job (D1).

One run at a time across every process and node: a run holds the jobs lock ``wsus-sync``
(:class:`devupdate.jobs.NodeLock`); a second request while one runs attaches to it — it waits for
that run to finish and answers with its summary. A run that died (``kill -9``, a lost node) leaves
its history row ``running``; the next run marks it ``interrupted``. The history keeps 30 days.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from devupdate.audit.trail import record
from devupdate.db import iso_utc, utcnow, write_transaction
from devupdate.errors import Conflict, DevupdateError
from devupdate.jobs import NodeLock
from devupdate.settings import Settings
from devupdate.wsus.catalog import store as catalog_store
from devupdate.wsus.client import keys
from devupdate.wsus.downstream.models import HeldRevision, SyncedFile, SyncRun, UpstreamState
from devupdate.wsus.downstream.run import MODES, Options, Run
from devupdate.wsus.downstream.transport import RetryPolicy, Upstream
from filestore import FileStore

log = logging.getLogger("devupdate.wsus.downstream")

LOCK_NAME = "wsus-sync.lock"
ATTACH_POLL = 0.2
JITTER = 0.1
#: SQLite page cache of the syncing connection (KiB): the catalog's random-GUID index pages stay in
#: memory across batches; half the import's, so the process stays well under 300 MiB
SYNC_CACHE_KIB = 128 * 1024


class SyncFailed(DevupdateError):
    """The run stopped; its summary (what it did before) is attached."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message, code="sync-failed")
        self.summary = summary


def lock(settings: Settings) -> NodeLock:
    return NodeLock("wsus-sync", Path(settings.home) / LOCK_NAME)


def upstream_url(settings: Settings, upstream: str | None) -> str:
    url = (upstream or settings.wsus_upstream_url or "").strip()
    if not url:
        raise Conflict("no upstream server: give --upstream URL or set DEVUPDATE_WSUS_UPSTREAM_URL "
                       "(e.g. https://wsus.example.org:8531)", code="no-upstream")
    if not url.startswith(("http://", "https://")):
        raise DevupdateError(f"upstream {url[:80]!r} is not an http:// or https:// URL", code="bad-upstream")
    return url.rstrip("/")


def _authorization(settings: Settings) -> str:
    if settings.wsus_upstream_token:
        return f"Bearer {settings.wsus_upstream_token}"
    if settings.wsus_upstream_basic:
        return "Basic " + base64.b64encode(settings.wsus_upstream_basic.encode()).decode("ascii")
    return ""


def _version() -> str:
    """What the rollup tells the upstream this server runs (``Version``)."""
    from importlib import metadata

    try:
        return f"devupdate {metadata.version('devupdate')}"
    except metadata.PackageNotFoundError:  # a source tree never installed
        return "devupdate"


def run_dict(row: SyncRun) -> dict[str, Any]:
    return {"Id": row.id, "Upstream": row.upstream, "Mode": row.mode, "Trigger": row.trigger, "Host": row.host,
            "Started": iso_utc(row.started_at), "Finished": iso_utc(row.finished_at), "Outcome": row.outcome,
            "Error": row.error, "Summary": json.loads(row.summary or "{}")}


def _interrupt_dead() -> None:
    """Rows left ``running`` by a run that died: this process holds the lock, so none is alive."""
    with write_transaction():
        SyncRun.update(outcome="interrupted", finished_at=utcnow(),
                       error="the run stopped before it finished (process ended); the next run resumed it").where(
            SyncRun.outcome == "running").execute()


def prune_history(days: int) -> int:
    with write_transaction():
        return int(SyncRun.delete().where(SyncRun.started_at < utcnow() - timedelta(days=days),
                                          SyncRun.outcome != "running").execute())


def sync(settings: Settings, store: FileStore, *, upstream: str | None = None, mode: str | None = None,
         trigger: str = "cli", actor: str = "sync", sleep: Callable[[float], None] = time.sleep,
         on_content_request: Callable[[str, dict[str, str]], None] | None = None,
         attach_timeout: float = 6 * 3600) -> dict[str, Any]:
    """One sync run from ``upstream`` (default: the setting); returns its summary."""
    url = upstream_url(settings, upstream)
    mode = mode or settings.wsus_sync_mode
    if mode not in MODES:
        raise DevupdateError(f"sync mode {mode[:40]!r} is not one of {', '.join(MODES)}", code="bad-mode")
    held = lock(settings)
    if not held.acquire():
        return _attach(attach_timeout)
    try:
        _interrupt_dead()
        with write_transaction():
            row = SyncRun.create(upstream=url, mode=mode, trigger=trigger, host=socket.gethostname(), pid=os.getpid())
        options = Options(upstream=url, mode=mode, account_name=settings.effective_server_name,
                          account_guid=keys.server_id(), version=_version(), products=settings.wsus_sync_products,
                          classifications=settings.wsus_sync_classifications,
                          parallel=settings.wsus_sync_downloads, actor=f"sync:{url}"[:200])
        transport = Upstream(url, policy=RetryPolicy(base=settings.wsus_sync_retry_base,
                                                     attempts=settings.wsus_sync_attempts),
                             timeout=settings.wsus_sync_timeout, sleep=sleep, authorization=_authorization(settings))
        run = Run(options, transport, store, on_content_request=on_content_request)
        try:
            with catalog_store.bulk_settings(SYNC_CACHE_KIB):
                summary = run.run()
        except Exception as exc:  # noqa: BLE001 - the run failed: recorded, then told
            done = run.summary.as_dict(transport.traffic)
            with write_transaction():
                SyncRun.update(outcome="failed", finished_at=utcnow(), summary=json.dumps(done),
                               error=str(exc)[:2000]).where(SyncRun.id == row.id).execute()
                record(actor, "wsus.sync", url, outcome="failed", detail={"RunId": row.id, "Error": str(exc)[:500]})
            log.error("sync from %s failed: %s", url, exc)
            raise SyncFailed(f"sync from {url} failed: {exc}; the next run resumes from the stored anchors "
                             "(see 'devupdate wsus sync status')", {"RunId": row.id, **done}) from exc
        done = {"RunId": row.id, **summary.as_dict(transport.traffic)}
        with write_transaction():
            SyncRun.update(outcome="ok", finished_at=utcnow(), summary=json.dumps(done)).where(
                SyncRun.id == row.id).execute()
            changed = summary.new + summary.updated + summary.released + summary.deployments + summary.files.fetched
            if changed:
                record(actor, "wsus.sync", url, outcome="ok", detail={
                    k: done[k] for k in ("RunId", "NewRevisions", "UpdatedRevisions", "DeploymentsApplied")})
        prune_history(settings.wsus_sync_history_days)
        return done
    finally:
        held.release()


def _attach(timeout: float) -> dict[str, Any]:
    """Wait for the run another process holds, and answer with its summary."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = SyncRun.select().where(SyncRun.outcome == "running").order_by(SyncRun.id.desc()).first()
        if running is None:
            last = SyncRun.select().order_by(SyncRun.id.desc()).first()
            if last is not None:
                return {"Attached": True, "RunId": last.id, "Outcome": last.outcome,
                        **json.loads(last.summary or "{}")}
        time.sleep(ATTACH_POLL)
    raise DevupdateError("another sync is still running; see 'devupdate wsus sync status'", code="sync-running")


def runs(limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
    """The run history, newest first; ``before``: only runs with a lower Id (the API's keyset)."""
    query = SyncRun.select().order_by(SyncRun.id.desc()).limit(max(1, min(limit, 1001)))
    if before is not None:
        query = query.where(SyncRun.id < before)
    return [run_dict(row) for row in query]


def status(limit: int = 50) -> dict[str, Any]:
    """The run history (newest first) and what is stored per upstream."""
    runs = [run_dict(row) for row in SyncRun.select().order_by(SyncRun.id.desc()).limit(max(1, min(limit, 1000)))]
    upstreams = [{"Upstream": row.url, "Mode": row.mode, "ServerId": row.server_id,
                  "ConfigAnchor": row.config_anchor, "SyncAnchor": row.sync_anchor,
                  "DeploymentAnchor": row.deployment_anchor, "Config": json.loads(row.config or "{}"),
                  "Updated": iso_utc(row.updated_at)} for row in UpstreamState.select().order_by(UpstreamState.url)]
    return {"Upstreams": upstreams, "Runs": runs, "HeldRevisions": HeldRevision.select().count(),
            "MarkedFiles": [{"SHA1": f.sha1, "State": f.state, "Reason": f.last_error}
                            for f in SyncedFile.select().order_by(SyncedFile.sha1).limit(100)]}


# -- the schedule (D1) ---------------------------------------------------------------------------------

def next_delay(settings: Settings, now: float | None = None, rng: random.Random | None = None) -> float:
    """Seconds until the next scheduled run: the interval ±10 % after the last run started (any node)."""
    rng = rng or random.Random()
    last = SyncRun.select(SyncRun.started_at).order_by(SyncRun.id.desc()).scalar()
    interval = settings.wsus_sync_interval * (1 + rng.uniform(-JITTER, JITTER))
    if last is None:
        return 0.0
    elapsed = (utcnow() - last).total_seconds()
    return max(0.0, interval - elapsed)


def start_job(settings: Settings, store: FileStore) -> Any:
    """The scheduled run as a :class:`devupdate.jobs.PeriodicJob` (started; ``stop()`` at shutdown). Every
    serving worker has one; the lock lets one of them run at a time, the others find it done."""
    from devupdate.jobs import PeriodicJob, Retry

    def step() -> float:
        delay = next_delay(settings)
        if delay > 0:
            return min(delay, 300.0)
        try:
            sync(settings, store, trigger="schedule", attach_timeout=1.0)
        except DevupdateError:
            pass  # failed (in the history; the next run resumes), or another worker runs it
        return min(next_delay(settings) or settings.wsus_sync_interval, 300.0)

    job = PeriodicJob("wsus-sync", step, 300.0, first_delay=60.0,
                      retry=Retry("wsus sync", first=60.0, maximum=900.0, logger=log))
    job.start()
    return job
