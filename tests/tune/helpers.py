"""The tiny synthetic setup of the tuner tests: ~1 s per 2-epoch trial on one CPU thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from runhelpers import TINY, compose_config

from divrec.tune import tune

TRAIN = [*TINY, "trainer=cpu", "trainer.max_epochs=2", "logger=none", "data.batch_size=32"]


def tune_config(out: Path, data_dir: Path, *extra: str) -> tuple[DictConfig, list[str]]:
    """conf/tune.yaml composed with the tiny train overrides, ``tune.out=out`` and ``extra``; and the command line
    those overrides are (what ``divrec tune`` passes as ``overrides``)."""
    # confirmation off unless a test asks for it (``extra`` comes later): these tests check the search itself
    overrides = [*TRAIN, f"tune.out={out}", f"paths.data_dir={data_dir}", "tune.confirm.top_k=0", *extra]
    return compose_config("tune", overrides), overrides


def run_tune(out: Path, data_dir: Path, *extra: str) -> dict[str, Any]:
    cfg, overrides = tune_config(out, data_dir, *extra)
    return tune(cfg, overrides)
