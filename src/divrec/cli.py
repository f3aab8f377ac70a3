"""``divrec <command> [hydra overrides]``: thin Hydra entry points over ``divrec.pipeline``.

Commands: ``train`` (default), ``eval``, ``recommend`` and ``feedback`` (Hydra), and ``compare`` (plain argparse,
no config). Config folder: the installed package's ``conf/`` (a wheel carries it) or the repository's ``conf/``
(editable install); add your own folders with
``hydra.searchpath=[file:///abs/dir]`` or Hydra's ``--config-dir``.
"""

from __future__ import annotations

import logging
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from divrec import names
from divrec.errors import UserError
from divrec.invocation import record
from divrec.sweep import error_line, write_status

log = logging.getLogger(__name__)


def config_dir() -> Path:
    """The shipped configs: ``divrec/conf`` inside a wheel, else ``conf/`` at the repository root."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"divrec's conf/ folder not found next to {here}; reinstall divrec")


def _reporting_user_errors(run: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    """Every run records ``status.json`` in its folder (running → completed / failed with the one-line error).

    A bad input ends a single run with ``error: <one line>`` on stderr and exit status 2, not a traceback. In a
    multirun any exception fails only its own job: it is recorded and logged, and the job returns None, so the
    sweep goes on (the Optuna sweeper, given no float, reports the trial as failed; NaN would crash its study).
    Processes a job launched (DDP) are waited for, or stopped if it failed, and its process group is closed before
    the next job (``distributed_job``); only process 0 writes the status."""

    def wrapped(cfg: DictConfig) -> object:
        from divrec.lit.strategies import distributed_job, is_process_zero

        output_dir = Path(HydraConfig.get().runtime.output_dir)
        status = write_status if is_process_zero() else lambda *args: None
        status(output_dir, names.RUNNING)
        try:
            with distributed_job():
                result = run(cfg)
        except Exception as err:
            status(output_dir, names.FAILED, error_line(err))
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                log.error("job failed, the sweep goes on: %s", error_line(err), exc_info=not isinstance(err, UserError))
                return None
            if isinstance(err, UserError):
                print(f"error: {err}", file=sys.stderr, flush=True)
                raise SystemExit(2) from None
            raise
        status(output_dir, names.COMPLETED)
        return result

    return wrapped


def _train(cfg: DictConfig) -> float | None:
    """Train; return ``cfg.optimized_metric`` for a sweeper (None when unset or not finite: a failed trial)."""
    from divrec.pipeline import train

    metrics = train(cfg)
    value = metrics.get(cfg.optimized_metric) if cfg.get("optimized_metric") else None
    return float(value) if value is not None and math.isfinite(value) else None


def _eval(cfg: DictConfig) -> None:
    from divrec.pipeline import evaluate

    evaluate(cfg, overrides=HydraConfig.get().overrides.task)


def _recommend(cfg: DictConfig) -> None:
    from divrec.recommend import recommend

    recommend(cfg, overrides=HydraConfig.get().overrides.task)


def _feedback(cfg: DictConfig) -> None:
    from divrec.feedback import run_feedback

    run_feedback(cfg)


# command name = config name
RUNNERS: dict[str, Callable[[DictConfig], object]] = {
    "train": _train,
    "eval": _eval,
    "recommend": _recommend,
    "feedback": _feedback,
}


def main() -> None:
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # pytorch-lightning 2.6 vs torch 2.13 noise
    if len(sys.argv) > 1 and sys.argv[1] == "compare":  # no Hydra config: a plain argparse command
        from divrec.compare.cli import main as compare

        raise SystemExit(compare(sys.argv[2:]))
    command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in RUNNERS else "train"
    if len(sys.argv) > 1 and sys.argv[1] == command:
        sys.argv.pop(1)
    sys.argv[0] = f"divrec {command}"
    record(command, sys.argv[1:])
    runner = _reporting_user_errors(RUNNERS[command])
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=command)(runner)()


if __name__ == "__main__":
    main()
