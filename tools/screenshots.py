#!/usr/bin/env python3
"""Refresh the console screenshots in docs/screenshots/ from the browser tests.

The tests never write into the tracked tree: their screenshots stay in the test run's folder. This
runs the console's browser tests (system Chromium via Playwright, against a real ``devupdate serve``)
with ``DEVUPDATE_SCREENSHOTS_DIR`` pointing at docs/screenshots/, then lists
what changed. Needs the test dependencies (``pip install -e '.[test]'``) and ``chromium``.

    python tools/screenshots.py [--into DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = (
    "tests/admin/test_console_browser.py::test_upload_approve_dashboard_rollback",
    "tests/admin/test_console_browser.py::test_dashboard_activity_and_rule_rollout_curve",
    "tests/admin/test_console_device_page.py",
    "tests/admin/test_console_bulk_audit.py",
    "tests/wsus/test_targeting_admin_browser.py",
)


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.png"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--into", type=Path, default=REPO / "docs" / "screenshots",
                        help="where the PNGs go (default: docs/screenshots/)")
    args = parser.parse_args()
    into = args.into.resolve()
    into.mkdir(parents=True, exist_ok=True)
    before = _digests(into)
    started = time.time() - 1
    env = {**os.environ, "DEVUPDATE_SCREENSHOTS_DIR": str(into)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n0", "-p", "no:cacheprovider", "-rs", *TESTS],
                          cwd=REPO, env=env, check=False)
    if proc.returncode != 0:
        print(f"screenshots: the browser tests failed (exit {proc.returncode}); {into} may be partly updated",
              file=sys.stderr)
        return 1
    written = {p.name for p in into.glob("*.png") if p.stat().st_mtime >= started}
    if not written:
        print("screenshots: the browser tests took none (skipped? see above)", file=sys.stderr)
        return 1
    after = {name: digest for name, digest in _digests(into).items() if name in written}
    for name, digest in after.items():
        state = "new" if name not in before else ("changed" if before[name] != digest else "unchanged")
        print(f"{into / name}: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
