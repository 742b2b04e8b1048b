"""An installation (data dir + database) driven through the real CLI, and ``devupdate serve`` in a subprocess.

Kept out of conftest.py so a test module can import them by a name no other conftest shadows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers.tools import free_port


class Installation:
    """A data directory and database, with helpers to run the real CLI against them."""

    def __init__(self, home: Path, database_url: str):
        self.home = home
        self.database_url = database_url
        self.env = {"DEVUPDATE_HOME": str(home), "DEVUPDATE_ACTOR": "test:admin"}
        if database_url:
            self.env["DEVUPDATE_DATABASE_URL"] = database_url
        self._runtime = None

    def settings(self, **overrides):
        from devupdate.settings import Settings

        environ = {**{k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}, **self.env}
        return Settings.load(environ, **overrides)

    def runtime(self, **overrides):
        from devupdate.runtime import open_runtime

        return open_runtime(self.settings(**overrides), upgrade=True)

    def environ(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}
        return {**base, **self.env, **extra}

    def cli(self, *args: str, check: bool = True, input: str | None = None, **env: str):
        """Run ``devupdate ARGS`` in a real subprocess; returns CompletedProcess (text)."""
        proc = subprocess.run([sys.executable, "-m", "devupdate", *args], capture_output=True, text=True,
                              env=self.environ(**env), input=input, timeout=120, cwd=self.home.parent)
        if check and proc.returncode != 0:
            raise AssertionError(f"devupdate {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def invoke(self, *args: str):
        """Run the CLI in-process (fast); returns click's Result."""
        from click.testing import CliRunner

        from devupdate.cli import main

        return CliRunner().invoke(main, list(args), env=self.environ(), catch_exceptions=False)


class LiveServer:
    """``devupdate serve`` in a real subprocess (gunicorn), on a free loopback port."""

    def __init__(self, install: Installation, workers: int = 2, args: tuple[str, ...] = (), **env: str):
        self.install = install
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {"DEVUPDATE_PORT": str(self.port), "DEVUPDATE_HOST": "127.0.0.1",
                    "DEVUPDATE_WORKERS": str(workers), "DEVUPDATE_GRACEFUL_TIMEOUT": "5", **env}
        self.proc = None
        self.log = install.home / f"server-{self.port}.log"

    def start(self, timeout: float = 30) -> LiveServer:
        import time
        import urllib.request

        self.proc = subprocess.Popen([sys.executable, "-m", "devupdate", "serve", *self.args],
                                     cwd=self.install.home.parent,
                                     env=self.install.environ(**self.env), stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server did not answer /healthz in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> int | None:
        import signal

        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def output(self) -> str:
        return self.log.read_text(errors="replace")
