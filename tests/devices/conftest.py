"""Fixtures of the device tests (see fleet.py for the helpers they use)."""

from __future__ import annotations

import pytest


@pytest.fixture
def site(install):
    """An installation with its schema created by the real ``devupdate db upgrade``."""
    install.cli("db", "upgrade")
    return install
