"""Persistent Optuna studies (``hydra.sweeper.storage: sqlite:///…``): rerunning a sweep continues its study.

Called at multirun start, before the sweeper opens the study: creates the SQLite file's folder, and when the study
already holds trials, offsets the sampler's seed by their number, so that a rerun does not replay the same random
start-up draws (a seeded sampler in a fresh process would) while the whole sequence of reruns stays reproducible.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, open_dict, read_write

log = logging.getLogger(__name__)
SQLITE = "sqlite:///"


def sqlite_file(storage: str | None) -> Path | None:
    """``sqlite:///outputs/x/study.db`` → ``outputs/x/study.db`` (``sqlite:////abs.db`` → ``/abs.db``); else None."""
    if not storage or not str(storage).startswith(SQLITE) or str(storage) == f"{SQLITE}:memory:":
        return None
    return Path(str(storage)[len(SQLITE) :])


def stored_trials(storage: str, study_name: str) -> int:
    """How many trials (any state) the study ``study_name`` in ``storage`` holds; 0 if it does not exist yet."""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study in this storage
        return 0
    return len(study.trials)


def prepare_study(config: DictConfig) -> int:
    """Create the study file's folder; offset the sampler seed by the stored trials. Returns their number."""
    sweeper = config.hydra.sweeper
    path = sqlite_file(sweeper.get("storage"))
    if path is None:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or not sweeper.get("study_name"):
        return 0
    done = stored_trials(str(sweeper.storage), str(sweeper.study_name))
    sampler = sweeper.get("sampler")
    if done and sampler is not None and sampler.get("seed") is not None:
        with read_write(sampler), open_dict(sampler):
            sampler.seed = int(sampler.seed) + done
    log.info("study %s in %s: %d earlier trials; continuing it", sweeper.study_name, path, done)
    return done
