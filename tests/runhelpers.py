"""Builders shared by the pipeline / CLI / config tests: composing configs, tiny runs, running the console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from divrec.cli import config_dir
from divrec.pipeline import train

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).parent / "divrec"
HYDRA_HINT = "Set the environment variable HYDRA_FULL_ERROR=1"

# A model and dataset small enough that a 2-epoch CPU run takes about a second.
TINY_DATA = ["data=synthetic", "data.source.n_users=60", "data.source.n_items=40", "data.max_len=8"]
TINY_MODEL = ["model.hidden_size=16", "model.n_heads=2", "model.n_layers=1", "model.ffn_size=32"]
QUIET = ["callbacks.progress_bar.refresh_rate=0"]
TINY = TINY_DATA + TINY_MODEL + QUIET
# Two CPU epochs of the tiny model; several steps per epoch so that the per-step train loss is logged.
TINY_TRAIN = [*TINY, "trainer=cpu", "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "data.batch_size=32"]


@dataclass(frozen=True)
class Run:
    run_dir: Path
    data_dir: Path
    metrics: dict[str, float]
    overrides: tuple[str, ...]


def tiny_train(run_dir: Path, data_dir: Path, seed: int, extra: Sequence[str] = ()) -> Run:
    """``divrec.pipeline.train`` on the tiny synthetic setup (plus ``extra`` overrides); returns where it wrote and
    what it returned."""
    overrides = (*TINY_TRAIN, *extra, f"seed={seed}", *run_paths(run_dir, data_dir))
    metrics = train(compose_config("train", overrides))
    return Run(run_dir, data_dir, metrics, overrides)


def compose_config(name: str = "train", overrides: Sequence[str] = (), hydra_node: bool = False) -> DictConfig:
    """Compose ``conf/<name>.yaml`` with ``overrides`` like the CLI would (``hydra_node``: keep ``cfg.hydra``)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides), return_hydra_config=hydra_node)


def without_hydra_node(cfg: DictConfig) -> DictConfig:
    """What Hydra hands the task function: the composed config minus ``cfg.hydra``."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def run_paths(output_dir: Path, data_dir: Path) -> list[str]:
    """Overrides that keep a run's outputs and its data cache inside the test's temporary folders."""
    return [f"paths.output_dir={output_dir}", f"paths.data_dir={data_dir}"]


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


def leftovers(folder: Path) -> list[str]:
    """Every path under ``folder`` (relative), for 'nothing was left behind' assertions."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def run_divrec(args: Sequence[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed ``divrec`` console script (full Hydra error handling: HYDRA_FULL_ERROR unset)."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | {"OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def error_line(stderr: str) -> str:
    """The last line of stderr that is not Hydra's trailing 'set HYDRA_FULL_ERROR=1' hint."""
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(HYDRA_HINT)]
    return lines[-1] if lines else ""
