"""``divrec tune``: an Optuna study over one train config, within a wall-clock budget, resumable.

- The study lives in ``<out>/study.db`` (SQLite): rerunning the same command adds trials to it (the TPE seed offset
  by the trials stored, so a rerun never replays the first draws); a study of other train overrides, another space
  or another monitor in the same folder is refused. Trials left running by a killed invocation are marked failed.
- Trial 0 is the config as given (the space's defaults, enqueued; never pruned), so the best trial is at least as
  good as the default on validation by construction; then TPE (``tune.startup_trials`` random trials first).
- The budget is this invocation's wall clock (``tune.budget_min``): no trial starts once it is spent, or when less
  is left than the fastest earlier trial needed to reach its first validation; each trial's trainer gets
  ``max_time`` = what is left, so a trial ends at most its data loading + final evaluation past the budget.
- Selection is on validation only (``monitor``, a ``val/`` key): a trial's value is its checkpointed epoch's
  validation metric. With ``tune.confirm`` (default on), the search stops at ``1 - tune.confirm.reserve`` of the
  budget and the default plus the best trials are retrained on more seeds before one is chosen
  (``divrec.tune.confirm``). After every trial: ``trials.csv``/``.md``, ``progress.png``, ``best.yaml`` and
  ``experiment/tuned.yaml`` (``divrec.tune.report``).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from divrec.errors import UserError

from . import confirm
from .checks import check_tune
from .objective import DEFAULT_ATTR, Objective, quiet
from .report import summary_line, write_outputs
from .space import Space, bind

log = logging.getLogger(__name__)
STUDY_FILE = "study.db"
STUDY_NAME = "divrec-tune"
LOCK_FILE = ".tune.lock"
RECORD_ATTR = "record"  # study user attr: the train overrides, space and monitor the study was created with
MINUTES_ATTR = "minutes_used"  # study user attr: tuning minutes over every invocation
NOT_IDENTITY = ("tune.", "hydra.", "hydra/", "paths.", "ckpt_path")  # overrides that do not define the study


class TuneError(UserError):
    """``divrec tune`` cannot run as asked (no Optuna, a busy or foreign study folder)."""


@dataclass(frozen=True)
class Invocation:
    """What this command works on: the study folder, the base train config, its space and the objective."""

    out: Path
    base: DictConfig
    space: Space
    overrides: tuple[str, ...]  # the train overrides that define the study
    monitor: str
    maximize: bool


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise TuneError("divrec tune needs optuna: pip install 'divrec[sweep]' (or -e '.[dev]')") from None
    return optuna


def study_overrides(overrides: Sequence[str]) -> tuple[str, ...]:
    """The command line's train overrides, less those that change no trial (``tune.*``, ``hydra.*``, paths)."""
    return tuple(o for o in overrides if not o.lstrip("+~").startswith(NOT_IDENTITY))


def study_dir(cfg: DictConfig, overrides: Sequence[str], space: str) -> Path:
    """``tune.out``, else ``<paths.log_dir>/<task_name>/studies/<overrides>,space=<space>`` (the same command, the
    same folder: a rerun resumes)."""
    if cfg.tune.get("out"):
        return Path(str(cfg.tune.out)).expanduser().absolute()
    slug = re.sub(r"[^A-Za-z0-9=,.@_+-]+", "_", ",".join([*overrides, f"space={Path(space).stem}"]))
    if len(slug) > 120:
        slug = f"{slug[:100]}-{hashlib.sha1(slug.encode()).hexdigest()[:10]}"
    return (Path(str(cfg.paths.log_dir)) / str(cfg.task_name) / "studies" / slug).absolute()


def prepare(cfg: DictConfig, overrides: Sequence[str]) -> Invocation:
    """Everything refusable before the study opens: ``tune.*`` values, the train config (as ``divrec train`` checks
    it, before any data), the space against the config."""
    from divrec.pipeline import check_config

    check_tune(cfg)
    base = cfg.copy()
    with open_dict(base):
        base.pop("tune")
    base = quiet(base)
    check_config(base)
    check_one_process(base)
    space = bind(str(cfg.tune.space), base)
    mine = study_overrides(overrides)
    mode = OmegaConf.select(base, "callbacks.model_checkpoint.mode", default="max")
    return Invocation(study_dir(cfg, mine, str(cfg.tune.space)), base, space, mine, str(base.monitor), mode != "min")


def check_one_process(base: DictConfig) -> None:
    """Trials run one after another in this process: a multi-process trainer (DDP, FSDP, several nodes) would
    restart the whole command in each of its processes."""
    devices, nodes = OmegaConf.select(base, "trainer.devices"), OmegaConf.select(base, "trainer.num_nodes")
    if OmegaConf.select(base, "trainer.strategy") is not None or devices not in (1, "1", "auto") or nodes != 1:
        raise TuneError(f"trainer.devices={devices}, trainer.num_nodes={nodes}: divrec tune trains its trials in "
                        "one process; use one device (trainer=cpu or trainer=gpu, trainer.devices=1)")


@contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """One ``divrec tune`` per study folder at a time."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise TuneError(f"{out}: another divrec tune is running on this study; wait for it or pass another "
                            "tune.out=<dir>") from None
        yield


def make_pruner(cfg: DictConfig) -> Any:
    """``tune.pruner``: asha = successive halving (rungs at min_resource x factor^k epochs, the best 1/factor of
    each rung go on), median = below the median of earlier trials at the same epoch, none = never."""
    optuna, t = _optuna(), cfg.tune
    if t.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=int(t.asha.min_resource), reduction_factor=int(t.asha.reduction_factor)
        )
    if t.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(t.median.startup_trials), n_warmup_steps=int(t.median.warmup_epochs)
        )
    return optuna.pruners.NopPruner()


def open_study(run: Invocation, cfg: DictConfig) -> Any:
    """Create or load ``<out>/study.db``; refuse a study made for other overrides; seed TPE past stored trials."""
    optuna = _optuna()
    storage = f"sqlite:///{run.out / STUDY_FILE}"
    direction = "maximize" if run.maximize else "minimize"
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    except KeyError:  # a new study
        study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction=direction)
    record = {"overrides": list(run.overrides), "space": run.space.name, "monitor": run.monitor}
    stored = study.user_attrs.get(RECORD_ATTR)
    if stored is None and not study.trials:
        study.set_user_attr(RECORD_ATTR, record)
    elif stored != record or study.direction.name.lower() != direction:
        raise TuneError(f"{run.out} holds a study of {stored} ({study.direction.name.lower()}), not {record} "
                        f"({direction}): pass the same overrides to resume it, or choose a new tune.out=<dir>")
    seed = int(cfg.tune.seed) + len(study.trials)
    study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(cfg.tune.startup_trials))
    study.pruner = make_pruner(cfg)
    return study


def fail_stale(study: Any) -> int:
    """Trials a killed invocation left RUNNING (or WAITING for a dead process) are marked failed: interrupted."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, "stopped_by", "interrupted")
        study._storage.set_trial_state(trial._trial_id, TrialState.FAIL)
    return len(stale)


def enqueue_default(study: Any, space: Space) -> bool:
    """Queue trial 0, the config as given, unless the study has run it (an interrupted one is queued again)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    ran = any(t.user_attrs.get(DEFAULT_ATTR) and t.user_attrs.get("stopped_by") != "interrupted" for t in trials)
    if ran or any(t.state == TrialState.WAITING for t in trials):
        return False
    with warnings.catch_warnings():  # optuna 2.10 marks enqueue_trial experimental; its interface is pinned here
        warnings.simplefilter("ignore", category=_optuna().exceptions.ExperimentalWarning)
        study.enqueue_trial(dict(space.defaults))
    return True


def fastest_first_validation(study: Any) -> float | None:
    """The fewest seconds any trial of the study needed from its start to its first validation (None: none did)."""
    seconds = [t.user_attrs.get("first_val_s") for t in study.get_trials(deepcopy=False)]
    known = [float(s) for s in seconds if isinstance(s, int | float)]
    return min(known) if known else None


def run_trials(study: Any, objective: Objective, deadline: float, n_trials: int | None, after: Any) -> str:
    """Trials one at a time until the budget or ``n_trials`` ends them; returns why it stopped: budget | n_trials."""
    done = 0
    while n_trials is None or done < n_trials:
        left, need = deadline - time.monotonic(), fastest_first_validation(study)
        if left <= 0 or (need is not None and left < need):
            return "budget"
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
        done += 1
        after(study)
    return "n_trials"


def tune(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``divrec tune`` (``cfg``: conf/tune.yaml composed; ``overrides``: the command line's); returns the
    summary (also printed as one line)."""
    run = prepare(cfg, overrides)
    start = time.monotonic()
    budget_s = float(cfg.tune.budget_min) * 60.0
    with exclusive(run.out):
        study = open_study(run, cfg)
        offset = float(study.user_attrs.get(MINUTES_ATTR, 0.0))
        if fail_stale(study):
            log.warning("%s: trials of an interrupted invocation marked failed", run.out)
        first = len(study.trials)  # this invocation's trials are numbered from here (trial 0 when it is queued)
        enqueue_default(study, run.space)

        def minutes_now() -> float:
            return (time.monotonic() - start) / 60.0

        def after(study: Any) -> None:
            study.set_user_attr(MINUTES_ATTR, round(offset + minutes_now(), 4))
            write_outputs(study, run)

        end = start + budget_s
        reserve_s = budget_s * float(cfg.tune.confirm.reserve) if confirm.enabled(cfg) else 0.0
        search_end = [end - reserve_s]  # the search's deadline; moved to the budget's end when no round would fit
        objective = Objective(
            run.base, run.space, run.out, run.monitor, run.maximize, cfg.tune.pruner != "none",
            seconds_left=lambda: search_end[0] - time.monotonic(), minutes_offset=offset, minutes_now=minutes_now,
            overrides=run.overrides,
        )  # fmt: skip
        stop = run_trials(study, objective, search_end[0], cfg.tune.get("n_trials"), after)
        after(study)
        if confirm.enabled(cfg):
            if confirm.round_fits(study, run.maximize, int(cfg.tune.confirm.top_k), end - time.monotonic()):
                confirm.confirm(study, run, cfg, end, after)
            elif stop == "budget":  # one round would not fit in what is left: the search goes on instead
                log.info("%s: no confirmation round fits in the reserve; the search uses it", run.out)
                search_end[0] = end
                stop = run_trials(study, objective, end, None, after)
            after(study)
        summary = summary_line(study, run, first, minutes_now(), float(cfg.tune.budget_min), stop)
    print(summary["line"], flush=True)
    return summary
