"""curl as the users' HTTP client in the live tests, and a strict multipart/byteranges parser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


class Curl:
    def __init__(self, directory: Path):
        self.exe = require_tool("curl")
        self.directory = directory
        self.count = 0

    def __call__(self, *args: str, output: Path | None = None, check: bool = True):
        """Run curl; returns (status, headers with lower-case names, body bytes, exit code)."""
        self.count += 1
        head = self.directory / f"head-{self.count}"
        body = output or self.directory / f"body-{self.count}"
        proc = subprocess.run([self.exe, "-sS", "-D", str(head), "-o", str(body), *args],
                              capture_output=True, timeout=60)
        if check:
            assert proc.returncode == 0, proc.stderr
        blocks = [b for b in head.read_bytes().decode("latin-1").split("\r\n\r\n") if b.strip()]
        lines = blocks[-1].split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        data = body.read_bytes() if body.exists() else b""
        return int(lines[0].split()[1]), headers, data, proc.returncode


def parse_byteranges(body: bytes, content_type: str, preamble: bytes = b"") -> list[tuple[dict[str, str], bytes]]:
    """Strict multipart/byteranges parser: the exact framing devupdate promises (nginx puts a CRLF
    preamble before the first boundary)."""
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    closing = b"\r\n--" + boundary + b"--\r\n"
    assert body.startswith(preamble + b"--" + boundary + b"\r\n") and body.endswith(closing)
    inner = (b"\r\n" + body[len(preamble):])[:-len(closing)]
    parts = []
    for chunk in inner.split(b"\r\n--" + boundary + b"\r\n")[1:]:
        head, sep, data = chunk.partition(b"\r\n\r\n")
        assert sep
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((headers, data))
    return parts
