"""The suite must leave the repository's tree as it found it: tests write into temporary folders,
never into tracked files (docs/screenshots/ is refreshed by ``tools/screenshots.py``, on purpose).

``state`` is what ``git status`` reports (changed tracked files and untracked, not ignored ones)
plus the modification time of every tracked file — a rewrite with the same bytes counts too; the
session compares it before and after (``tests/conftest.py``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

State = tuple[set[str], dict[str, int]]


def _git(repo: Path, *args: str) -> bytes | None:
    git = shutil.which("git")
    if git is None:
        return None
    proc = subprocess.run([git, "-C", str(repo), *args], capture_output=True, check=False, timeout=60)
    return proc.stdout if proc.returncode == 0 else None


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def state(repo: Path) -> State | None:
    """The work tree's ``git status`` entries and tracked files' mtimes; None without git or a repository."""
    status = _git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    tracked = _git(repo, "ls-files", "-z")
    if status is None or tracked is None:
        return None
    entries = {entry.decode("utf-8", "replace") for entry in status.split(b"\0") if entry}
    names = [name.decode("utf-8", "replace") for name in tracked.split(b"\0") if name]
    return entries, {name: _mtime(repo / name) for name in names}


def written(repo: Path, before: State | None) -> list[str]:
    """What appeared or was rewritten in the work tree since ``before``."""
    if before is None:
        return []
    after = state(repo)
    if after is None:
        return []
    entries, mtimes = before
    rewritten = {f"rewritten {name}" for name, mtime in mtimes.items() if after[1].get(name, mtime) != mtime}
    return sorted((after[0] - entries) | rewritten)
