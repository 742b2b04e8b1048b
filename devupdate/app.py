"""The Flask application factory: wires settings, database, filestore and feature blueprints."""

from __future__ import annotations

import atexit
import logging

from flask import Flask, jsonify

from devupdate import db
from devupdate.devices.failures import FailureLimiter
from devupdate.devices.snapshot import SnapshotHolder
from devupdate.devices.users import HashGate
from devupdate.runtime import Runtime
from devupdate.web.network import NetworkPolicy


def create_app(runtime: Runtime, *, background: bool = True) -> Flask:
    """One app per worker process; each thread keeps its database connection between requests.

    ``background`` starts the worker's daemon threads (snapshot refresh, log flushing, cleanup);
    tests that drive the app in-process may leave them off.
    """
    app = Flask("devupdate")
    app.config["MAX_CONTENT_LENGTH"] = None
    app.extensions["devupdate"] = runtime
    app.extensions["snapshots"] = SnapshotHolder(max_age=runtime.settings.snapshot_max_age)
    app.extensions["network"] = NetworkPolicy.from_settings(runtime.settings)
    settings = runtime.settings
    from devupdate.devices import credentials
    from devupdate.devices.access import SCHEMES_EXTENSION

    gate = HashGate.for_threads(settings.threads, settings.effective_password_check_slots)
    app.extensions["password_gate"] = gate  # shared by every scrypt run of the worker (devices, console)
    users = credentials.user_store(settings, gate=gate)
    app.extensions["users"] = users
    app.extensions[SCHEMES_EXTENSION] = credentials.schemes(settings, users)
    app.extensions["auth_failures"] = FailureLimiter(settings.external_auth_failure_limit,
                                                     settings.external_auth_failure_window)

    @app.before_request
    def _connect() -> None:
        try:
            db.database.connect(reuse_if_open=True)
        except Exception:  # noqa: BLE001 - database away: the view's first query says so (or reconnects)
            pass

    @app.get("/healthz")
    def healthz():
        """Readiness: the database answers and this worker's snapshot is fresh (devupdate.health)."""
        from devupdate import health

        code, body = health.status(app.extensions["snapshots"])
        response = jsonify(body)
        # which rules generation this worker serves: a change is everywhere once every worker says so
        response.headers["X-Snapshot-Generation"] = str(app.extensions["snapshots"].generation)
        return response, code

    # --- server-level refusals on device paths: the device XML error body, not Flask's HTML ---------
    from devupdate.web import errors as web_errors

    web_errors.install(app)
    # --- device routes (update checks) -----------------------------------------------------------
    from devupdate.devices import check

    check.install(app, runtime, background=background)
    # --- device file routes (downloads, log uploads) ---------------------------------------------
    from devupdate.devices import downloads, logupload

    app.register_blueprint(downloads.bp)
    app.register_blueprint(logupload.bp)
    if background:
        from devupdate.devices.cleanup_job import LogCleanupJob

        app.extensions["log_cleanup"] = LogCleanupJob(runtime.store, runtime.settings.home)
        app.extensions["log_cleanup"].start()

    # --- staged rollouts: the watch that halts them and starts their stages (one process at a time) ---
    from devupdate.devices import rollout_watch  # also registers the rollout metrics

    if background and runtime.settings.rollout_check_seconds:
        app.extensions["rollout_watch"] = rollout_watch.RolloutWatchJob(runtime.settings.home,
                                                                        runtime.settings.rollout_check_seconds)
        app.extensions["rollout_watch"].start()
        app.extensions.setdefault("shutdown", []).append(app.extensions["rollout_watch"].stop)

    # --- WSUS front: the SOAP services (client, reporting, server sync) -----------------------------
    from devupdate.wsus.soap import endpoint as wsus_soap

    wsus_soap.install(app, runtime)
    if background:  # the auto-approval rules, hourly in one process of the installation (W8)
        from devupdate.wsus.targeting import autoapproval

        app.extensions["wsus_auto_approval"] = autoapproval.start_job(
            runtime.settings.home, runtime.settings.wsus_auto_approval_interval)
        app.extensions.setdefault("shutdown", []).append(app.extensions["wsus_auto_approval"].stop)
        from devupdate.wsus.compliance import store as compliance_store  # the event log's retention

        app.extensions["wsus_event_prune"] = compliance_store.start_prune_job(runtime.settings)
        app.extensions["shutdown"].append(app.extensions["wsus_event_prune"].stop)
        if runtime.settings.wsus_upstream_url:  # the scheduled downstream sync (D1), one run at a time
            from devupdate.wsus.downstream import service as downstream

            app.extensions["wsus_sync"] = downstream.start_job(runtime.settings, runtime.store)
            app.extensions["shutdown"].append(app.extensions["wsus_sync"].stop)
    # --- WSUS front: /Content (every stored file by SHA-1) and /SelfUpdate ------------------------------
    from devupdate.wsus import content as wsus_content

    wsus_content.install(app, runtime)

    # --- admin: JSON API and metrics ------------------------------------------------------------
    from devupdate.admin import api, metrics_view

    api.install(app)
    metrics_view.install(app, runtime)

    # --- admin: web console ----------------------------------------------------------------------
    from devupdate.admin import console

    console.install(app, runtime)  # /console, and / redirects there

    if background:
        app.extensions["snapshots"].start()
        atexit.register(shutdown, app)
    return app


def shutdown(app: Flask) -> None:
    """Flush and stop the worker's background writers (audit log, inventory); idempotent.

    Called by gunicorn's ``worker_exit`` hook and, as a fallback, at interpreter exit.
    """
    hooks = app.extensions.get("shutdown", [])
    while hooks:
        hook = hooks.pop(0)
        try:
            hook()
        except Exception:  # noqa: BLE001 - one failing flush must not stop the others
            logging.getLogger("devupdate.app").exception("shutdown hook %r failed", hook)
