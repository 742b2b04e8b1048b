"""Real external tools the tests drive: skip with the reason (and the fix) when one is missing."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

PACKAGES = {"dig": "bind9-dnsutils", "named": "bind9", "tsig-keygen": "bind9", "chromium": "chromium",
            "promtool": "prometheus"}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed (apt-get install {PACKAGES.get(name, name)}); .ci/run installs it")
    return path


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_port(port: int, timeout: float = 30) -> None:
    """Until something accepts TCP connections on the loopback ``port``."""
    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    if not wait_for(listening, timeout):
        raise AssertionError(f"nothing listens on {port}")
