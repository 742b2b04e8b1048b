"""The captured Delivery Optimization range requests of ``wsus-m0-native/content-headers/`` replayed
unchanged (but the path) against a file of the recorded size, 204,745,168 bytes, imported for real;
the worker's memory stays flat while the whole file is downloaded."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading

from helpers.tools import require_tool
from wsus.catalogkit import NATIVE

SIZE = 204745168
CASES = ("first-range-by-offset", "middle-range", "final-range")


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _recorded(case: str) -> tuple[list[str], dict[str, str]]:
    request = (NATIVE / "content-headers" / case / "request.headers").read_text("latin-1").splitlines()
    sent = [line for line in request[1:] if line and not line.lower().startswith("host:")]
    response = (NATIVE / "content-headers" / case / "response.headers").read_text("latin-1").splitlines()
    return sent, {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in response[1:] if line)}


def test_captured_ranges_and_flat_memory(install, live_server, tmp_path):
    curl = require_tool("curl")
    image = tmp_path / "CPE.nbt"
    with open(image, "wb") as handle:
        for block in range(SIZE >> 20):
            handle.write(block.to_bytes(8, "big") + os.urandom((1 << 20) - 8))
        handle.write(os.urandom(SIZE - handle.tell()))
    (tmp_path / "CPE.cat").write_bytes(os.urandom(2048))
    install.cli("pack", str(tmp_path / "big.cab"), str(image), str(tmp_path / "CPE.cat"), "--brand", "Polycom",
                "--model", "CX600", "--version", "4.0.1.2")
    install.cli("db", "upgrade")
    install.cli("import", str(tmp_path / "big.cab"))
    (tmp_path / "big.cab").unlink()
    sha1 = hashlib.sha1(image.read_bytes()).hexdigest().upper()
    server = live_server(workers=1)
    url = f"{server.url}/Content/{sha1[-2:]}/{sha1}.nbt"

    for case in CASES:
        sent, recorded = _recorded(case)
        args = [x for line in sent for x in ("-H", line)]
        proc = subprocess.run([curl, "-sS", "-D", "-", "-o", str(tmp_path / "part"), *args, url],
                              capture_output=True, timeout=60)
        lines = proc.stdout.decode("latin-1").split("\r\n")
        got = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        assert lines[0].split()[1] == "206", case
        assert (got["content-range"], got["content-length"]) == (recorded["content-range"],
                                                                 recorded["content-length"]), case
        first, last = map(int, recorded["content-range"].split()[1].split("/")[0].split("-"))
        with open(image, "rb") as handle:
            handle.seek(first)
            assert (tmp_path / "part").read_bytes() == handle.read(last - first + 1), case

    workers = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout.split()
    worker = int(workers[0])
    before, peak, done = _rss_kib(worker), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _rss_kib(worker))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        proc = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{size_download}", "--limit-rate", "400M", url],
                              capture_output=True, text=True, timeout=120)
    finally:
        done.set()
        sampler.join()
    assert proc.stdout == str(SIZE)
    assert peak[0] - before < 16 * 1024, (before, peak[0])  # KiB: far below the 195 MiB file
