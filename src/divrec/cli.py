"""``divrec <command> [hydra overrides]``: thin Hydra entry points over ``divrec.pipeline``.

Commands: ``train`` (default), ``eval`` and ``recommend``. Config folder: the installed package's ``conf/`` (a
wheel carries it) or the repository's ``conf/`` (editable install); add your own folders with
``hydra.searchpath=[file:///abs/dir]`` or Hydra's ``--config-dir``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from divrec.errors import UserError


def config_dir() -> Path:
    """The shipped configs: ``divrec/conf`` inside a wheel, else ``conf/`` at the repository root."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"divrec's conf/ folder not found next to {here}; reinstall divrec")


# Hydra's flags that choose config folders/files; DDP children get them again (see ``relaunch_command``).
CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
_invocation: list[str] = []  # the divrec command and its config flags, recorded by ``main``


def relaunch_command() -> list[str] | None:
    """How to start this divrec command again in a new process (same config folders; the caller adds overrides);
    None when this process was not started by ``main`` (e.g. ``divrec.pipeline`` called from another Hydra app)."""
    return [sys.executable, "-m", "divrec", *_invocation] if _invocation else None


def _config_flags(argv: list[str]) -> list[str]:
    flags: list[str] = []
    for i, arg in enumerate(argv):
        if arg in CONFIG_FLAGS and i + 1 < len(argv):
            flags += [arg, argv[i + 1]]
        elif arg.startswith(tuple(f"{flag}=" for flag in CONFIG_FLAGS)):
            flags.append(arg)
    return flags


def _reporting_user_errors(run: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    """A bad input ends a single run with ``error: <one line>`` on stderr and exit status 2, not a traceback.
    In a multirun the error propagates to the launcher, which records the failed job. Processes a job launched
    (DDP) are waited for and its process group is closed before the next job (``distributed_job``)."""

    def wrapped(cfg: DictConfig) -> object:
        from divrec.lit.strategies import distributed_job

        try:
            with distributed_job():
                return run(cfg)
        except UserError as err:
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                raise
            print(f"error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    return wrapped


def _train(cfg: DictConfig) -> float | None:
    from divrec.pipeline import train

    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None


def _eval(cfg: DictConfig) -> None:
    from divrec.pipeline import evaluate

    evaluate(cfg, overrides=HydraConfig.get().overrides.task)


def _recommend(cfg: DictConfig) -> None:
    from divrec.recommend import recommend

    recommend(cfg, overrides=HydraConfig.get().overrides.task)


# command name = config name
RUNNERS: dict[str, Callable[[DictConfig], object]] = {"train": _train, "eval": _eval, "recommend": _recommend}


def main() -> None:
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # pytorch-lightning 2.6 vs torch 2.13 noise
    command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in RUNNERS else "train"
    if len(sys.argv) > 1 and sys.argv[1] == command:
        sys.argv.pop(1)
    sys.argv[0] = f"divrec {command}"
    _invocation[:] = [command, *_config_flags(sys.argv[1:])]
    runner = _reporting_user_errors(RUNNERS[command])
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=command)(runner)()


if __name__ == "__main__":
    main()
