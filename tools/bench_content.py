#!/usr/bin/env python3
"""WSUS ``/Content`` throughput: a 64 MB stored file via ``/Content/<XX>/<SHA1>.nbt`` (gunicorn,
sendfile) vs nginx serving the same file, driven by the same client (``wrk``) in the same run.
Target: devupdate ≥ 0.9 × nginx (spec/wsus.md issue benchmark).

The phone download benchmark on the WSUS route: ``tools/bench_download.py --route content``, which
documents the options (``--size-mb``, ``--connections``, ``--duration``, ``--rounds``, ``--json`` …).

    python tools/bench_content.py
    python tools/bench_content.py --size-mb 64 --connections 8 --duration 10 --rounds 3 --json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.bench_download import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--route", "content", *sys.argv[1:]]))
