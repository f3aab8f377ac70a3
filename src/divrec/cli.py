"""``divrec <command> [hydra overrides]``: thin Hydra entry points over ``divrec.pipeline``.

Commands: ``train`` (default) and ``eval``. Config folder: the installed package's ``conf/`` (a wheel carries it)
or the repository's ``conf/`` (editable install); add your own folders with ``hydra.searchpath=[file:///abs/dir]``
or Hydra's ``--config-dir``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


def config_dir() -> Path:
    """The shipped configs: ``divrec/conf`` inside a wheel, else ``conf/`` at the repository root."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"divrec's conf/ folder not found next to {here}; reinstall divrec")


def _train(cfg: DictConfig) -> float | None:
    from divrec.pipeline import train

    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None


def _eval(cfg: DictConfig) -> None:
    from divrec.pipeline import evaluate

    evaluate(cfg, overrides=HydraConfig.get().overrides.task)


RUNNERS: dict[str, Callable[[DictConfig], object]] = {"train": _train, "eval": _eval}  # command = config name


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in RUNNERS else "train"
    if len(sys.argv) > 1 and sys.argv[1] == command:
        sys.argv.pop(1)
    sys.argv[0] = f"divrec {command}"
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=command)(RUNNERS[command])()


if __name__ == "__main__":
    main()
