"""Fixtures for the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mirror(dataset_mirror: Path) -> Path:
    """The read-only dataset mirror (see ``tests/conftest.py``); tests using it skip where it is absent."""
    return dataset_mirror
