"""One trial of ``divrec tune``: ``pipeline.train`` on a copy of the config with the trial's values, in
``<out>/trials/<number>/``, under a Lightning callback that reports the monitored validation metric after every
validation epoch and stops the trial (``optuna.TrialPruned``) when the pruner says so.

The trial's value is its best validation metric: that of the checkpointed epoch (``best.ckpt``, chosen by the same
``val/`` monitor), which ``train`` evaluates again on val; test metrics are written to the trial's
``metrics.json`` but never read here. A pruned trial has no value; its reported epochs rank it for the sampler.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.trainer.states import TrainerFn

from divrec import names
from divrec.report import write_atomic
from divrec.sweep import error_line, write_status

from .space import Space, apply

log = logging.getLogger(__name__)
TRIALS_DIR = "trials"
DEFAULT_ATTR = "default"  # user attr of trial 0: the config as given (never pruned)
# Trial runs are quiet and skip the inspection outputs (attention maps, projector): they change no metric; the
# tuned experiment (best.yaml) runs with the train config's own settings.
QUIET = {
    "callbacks.progress_bar.refresh_rate": 0,
    "callbacks.attention_maps.users": 0,
    "callbacks.projector.max_items": 0,
    "trainer.enable_model_summary": False,
}
STOPPED_BY = ("early_stopping", "max_epochs", "budget", "pruned", "failed")


def quiet(cfg: DictConfig) -> DictConfig:
    """``cfg`` with the ``QUIET`` values set where it has those keys (``callbacks=none`` has none of them)."""
    present = {k: v for k, v in QUIET.items() if OmegaConf.select(cfg, k, default=None) is not None}
    return apply(cfg, present)


def train_run(cfg: DictConfig, callbacks: list[pl.Callback]) -> dict[str, float]:
    """``pipeline.train`` with extra callbacks: one trial's (or one confirmation run's) training."""
    from divrec import pipeline  # looked up at call time (tests wrap it)

    return pipeline.train(cfg, callbacks=callbacks)


def max_time(seconds: float) -> str:
    """Lightning's ``max_time`` (``DD:HH:MM:SS``) for ``seconds`` left, at least 1 s."""
    left = max(1, math.ceil(seconds))
    days, rest = divmod(left, 86400)
    return f"{days:02d}:{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


@dataclass
class TrialReporter(pl.Callback):
    """After each validation of fit: ``trial.report(value, epochs done)``; when the pruner says so and ``prune``
    (False for the default trial), raise ``optuna.TrialPruned``. Records the best value (``maximize``: the
    largest), its epoch, the seconds from ``started`` to the first validation, and why fit stopped
    (early_stopping | max_epochs | budget)."""

    trial: Any
    monitor: str
    maximize: bool
    prune: bool
    started: float = field(default_factory=time.monotonic)
    best: float | None = None
    best_epoch: int | None = None
    first_val_s: float | None = None
    last: tuple[int, float] | None = None
    stopped_by: str | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value, step = float(value), trainer.current_epoch + 1
        if self.first_val_s is None:
            self.first_val_s = time.monotonic() - self.started
        if math.isfinite(value) and (self.best is None or (value > self.best if self.maximize else value < self.best)):
            self.best, self.best_epoch = value, step
        self.last = (step, value)
        self.trial.report(value, step)
        # asked even when this trial may not be pruned (the default): ASHA records its rung values as it answers,
        # so the default competes in every rung it reaches
        if self.trial.should_prune() and self.prune:
            import optuna

            raise optuna.TrialPruned(f"pruned after epoch {step}: {self.monitor}={value:.4f}")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stopped_by = stop_reason(trainer)


def stop_reason(trainer: pl.Trainer) -> str:
    """Why fit ended: early_stopping | budget (the Timer of ``trainer.max_time``) | max_epochs."""
    stopped = any(isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in trainer.callbacks)
    at_max = trainer.max_epochs not in (None, -1) and trainer.current_epoch >= trainer.max_epochs
    by_timer = trainer.should_stop and not stopped and not at_max
    return "early_stopping" if stopped else "budget" if by_timer else "max_epochs"


@dataclass
class Objective:
    """Runs one trial: ``base`` with the trial's values (``space``), its output in ``<out>/trials/<number>``,
    ``trainer.max_time`` = what is left of the budget (``seconds_left``). ``overrides`` (the command line's train
    overrides) and the trial's values go to the trial folder's ``.hydra/overrides.yaml`` for ``divrec compare``."""

    base: DictConfig
    space: Space
    out: Path
    monitor: str
    maximize: bool
    prune: bool
    seconds_left: Callable[[], float]
    minutes_offset: float  # tuning minutes of earlier invocations of this study
    minutes_now: Callable[[], float]  # tuning minutes of this invocation so far
    overrides: tuple[str, ...] = ()

    def __call__(self, trial: Any) -> float:
        import optuna

        started = time.monotonic()
        trial.set_user_attr("start_min", round(self.minutes_offset + self.minutes_now(), 4))
        settings = self.space.sample(trial)
        run_dir = self.out / TRIALS_DIR / str(trial.number)
        cfg = apply(self.base, settings | {"paths.output_dir": str(run_dir)})
        OmegaConf.update(cfg, "trainer.max_time", max_time(self.seconds_left()), force_add=True)
        is_default = "fixed_params" in trial.system_attrs  # the one enqueued trial: the config as given
        trial.set_user_attr(DEFAULT_ATTR, is_default)
        reporter = TrialReporter(trial, self.monitor, self.maximize, self.prune and not is_default, started)
        self._record(run_dir, settings)
        write_status(run_dir, names.RUNNING)
        try:
            metrics = train_run(cfg, callbacks=[reporter])
        except optuna.TrialPruned as pruned:
            self._finish(trial, reporter, "pruned", run_dir, names.FAILED, error_line(pruned))
            raise
        except Exception as err:
            self._finish(trial, reporter, "failed", run_dir, names.FAILED, error_line(err))
            raise
        value = metrics.get(self.monitor)
        trial.set_user_attr(names.EPOCHS, int(metrics.get(names.EPOCHS, 0)))
        self._finish(trial, reporter, reporter.stopped_by or "max_epochs", run_dir, names.COMPLETED, None)
        if value is None or not math.isfinite(value):
            raise ValueError(f"trial {trial.number}: {self.monitor} is {value} (not measured or not finite)")
        return float(value)

    def _record(self, run_dir: Path, settings: dict[str, Any]) -> None:
        lines = [*self.overrides, *(f"{k}={v}" for k, v in settings.items())]
        write_atomic(run_dir / names.OVERRIDES_FILE, OmegaConf.to_yaml(OmegaConf.create(lines)))

    def _finish(self, trial: Any, reporter: TrialReporter, stopped_by: str, run_dir: Path, status: str,
                error: str | None) -> None:
        """Trial attributes for the report: why it stopped, best epoch, time to first validation, end minute."""
        trial.set_user_attr("stopped_by", stopped_by)
        trial.set_user_attr("best_epoch", reporter.best_epoch)
        trial.set_user_attr("best_seen", reporter.best)
        trial.set_user_attr("first_val_s", None if reporter.first_val_s is None else round(reporter.first_val_s, 2))
        trial.set_user_attr("end_min", round(self.minutes_offset + self.minutes_now(), 4))
        if reporter.last is not None and stopped_by == "pruned":
            trial.set_user_attr(names.EPOCHS, reporter.last[0])
        write_status(run_dir, status, error)
