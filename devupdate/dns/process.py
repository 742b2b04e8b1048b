"""Run the responder beside the HTTP service (``devupdate serve --dns``) as a child process.

Not threads in the gunicorn master: the master forks workers, and forking a process whose other
threads may hold locks (logging, the GIL's friends) can deadlock the child. A child process also
keeps the DNS hot loop off the cores' share of the HTTP workers' GIL. It exits with its parent
even when the parent is killed (``--parent-pid`` watch), so port 53 is never left held.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[2])
_ENTRY = "from devupdate.dns.cli import group; group(prog_name='devupdate dns')"


def spawn(host: str | None = None, port: int | None = None, rate_limit: float | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``devupdate dns serve`` as a child that stops when this process goes away."""
    args = [sys.executable, "-c", _ENTRY, "serve", "--parent-pid", str(os.getpid())]
    if host:
        args += ["--host", host]
    if port is not None:
        args += ["--port", str(port)]
    if rate_limit is not None:
        args += ["--rate-limit", str(rate_limit)]
    environ = dict(os.environ if env is None else env)
    paths = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    environ["PYTHONPATH"] = os.pathsep.join([_REPO, *paths])  # same devupdate as the parent, installed or not
    return subprocess.Popen(args, env=environ)


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> int:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``; returns the exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
