"""Fixtures for the package tests: the shared sample cabs and the real tools."""

from __future__ import annotations

import shutil

import pytest


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install {tool}); .ci/run installs it")
    return path



@pytest.fixture
def cabextract() -> str:
    return need("cabextract")


@pytest.fixture
def gcab() -> str:
    return need("gcab")


@pytest.fixture
def no_cabextract(monkeypatch, tmp_path) -> None:
    """PATH without cabextract (an empty directory), as on a server where it is not installed."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
