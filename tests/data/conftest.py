"""Fixtures for the data-layer tests: the read-only dataset mirror."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The shared datasets (DIVREC_DATA_MIRROR, else ../shared/data); tests using it skip where it is absent."""
    path = Path(os.environ.get("DIVREC_DATA_MIRROR", ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"dataset mirror {path} not available")
    return path
