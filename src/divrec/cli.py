"""``divrec <command> [hydra overrides]``: thin Hydra entry points over ``divrec.pipeline``.

Commands: ``train`` (default), ``eval``, ``recommend`` and ``feedback`` (Hydra), ``compare`` (plain argparse,
no config) and ``leaderboard`` (plain ``key=value``, no config; it runs ``divrec train -m`` per cell group).
Config folder: the installed package's ``conf/`` (a wheel carries it) or the repository's ``conf/``
(editable install); add your own folders with
``hydra.searchpath=[file:///abs/dir]`` or Hydra's ``--config-dir``.
"""

from __future__ import annotations

import atexit
import gc
import logging
import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, OverrideParseException, SearchPathException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from divrec import names
from divrec.allocator import tune_malloc
from divrec.configs import config_dir
from divrec.errors import UserError
from divrec.invocation import record
from divrec.sweep import error_line, write_status
from divrec.sweep.guard import settle

log = logging.getLogger(__name__)
FULL_ERROR = "HYDRA_FULL_ERROR"  # Hydra raises its errors instead of printing them
# Hydra's errors about the command line (unknown key or group option incl. MissingConfigException, bad override,
# bad search path): raised while composing the config, before any job runs.
COMMAND_LINE_ERRORS = (ConfigCompositionException, OverrideParseException, SearchPathException)


def _reporting_user_errors(run: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    """Every run records ``status.json`` in its folder (running → completed / failed with the one-line error).

    A bad input ends a single run with ``error: <one line>`` on stderr and exit status 2, not a traceback. In a
    multirun any exception fails only its own job: it is recorded and logged, and the job returns None, so the
    sweep goes on (the Optuna sweeper, given no float, reports the trial as failed; NaN would crash its study).
    Processes a job launched (DDP) are waited for, or stopped if it failed, and its process group is closed before
    the next job (``distributed_job``); only process 0 writes the status. A run folder that already held a run
    (``hydra.run.dir=<run>``) and that this command must not change is put back as it was (``sweep.guard``)."""

    def wrapped(cfg: DictConfig) -> object:
        from divrec.lit.strategies import distributed_job, is_process_zero

        output_dir = Path(HydraConfig.get().runtime.output_dir)
        status = write_status if is_process_zero() else lambda *args: None
        status(output_dir, names.RUNNING)
        try:
            with distributed_job():
                result = run(cfg)
        except BaseException as caught:
            err = _as_user_error(caught)
            if isinstance(err, Exception):
                status(output_dir, names.FAILED, error_line(err))
            settle(output_dir, err)  # a protected run folder is put back as it was
            if not isinstance(err, Exception):  # interrupted (Ctrl-C)
                raise
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                log.error("job failed, the sweep goes on: %s", error_line(err), exc_info=not isinstance(err, UserError))
                return None
            if isinstance(err, UserError):
                print(f"error: {err}", file=sys.stderr, flush=True)
                raise SystemExit(2) from None
            raise
        status(output_dir, names.COMPLETED)
        settle(output_dir, None)
        return result

    return wrapped


def _as_user_error(err: BaseException) -> BaseException:
    """A config value left ``???`` (e.g. eval's ``ckpt_path``) is the user's to give: a one-line UserError."""
    if isinstance(err, MissingMandatoryValue):
        key = err.full_key or "a config value"
        return UserError(f"{key} is required (it is ??? in the config): pass {key}=<value> on the command line")
    return err


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

    run_feedback(cfg, overrides=HydraConfig.get().overrides.task)  # source=: they change the checkpoint's config


def _serve(cfg: DictConfig) -> None:
    from divrec.serving.server import serve

    serve(cfg, overrides=HydraConfig.get().overrides.task)


def _export(cfg: DictConfig) -> None:
    from divrec.serving.export import export

    export(cfg, overrides=HydraConfig.get().overrides.task)


def _tune(cfg: DictConfig) -> None:
    from divrec.tune import tune

    tune(cfg, overrides=HydraConfig.get().overrides.task)


# command name = config name
RUNNERS: dict[str, Callable[[DictConfig], object]] = {
    "train": _train,
    "eval": _eval,
    "recommend": _recommend,
    "feedback": _feedback,
    "serve": _serve,
    "export": _export,
    "tune": _tune,
}


def main() -> None:
    # At exit, skip the garbage collector's final passes over torch's objects (1.6 s of every command, measured in
    # experiments/speed/README.md); files are flushed and atexit handlers run as before.
    atexit.register(gc.freeze)
    tune_malloc()  # large per-step tensors reused from the heap, not mmap'd afresh (divrec/allocator.py)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # pytorch-lightning 2.6 vs torch 2.13 noise
    if len(sys.argv) > 1 and sys.argv[1] == "compare":  # no Hydra config: a plain argparse command
        from divrec.compare.cli import main as compare

        raise SystemExit(compare(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "leaderboard":  # plain key=value command: runs `divrec train -m` itself
        from divrec.leaderboard.cli import main as leaderboard

        raise SystemExit(leaderboard(sys.argv[2:]))
    command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in RUNNERS else "train"
    if len(sys.argv) > 1 and sys.argv[1] == command:
        sys.argv.pop(1)
    sys.argv[0] = f"divrec {command}"
    record(command, sys.argv[1:])
    runner = _reporting_user_errors(RUNNERS[command])
    _run_hydra(hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=command)(runner))


def _run_hydra(app: Callable[[], object]) -> None:
    """Run the Hydra app; its errors about the command line (an unknown key or group option, a malformed override)
    end like divrec's: ``error: <one line>`` and exit status 2. Hydra prints them over several lines and exits 1
    unless ``HYDRA_FULL_ERROR=1``, with which it raises them: set for Hydra's call, unless the user set it (to see
    Hydra's full stack traces, which they then get unchanged)."""
    previous = os.environ.get(FULL_ERROR)
    if previous == "1":
        app()
        return
    os.environ[FULL_ERROR] = "1"
    try:
        app()
    except COMMAND_LINE_ERRORS as err:
        print(f"error: {hydra_error_line(err)}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    finally:
        if previous is None:
            os.environ.pop(FULL_ERROR, None)
        else:
            os.environ[FULL_ERROR] = previous


def hydra_error_line(err: BaseException) -> str:
    """Hydra's multi-line message on one line: its lines joined, each list (the indented lines under a line ending
    in ':', e.g. the available options of a group) joined with ', ', and the OmegaConf cause's first line added."""
    sections: list[str] = []
    header: str | None = None
    items: list[str] = []
    for raw in [*str(err).splitlines(), ""]:
        line = raw.strip()
        if header is not None and line and raw[:1].isspace():
            items.append(line)
            continue
        if header is not None:
            sections.append(f"{header} {(' | ' if any(',' in i for i in items) else ', ').join(items)}".rstrip())
            header, items = None, []
        if line.endswith(":"):
            header = line
        elif line:
            sections.append(line)
    if isinstance(err, OverrideParseException) and err.override:
        sections.insert(0, f"cannot parse the override {err.override!r}:")
    text = ""
    for section in sections:
        text += section if not text else (" " if text.endswith((".", ":")) else "; ") + section
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException) and str(cause).strip():
        text += f" ({str(cause).strip().splitlines()[0]})"
    return text


if __name__ == "__main__":
    main()
