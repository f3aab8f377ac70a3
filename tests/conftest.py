"""Fixtures shared by the pipeline / CLI / config tests (the data-layer tests have their own in tests/data/)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from runhelpers import ROOT, Run, tiny_train


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine they oversubscribe it (a
    one-batch run takes seconds instead of half a second)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _fresh_hydra() -> Iterator[None]:
    """No test sees Hydra's global state from another."""
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def dataset_mirror() -> Path:
    """The shared read-only datasets (DIVREC_DATA_MIRROR, else ../shared/data); tests using it skip without."""
    path = Path(os.environ.get("DIVREC_DATA_MIRROR", ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"dataset mirror {path} not available")
    return path


@pytest.fixture(scope="session")
def experiment_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir (and processed-data cache) shared by every real-dataset run of the session."""
    return tmp_path_factory.mktemp("experiment-data")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A complete 2-epoch training run (seed 0) on tiny synthetic data, shared by the output and eval tests."""
    base = tmp_path_factory.mktemp("tiny-run")
    return tiny_train(base / "run", base / "data", seed=0)
