"""The import budget on a ~100 MB MSZIP package (slow: run with ``pytest -m slow -s``).

Budget: open_package + streaming and SHA-256 of every member within 2x of ``cabextract -d``
on the same file, and peak RSS under 3x the cab size. Both sides run in fresh processes.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.cabs import make_update

from devupdate.packages import describe_updates, write_cab

REPO = Path(__file__).resolve().parents[2]
IMPORTER = """
import hashlib, json, sys, time
from devupdate.packages import open_package
started = time.perf_counter()
with open_package(sys.argv[1]) as package:
    for member in package.members.values():
        digest = hashlib.sha256()
        with member.open() as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
seconds = time.perf_counter() - started
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would count the forking parent.
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "maxrss": peak}))
"""


def build_cab(path: Path) -> None:
    """~100 MB: 88 MiB of noise (stored as-is by deflate) and ~100 MB of log text (compresses ~8:1)."""
    rng = random.Random(7)
    line = b"2026-07-21 12:00:%02d kernel: eth0 link up, 100 Mbps full duplex, flow control rx/tx seq=%08d\n"
    text = b"".join(line % (i % 60, rng.randrange(10**8)) for i in range(1_100_000))
    update = make_update()
    (ref,) = update.files
    write_cab(path, {ref.name: rng.randbytes(88 * 2**20), ref.catalog: b"catalog", "log.txt": text,
                     "UCUpdates.xml": describe_updates([update])})


def time_cabextract(cab: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["cabextract", "-q", "-d", str(out), str(cab)], check=True)
    return time.perf_counter() - started


@pytest.mark.slow
def test_hundred_megabyte_import_budget(tmp_path, cabextract):
    cab = tmp_path / "big.cab"
    build_cab(cab)
    size = cab.stat().st_size
    ours, theirs = [], []
    for run in range(5):
        theirs.append(time_cabextract(cab, tmp_path / f"x{run}"))
        proc = subprocess.run([sys.executable, "-c", IMPORTER, str(cab)], capture_output=True, text=True,
                              check=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        ours.append(json.loads(proc.stdout))
    seconds = statistics.median(r["seconds"] for r in ours)
    baseline = statistics.median(theirs)
    peak = max(r["maxrss"] for r in ours)
    print(f"\ncab {size / 1e6:.1f} MB: open_package+stream+sha256 median {seconds:.2f}s "
          f"(runs {[round(r['seconds'], 2) for r in ours]}), cabextract -d median {baseline:.2f}s "
          f"(runs {[round(t, 2) for t in theirs]}), ratio {seconds / baseline:.2f}; "
          f"peak RSS {peak / 1e6:.0f} MB = {peak / size:.2f}x the cab")
    assert peak < 3 * size
    assert seconds < 2 * baseline
