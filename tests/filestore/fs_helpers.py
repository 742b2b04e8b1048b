"""Helpers shared by the filestore tests (imported by name: conftest puts this folder on sys.path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

from filestore import AreaConfig

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("fs_worker.py")
MiB = 1 << 20


def areas_json(areas: dict[str, AreaConfig]) -> str:
    return json.dumps({k: [v.quota_bytes, v.warn_fraction] for k, v in areas.items()})


def worker(*args: object) -> subprocess.Popen[str]:
    """Start fs_worker.py in a fresh interpreter: a really separate process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{err}"
    return out


def temp_files(root: Path) -> list[Path]:
    return sorted(root.rglob(".tmp-*"))


def disk_usage(area_dir: Path) -> tuple[int, int]:
    """Bytes and count of stored files, walked independently of the store."""
    files = [p for p in area_dir.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")]
    return sum(p.stat().st_size for p in files), len(files)


def slurp(f: BinaryIO) -> bytes:
    """Read and close (the tests run with ResourceWarning as an error)."""
    with f:
        return f.read()
