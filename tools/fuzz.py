#!/usr/bin/env python3
"""Run the property-based fuzzing suite (tests/fuzz) longer than the test suite does.

The suite runs every property with a small example budget (``DEVUPDATE_FUZZ_EXAMPLES``, default
25) so it stays fast; ``--fuzz`` runs the same properties with thousands of examples each — the
update-check, description, cab, log-name and audit-row parsers in-process, and the live update
check and log upload against a real ``devupdate serve``. Prints hypothesis' statistics (what
the examples exercised) and exits non-zero on the first falsified property, with the example and
a ``@reproduce_failure`` line to replay it.

    python tools/fuzz.py --fuzz                      # 2,000 examples per property
    python tools/fuzz.py --fuzz --examples 20000 -k cab
    python tools/fuzz.py --fuzz --seed 1234          # replay a run
    python tools/fuzz.py                             # the suite's own size, as a smoke test

Run from a clone (it needs tests/); PostgreSQL: set DEVUPDATE_TEST_DATABASE as for the suite.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "tests" / "fuzz"
LONG_RUN = 2000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fuzz", action="store_true", help=f"Run long: {LONG_RUN} examples per property "
                        "unless --examples says otherwise.")
    parser.add_argument("--examples", type=int, help="Examples per property.")
    parser.add_argument("--seed", type=int, help="Hypothesis seed, to replay a run.")
    parser.add_argument("-k", dest="select", help="Only the properties whose test names match (pytest -k).")
    parser.add_argument("--timeout", type=int, default=0, help="Seconds per property (default: none).")
    args = parser.parse_args(argv)
    if not SUITE.is_dir():
        parser.error(f"no fuzzing suite at {SUITE}; run this from a clone of the repository")
    examples = args.examples if args.examples is not None else (LONG_RUN if args.fuzz else None)
    if examples is not None and examples < 1:
        parser.error("--examples must be at least 1")

    env = dict(os.environ)
    if examples is not None:
        env["DEVUPDATE_FUZZ_EXAMPLES"] = str(examples)
    command = [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider", "-x",
               "--hypothesis-show-statistics", f"--timeout={args.timeout}"]
    if args.seed is not None:
        command.append(f"--hypothesis-seed={args.seed}")
    if args.select:
        command += ["-k", args.select]
    shown = env.get("DEVUPDATE_FUZZ_EXAMPLES", "the suite's default")
    print(f"fuzz: {shown} examples per property, seed {args.seed if args.seed is not None else 'random'}",
          flush=True)
    started = time.monotonic()
    proc = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stdout.write(proc.stdout)
    summary = re.findall(r"(\d+) (passed|failed|error)", proc.stdout)
    counts = {kind: int(n) for n, kind in summary}
    print(f"fuzz: {counts.get('passed', 0)} properties held, {counts.get('failed', 0) + counts.get('error', 0)} "
          f"falsified, {time.monotonic() - started:.0f} s (pytest exit {proc.returncode})")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
