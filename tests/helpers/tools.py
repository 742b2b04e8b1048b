"""Real external tools the tests drive: skip with the reason (and the fix) when one is missing."""

from __future__ import annotations

import shutil
import socket

import pytest

PACKAGES = {"dig": "bind9-dnsutils", "named": "bind9", "tsig-keygen": "bind9", "chromium": "chromium"}


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
