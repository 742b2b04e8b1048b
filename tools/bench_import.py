"""Benchmark: ``devupdate import`` of a ~100 MB MSZIP cab against ``cabextract`` on the same cab.

Both run as child processes in the same run, alternating, several rounds; the figure that counts
is the ratio of medians (import ÷ cabextract), because this machine is noisy. Peak RSS of the
import is read from the child's own rusage (wait4), so the benchmark's memory does not leak in.

    python tools/bench_import.py [--size-mb 110] [--rounds 3] [--content firmware|compressible]

``firmware`` (the default, and what vendor images look like) is 90 % incompressible: MSZIP stores
it, so cabextract does little more than copy. ``compressible`` (25 % random) makes both inflate.
The run also times the Python floor — interpreter start plus importing the import code — which
no amount of work in the import itself can go below.

Targets (issue 2): ratio ≤ 2.0, peak RSS ≤ 3× the cab size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUILD = r"""
import random, sys
from pathlib import Path
from devupdate.packages import FileRef, UpdateDescription, build_package
out, size, random_share = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rng = random.Random(42)
models = ["CX500", "CX600", "CX700", "CX3000"]
updates, images, catalogs = [], {}, {}
per_image = size // len(models)
for index, model in enumerate(models):
    name = f"{model}_CPE.nbt"
    # firmware-like: mostly compressed payload, some repetitive tables and strings
    noise = rng.randbytes(int(per_image * random_share))
    text = (f"{model} firmware build 4.0.7577.4372 segment ".encode() * (per_image // 40 + 1))[: per_image - len(noise)]
    images[name] = noise + text
    catalogs[f"{model}_CPE.cat"] = b"catalog " + name.encode()
    updates.append(UpdateDescription(id=f"5a1d2c3e-0b7f-4f0e-9c39-2c1b7e0e5d1{index}", device_type="UCPhone",
                                     brand="Polycom", model=model, revision="A", locale="ENU", update_type="CPE",
                                     version="4.0.7577.4372", files=(FileRef(name, f"{model}_CPE.cat"),)))
build_package(out, updates, images, catalogs)
"""


def run_child(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time and peak RSS (bytes) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.read().decode(errors='replace')}")
    return elapsed, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=110, help="uncompressed MiB (110 → a ~100 MB cab)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--content", choices=("firmware", "compressible"), default="firmware")
    options = parser.parse_args()
    cabextract = shutil.which("cabextract")
    if not cabextract:
        raise SystemExit("cabextract is not installed (apt-get install cabextract)")
    with tempfile.TemporaryDirectory(prefix="bench-import-") as scratch:
        work = Path(scratch)
        cab = work / "UCUpdates.cab"
        share = "0.9" if options.content == "firmware" else "0.25"
        subprocess.run([sys.executable, "-c", BUILD, str(cab), str(options.size_mb * 1024**2), share], check=True)
        cab_size = cab.stat().st_size
        print(f"cab: {cab_size / 1e6:.1f} MB MSZIP, {options.size_mb} MiB uncompressed ({options.content})")
        imports, extracts, equivalents, peaks, floors = [], [], [], [], []
        for round_number in range(options.rounds):
            home = work / f"home{round_number}"
            env = {**os.environ, "DEVUPDATE_HOME": str(home), "DEVUPDATE_ACTOR": "bench"}
            env.pop("DEVUPDATE_DATABASE_URL", None)
            subprocess.run([sys.executable, "-m", "devupdate", "db", "upgrade"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            elapsed, peak = run_child([sys.executable, "-m", "devupdate", "import", str(cab)], env)
            imports.append(elapsed)
            peaks.append(peak)
            out = work / f"extract{round_number}"
            out.mkdir()
            extracts.append(run_child([cabextract, "-q", "-d", str(out), str(cab)], dict(os.environ))[0])
            shutil.rmtree(out)
            out.mkdir()
            # the same work with C tools: extract, then SHA-256 of the cab and SHA-256 + SHA-1 of every member
            pipeline = (f"{cabextract} -q -d {out} {cab} && sha256sum {cab} >/dev/null && "
                        f"find {out} -type f -exec sha256sum {{}} + >/dev/null && "
                        f"find {out} -type f -exec sha1sum {{}} + >/dev/null")
            equivalents.append(run_child(["sh", "-c", pipeline], dict(os.environ))[0])
            floors.append(run_child([sys.executable, "-c", "import devupdate.cli, devupdate.imports.service"], env)[0])
            shutil.rmtree(out)
            shutil.rmtree(home)
            print(f"round {round_number + 1}: import {imports[-1]:.2f} s (peak RSS {peak / 1e6:.0f} MB), "
                  f"cabextract {extracts[-1]:.2f} s, cabextract+sha256sum+sha1sum {equivalents[-1]:.2f} s")
        ratio = statistics.median(imports) / statistics.median(extracts)
        peak = max(peaks)
        print(f"median import {statistics.median(imports):.2f} s, "
              f"median cabextract {statistics.median(extracts):.2f} s")
        print(f"ratio import/cabextract: {ratio:.2f} (target <= 2.0)")
        print(f"Python floor (start + import the code, no work): {statistics.median(floors):.2f} s = "
              f"{statistics.median(floors) / statistics.median(extracts):.2f}x cabextract")
        print(f"ratio import/(cabextract + the same hashes with coreutils): "
              f"{statistics.median(imports) / statistics.median(equivalents):.2f}")
        print(f"peak RSS of import: {peak / 1e6:.0f} MB = {peak / cab_size:.2f}x the cab (target <= 3.0x)")


if __name__ == "__main__":
    main()
