"""The tuner's guard against the winner's curse: the best trials are retrained on more seeds before one is chosen.

The study ranks trials by one seed's validation value (the train config's ``seed``). The maximum of many noisy
values is biased upward by about the seed noise, so with enough trials the single-seed best is often a config that
is no better than the default, and sometimes a worse one (`experiments/tuning/`: ml-100k at 20 minutes, Last.fm at
60). So the search's trials stop at ``1 - tune.confirm.reserve`` of the budget, and then:

- the candidates are the default (trial 0) and the ``tune.confirm.top_k`` best other completed trials, fewer when
  the median completed trial is too long for one round of all of them to fit in the reserve. When not even a round
  of two fits in what is left (each run as long as its study trial took), the search uses the reserve instead;
- each candidate is retrained at each seed of ``tune.confirm.seeds``, seed by seed (a *round* = every candidate at
  one seed), in ``<out>/confirm/<trial>/seed<s>/``, its trainer limited to what is left of the budget. A run that
  would not end in time is not started; one the budget cut short, or that failed, is not counted;
- each candidate's values are its study value and the rounds every candidate completed (the same seeds for all).
  A trial may replace the default only when its seed-paired gain over the default is more than
  ``tune.confirm.margin_se`` standard errors (the one-standard-error rule; on ml-100k the best mean beat the
  default by 0.0004 with a standard error of 0.0012, and retrained lower). Among the default and those trials, the
  best mean is chosen; on a tie the default, then the earlier trial.

Values are stored in the study (``confirm`` user attr: trial -> seed -> value), so a rerun repeats no finished run;
``confirm.md`` lists them. Test metrics are written to each run's ``metrics.json`` and never read.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from divrec import names
from divrec.report import write_atomic
from divrec.sweep import error_line, write_status

from .objective import DEFAULT_ATTR, max_time, stop_reason, train_run
from .space import apply

if TYPE_CHECKING:
    from .study import Invocation

log = logging.getLogger(__name__)
CONFIRM_ATTR = "confirm"  # study user attr: {"<trial>": {"<seed>": value}}
CONFIRM_DIR = "confirm"
CONFIRM_MD = "confirm.md"


@dataclass(frozen=True)
class Choice:
    """The confirmed choice: the trial, the seeds every candidate completed, and each candidate's mean value."""

    trial: int
    seeds: tuple[int, ...]
    means: dict[int, float]
    single_seed_best: int
    best_mean: int  # may differ from ``trial``: a gain within the noise does not replace the default

    def line(self, monitor: str) -> str:
        n = len(self.seeds) + 1
        return (f"confirmed trial {self.trial} ({monitor} mean {self.means[self.trial]:.4f} over {n} seeds; the "
                f"single-seed best, trial {self.single_seed_best}: {self.means[self.single_seed_best]:.4f}; the "
                f"best mean, trial {self.best_mean}: {self.means[self.best_mean]:.4f})")


def enabled(cfg: DictConfig) -> bool:
    c = cfg.tune.confirm
    return int(c.top_k) > 0 and len(c.seeds) > 0


def _completed(study: Any) -> list[Any]:
    return [t for t in study.trials if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)]


def _seconds(trial: Any) -> float | None:
    start, end = trial.user_attrs.get("start_min"), trial.user_attrs.get("end_min")
    return None if start is None or end is None else 60.0 * (float(end) - float(start))


def candidates(study: Any, maximize: bool, top_k: int, reserve_s: float | None = None) -> list[Any]:
    """The default (when it completed) and the ``top_k`` best other completed trials, best first; ``top_k`` is
    lowered (to 1 at least) until one round of the candidates' median completed duration fits in ``reserve_s``."""
    done = _completed(study)
    others = sorted((t for t in done if not t.user_attrs.get(DEFAULT_ATTR)),
                    key=lambda t: (-t.value if maximize else t.value, t.number))  # fmt: skip
    default = [t for t in done if t.user_attrs.get(DEFAULT_ATTR)][:1]
    durations = [s for s in map(_seconds, done) if s]
    if reserve_s is not None and durations:
        fit = int(reserve_s // statistics.median(durations)) - len(default)
        top_k = max(1, min(top_k, fit))
    return default + others[:top_k]


def round_fits(study: Any, maximize: bool, top_k: int, seconds_left: float) -> bool:
    """Whether one round of (at least two) candidates, each as long as its study trial took, fits in what is left."""
    cands = candidates(study, maximize, top_k, seconds_left)
    need = [_seconds(t) for t in cands]
    return len(cands) >= 2 and sum(s or 0.0 for s in need) <= seconds_left


def stored(study: Any) -> dict[str, dict[str, float]]:
    return {str(k): dict(v) for k, v in study.user_attrs.get(CONFIRM_ATTR, {}).items()}


def beats(mine: list[float], theirs: list[float], maximize: bool, margin_se: float) -> bool:
    """Whether the seed-paired gain of ``mine`` over ``theirs`` is more than ``margin_se`` standard errors (of the
    mean paired difference) in the monitor's direction; with ``margin_se`` 0, any gain."""
    diffs = [(a - b) if maximize else (b - a) for a, b in zip(mine, theirs, strict=True)]
    gain = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
    return gain > margin_se * se and gain > 0


def choose(study: Any, maximize: bool, top_k: int, seeds: list[int], margin_se: float = 1.0) -> Choice | None:
    """The confirmed choice among the current candidates (None: fewer than two candidates or no complete round):
    the best mean among the default and the trials that beat the default by more than ``margin_se`` standard errors
    of their seed-paired gain (the one-standard-error rule: the default stays unless a gain is beyond the noise)."""
    cands = candidates(study, maximize, top_k)
    values = stored(study)
    rounds = tuple(s for s in seeds if all(str(s) in values.get(str(t.number), {}) for t in cands))
    if len(cands) < 2 or not rounds:
        return None
    series = {t.number: [t.value, *(values[str(t.number)][str(s)] for s in rounds)] for t in cands}
    means = {n: statistics.fmean(v) for n, v in series.items()}
    default = next((t.number for t in cands if t.user_attrs.get(DEFAULT_ATTR)), None)
    eligible = [t for t in cands if default is None or t.number == default
                or beats(series[t.number], series[default], maximize, margin_se)]  # fmt: skip
    sign = -1.0 if maximize else 1.0
    best = sorted(eligible, key=lambda t: (sign * means[t.number], t.number != default, t.number))[0]
    single = sorted(cands, key=lambda t: (sign * t.value, t.number))[0]
    top = sorted(cands, key=lambda t: (sign * means[t.number], t.number != default, t.number))[0]
    return Choice(best.number, rounds, means, single.number, top.number)


class _StopWatch(pl.Callback):
    """Records why fit stopped (early_stopping | max_epochs | budget), as a trial does."""

    stopped_by: str | None = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stopped_by = stop_reason(trainer)


def run_one(run: Invocation, trial: Any, seed: int, seconds_left: float) -> float | None:
    """Retrain ``trial``'s config at ``seed`` in ``<out>/confirm/<trial>/seed<seed>``; its value, or None when it
    failed or the budget cut it short."""
    run_dir = run.out / CONFIRM_DIR / str(trial.number) / f"seed{seed}"
    cfg = apply(run.base, run.space.settings(trial.params) | {"seed": seed, "paths.output_dir": str(run_dir)})
    OmegaConf.update(cfg, "trainer.max_time", max_time(seconds_left), force_add=True)
    watch = _StopWatch()
    write_status(run_dir, names.RUNNING)
    try:
        metrics = train_run(cfg, callbacks=[watch])
    except Exception as err:  # one failed run drops its round, the tune goes on
        write_status(run_dir, names.FAILED, error_line(err))
        log.warning("confirm trial %s seed %s failed: %s", trial.number, seed, error_line(err))
        return None
    write_status(run_dir, names.COMPLETED)
    value = metrics.get(run.monitor)
    if watch.stopped_by == "budget" or value is None or not math.isfinite(value):
        return None
    return float(value)


def confirm(study: Any, run: Invocation, cfg: DictConfig, deadline: float,
            after: Callable[[Any], None]) -> Choice | None:
    """Run the missing confirmation runs seed by seed until ``deadline`` (monotonic seconds); the choice. The
    candidates are as many as one round of them fits in the time left now."""
    c = cfg.tune.confirm
    seeds, margin = [int(s) for s in c.seeds], float(c.margin_se)
    cands = candidates(study, run.maximize, int(c.top_k), deadline - time.monotonic())
    for seed in seeds:
        for trial in cands:
            values = stored(study)
            if str(seed) in values.get(str(trial.number), {}):
                continue
            left = deadline - time.monotonic()
            if left <= (_seconds(trial) or 0.0):  # this run would be cut by the budget: no round can complete
                return finish(study, run, _others(cands), seeds, margin)
            value = run_one(run, trial, seed, left)
            if value is None:
                break  # this round cannot complete
            values.setdefault(str(trial.number), {})[str(seed)] = value
            study.set_user_attr(CONFIRM_ATTR, values)
            after(study)
    return finish(study, run, _others(cands), seeds, margin)


def _others(cands: list[Any]) -> int:
    return sum(not t.user_attrs.get(DEFAULT_ATTR) for t in cands)


def finish(study: Any, run: Invocation, top_k: int, seeds: list[int], margin_se: float) -> Choice | None:
    """Store the choice (``confirm_choice``: the top_k, seeds and margin it was made with) and ``confirm.md``."""
    choice = choose(study, run.maximize, top_k, seeds, margin_se)
    made = {"top_k": top_k, "seeds": seeds, "margin_se": margin_se}
    study.set_user_attr("confirm_choice", None if choice is None else made)
    write_table(study, run, top_k, seeds, choice)
    return choice


def chosen(study: Any, maximize: bool) -> Choice | None:
    """The stored confirmation's choice among the study's current trials (None: no confirmation, or none usable)."""
    made = study.user_attrs.get("confirm_choice")
    if not made:
        return None
    seeds = [int(s) for s in made["seeds"]]
    return choose(study, maximize, int(made["top_k"]), seeds, float(made.get("margin_se", 1.0)))


def write_table(study: Any, run: Invocation, top_k: int, seeds: list[int], choice: Choice | None) -> Path:
    values = stored(study)
    base_seed = int(OmegaConf.select(run.base, "seed", default=0))
    lines = [f"| trial | default | seed {base_seed} (study) | " + " | ".join(f"seed {s}" for s in seeds)
             + " | mean over complete rounds | chosen |", "|" + " --- |" * (len(seeds) + 5)]  # fmt: skip
    for t in candidates(study, run.maximize, top_k):
        cells = [values.get(str(t.number), {}).get(str(s)) for s in seeds]
        mean = "" if choice is None else f"{choice.means[t.number]:.4f}"
        mark = "yes" if choice is not None and choice.trial == t.number else ""
        lines.append(f"| {t.number} | {'yes' if t.user_attrs.get(DEFAULT_ATTR) else ''} | {t.value:.4f} | "
                     + " | ".join("" if v is None else f"{v:.4f}" for v in cells) + f" | {mean} | {mark} |")
    note = ("no complete round: best.yaml is the single-seed best" if choice is None
            else f"{choice.line(run.monitor)}; rounds: seeds {', '.join(map(str, choice.seeds))}")
    path = run.out / CONFIRM_MD
    write_atomic(path, "\n".join([f"# Confirmation of the best trials ({run.monitor})", "", *lines, "", note]) + "\n")
    return path
