"""Sweep progress: after every job of a multirun, one line ``[sweep] 3/8 done (1 failed) · best …`` on stdout and
``<sweep dir>/progress.json``. A Hydra callback (``hydra.callbacks.sweep_progress`` in ``conf/hydra/default.yaml``);
it reads the job folders' ``status.json`` / ``metrics.json``, so it also counts jobs of other processes."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, Override
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from divrec import names
from divrec.report import write_atomic
from divrec.sweep.status import read_status
from divrec.sweep.storage import prepare_study


@dataclass
class Progress:
    done: int  # jobs that finished, completed or failed
    failed: int
    total: int | None  # planned jobs of this launch (None: not known in advance, e.g. a glob sweep)
    metric: str | None
    best_value: float | None
    best_job: str | None  # the best job's folder name
    best_overrides: list[str]
    elapsed_s: float

    def line(self) -> str:
        total = "?" if self.total is None else str(self.total)
        text = f"[sweep] {self.done}/{total} jobs done ({self.failed} failed), {self.elapsed_s:.0f} s"
        if self.total and 0 < self.done < self.total:
            text += f", ~{self.elapsed_s / self.done * (self.total - self.done):.0f} s left"
        if self.best_value is not None:
            text += (
                f" · best {self.metric} = {self.best_value:.4f} (job {self.best_job}: {' '.join(self.best_overrides)})"
            )
        return text


def swept(config: DictConfig) -> dict[str, Override]:
    """The sweep's overrides by key: ``hydra.sweeper.params`` then the command line (which wins)."""
    sweeper = config.hydra.sweeper
    lines = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides([*lines, *config.hydra.overrides.task])
    return {o.get_key_element(): o for o in parsed}


def planned_jobs(config: DictConfig) -> int | None:
    """Jobs a multirun will launch: Optuna's ``n_trials``, else the product of the grid's sweep lengths."""
    if "n_trials" in config.hydra.sweeper:
        return int(config.hydra.sweeper.n_trials)
    total = 1
    for override in swept(config).values():
        if override.is_sweep_override():
            if isinstance(override.value(), Glob):  # needs the config repository to expand
                return None
            total *= len(list(override.sweep_iterator()))
    return total


def _metric_value(run_dir: Path, metric: str | None) -> float | None:
    if metric is None:
        return None
    try:
        value = json.loads((run_dir / names.METRICS_FILE).read_text()).get(metric)
    except (OSError, ValueError):
        return None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _overrides(run_dir: Path, keys: set[str] | None) -> list[str]:
    """The job's overrides (only those of ``keys``, the swept ones, when given)."""
    path = run_dir / names.OVERRIDES_FILE
    lines = [str(o) for o in OmegaConf.load(path)] if path.is_file() else []
    return [o for o in lines if keys is None or o.split("=", 1)[0].lstrip("+~") in keys]


def summarize(
    sweep_dir: Path,
    metric: str | None,
    maximize: bool = True,
    total: int | None = None,
    elapsed_s: float = 0.0,
    keys: set[str] | None = None,
) -> Progress:
    """Count the finished jobs under ``sweep_dir`` and find the best completed one by ``metric`` (its overrides
    restricted to ``keys``, the swept ones, when given)."""
    done = failed = 0
    best: tuple[float, Path] | None = None
    for run_dir in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir()):
        status = (read_status(run_dir) or {}).get("status")
        if status not in (names.COMPLETED, names.FAILED):
            continue
        done += 1
        failed += status == names.FAILED
        value = _metric_value(run_dir, metric) if status == names.COMPLETED else None
        if value is not None and (best is None or (value > best[0] if maximize else value < best[0])):
            best = (value, run_dir)
    return Progress(
        done=done,
        failed=failed,
        total=total,
        metric=metric,
        best_value=None if best is None else best[0],
        best_job=None if best is None else best[1].name,
        best_overrides=[] if best is None else _overrides(best[1], keys),
        elapsed_s=round(elapsed_s, 1),
    )


class SweepProgress(Callback):
    """Reports a multirun's progress after every job; silent in single runs.

    ``metric``: what "best" means (default: the job's ``optimized_metric``); ``direction``: ``maximize`` or
    ``minimize`` (default: the Optuna sweeper's direction if it has one, else maximize)."""

    def __init__(self, metric: str | None = None, direction: str | None = None) -> None:
        self.metric, self.direction = metric, direction
        self.total: int | None = None
        self.keys: set[str] | None = None
        self.started = time.perf_counter()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.perf_counter()
        prepare_study(config)
        try:
            self.total = planned_jobs(config)
            self.keys = {key for key, o in swept(config).items() if o.is_sweep_override()}
        except Exception:  # an override syntax this does not know: report "?" rather than fail the sweep
            self.total, self.keys = None, None

    def _maximize(self, config: DictConfig) -> bool:
        direction = self.direction or str(config.hydra.sweeper.get("direction") or "maximize")
        return "min" not in direction.lower()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        metric = self.metric or config.get("optimized_metric")
        elapsed = time.perf_counter() - self.started
        progress = summarize(sweep_dir, metric, self._maximize(config), self.total, elapsed, self.keys)
        write_atomic(sweep_dir / names.PROGRESS_FILE, json.dumps(asdict(progress), indent=2) + "\n")
        print(progress.line(), flush=True)
