"""``devupdate serve``: gunicorn in front of the app, configured from settings.

The master upgrades the schema and clears crashed imports once; each worker then opens its own
database connection and filestore after the fork. SIGTERM lets requests in flight finish
(``graceful_timeout``) before exiting — what process supervisors and orchestrators send.
The workers are :class:`devupdate.web.worker.DevupdateWorker`: an event loop reads requests under
deadlines and per-source limits, threads run the app only on requests that have fully arrived.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import socket
import subprocess
import sys

from gunicorn.app.base import BaseApplication

from devupdate.errors import DevupdateError
from devupdate.runtime import open_runtime
from devupdate.settings import Settings
from devupdate.tls.certs import startup_check, tls_paths

log = logging.getLogger("devupdate.server")


def _worker_exit(server, worker) -> None:
    """Flush the worker's audit log and inventory before it exits (SIGTERM, max requests)."""
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        from devupdate.app import shutdown

        shutdown(app)
    from devupdate.metrics import worker_exited  # --- admin: metrics

    worker_exited(worker.pid)


def _post_worker_init(worker) -> None:
    """The worker's app is loaded: settle its heap before the first request (see check.settle_heap)."""
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        from devupdate.devices.check import settle_heap

        settle_heap(app)


class DevupdateServer(BaseApplication):
    """One gunicorn arbiter: plain HTTP on ``port``, or (``tls``) HTTPS on ``tls_port``."""

    def __init__(self, settings: Settings, *, tls: bool = False):
        self.settings = settings
        self.tls = tls
        from devupdate.devices.failures import prepare_shared

        prepare_shared()  # before the workers fork: they share the failed-login counts
        super().__init__()

    def load_config(self) -> None:
        port = self.settings.tls_port if self.tls else self.settings.port
        host = self.settings.host
        options = {
            "bind": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
            "workers": self.settings.workers,
            "worker_class": "devupdate.web.worker.DevupdateWorker",
            "threads": self.settings.threads,
            "graceful_timeout": self.settings.graceful_timeout,
            "timeout": 120,
            "keepalive": self.settings.keepalive_timeout,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "devupdate-tls" if self.tls else "devupdate",
            "worker_exit": _worker_exit,
            "post_worker_init": _post_worker_init,
            # the scheme is our NetworkPolicy's call (trusted proxies from settings), not gunicorn's
            "secure_scheme_headers": {},
        }
        if self.tls:
            paths = tls_paths(self.settings)
            options.update(certfile=str(paths.cert), keyfile=str(paths.key))
        if "control_socket_disable" in self.cfg.settings:  # gunicorn ≥ 25.1: one socket per user, shared by
            options["control_socket_disable"] = True  # every instance on the machine; signals do the job
        for key, value in options.items():
            self.cfg.set(key, value)
        from devupdate.web import sources

        sources.prepare(self.settings.workers)  # in the master: one connection table shared by its workers

    def load(self):
        from devupdate.app import create_app

        return create_app(open_runtime(self.settings))


LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def configure_logging() -> None:
    """The service's own log lines on stderr beside gunicorn's, with time, process and source
    (without it Python prints bare warnings and drops the rest)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S %z")


def check_port_free(host: str, port: int, setting: str) -> None:
    """Refuse at once, in one line, when something already listens on ``host:port`` (gunicorn would
    retry five times, a second apart, and then exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                option = " or --port" if setting == "DEVUPDATE_PORT" else ""
                raise DevupdateError(f"port {port} on {host} is already in use (another 'devupdate serve'?): "
                                     f"stop it, or choose another port with {setting}{option}",
                                     code="port-in-use") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise DevupdateError(f"{host} is not an address of this machine: set DEVUPDATE_HOST or --host",
                                     code="bad-host") from None
            if exc.errno == errno.EACCES:
                raise DevupdateError(f"port {port} needs privileges to listen on: choose a port above 1023 "
                                     f"with {setting}", code="port-denied") from None
            raise


def run(settings: Settings, *, tls: bool = False, dns: bool = False) -> None:
    """Serve until SIGTERM. ``tls`` adds an HTTPS arbiter on ``tls_port`` (a child process: gunicorn
    applies one certificate to every listener, and phones fetch internal images over plain HTTP);
    ``dns`` adds the discovery responder as a child process. Children die with this process."""
    check_port_free(settings.host, settings.port, "DEVUPDATE_PORT")
    if tls:
        check_port_free(settings.host, settings.tls_port, "DEVUPDATE_TLS_PORT")
    configure_logging()
    paths = tls_paths(settings)
    if tls and not (paths.cert.is_file() and paths.key.is_file()):
        raise DevupdateError(f"no certificate at {paths.cert}: run 'devupdate cert create' (or put the "
                             "organisation's certificate and key there)", code="no-certificate")
    if tls:  # the external side is HTTPS only: plain-HTTP Ext requests would carry credentials in the clear
        settings = dataclasses.replace(settings, external_https_only=True)
    if paths.cert.is_file():
        for warning in startup_check(settings):
            log.warning("certificate: %s", warning)
    open_runtime(settings, upgrade=True)  # once, in the master, before any worker starts
    from devupdate.startup import announce

    announce(settings, tls=tls, dns=dns)
    # --- admin: metrics — every worker (and the TLS listener's) counts in one shared directory ---
    from devupdate.audit.requestlog import safe_server_name
    from devupdate.metrics import prepare_multiprocess

    prepare_multiprocess(settings.home, f"{safe_server_name(settings.effective_server_name)}-{settings.port}")
    from devupdate import db

    db.database.close()  # workers open their own connections after the fork
    children: list[subprocess.Popen] = []
    try:
        if dns:
            from devupdate.dns import process

            children.append(process.spawn(settings.dns_host, settings.dns_port, settings.dns_rate_limit))
        if tls:
            children.append(subprocess.Popen(
                [sys.executable, "-m", "devupdate", "serve", "--listener", "tls", "--host", settings.host,
                 "--workers", str(settings.workers)], preexec_fn=_die_with_parent,
                env={**os.environ, "DEVUPDATE_EXTERNAL_HTTPS_ONLY": "true"}))
        DevupdateServer(settings).run()
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=settings.graceful_timeout + 5)
            except subprocess.TimeoutExpired:
                child.kill()


def run_listener(settings: Settings, listener: str) -> None:
    """The HTTPS arbiter started by ``run(tls=True)``; the schema is already current."""
    configure_logging()
    DevupdateServer(settings, tls=listener == "tls").run()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies, even by SIGKILL (Linux)."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1  # noqa: N806 - the kernel's name
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
