"""Fixtures for the filestore tests: real directories under tmp_path, real processes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _p in (str(_HERE.parents[1]), str(_HERE)):  # the package, and fs_helpers, from any checkout
    if _p not in sys.path:
        sys.path.insert(0, _p)

from fs_helpers import MiB  # noqa: E402

from filestore import AreaConfig, FileStore  # noqa: E402


@pytest.fixture
def areas() -> dict[str, AreaConfig]:
    return {
        "images": AreaConfig(quota_bytes=20 * MiB),
        "logs/client": AreaConfig(quota_bytes=5 * MiB, warn_fraction=0.5),
        "logs/audit": AreaConfig(),
        "incoming": AreaConfig(quota_bytes=10 * MiB),
    }


@pytest.fixture
def make_store(tmp_path: Path, areas: dict[str, AreaConfig]) -> Callable[..., FileStore]:
    """Factory: each call opens the same root again, like another process would."""
    root = tmp_path / "store"

    def make(**overrides: AreaConfig) -> FileStore:
        return FileStore(root, {**areas, **overrides})

    return make


@pytest.fixture
def store(make_store: Callable[..., FileStore]) -> FileStore:
    return make_store()
