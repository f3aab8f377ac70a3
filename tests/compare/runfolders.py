"""Hand-made run folders for the compare tests: exactly the files a divrec run leaves behind."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from divrec import names


def make_run(
    folder: Path,
    overrides: Sequence[str],
    config: dict,
    metrics: dict[str, float] | None = None,
    status: str | None = names.COMPLETED,
    error: str | None = None,
    per_user: dict[str, Sequence[float]] | None = None,
) -> Path:
    """A run folder: config.yaml, .hydra/overrides.yaml, and (when given) metrics.json, status.json,
    per_user.parquet (``{metric: values}``, users 0..n-1)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / names.CONFIG_FILE).write_text(yaml.safe_dump(config))
    (folder / names.OVERRIDES_FILE).write_text(yaml.safe_dump(list(overrides)))
    if metrics is not None:
        (folder / names.METRICS_FILE).write_text(json.dumps(metrics))
    if status is not None:
        (folder / names.STATUS_FILE).write_text(json.dumps({"status": status, "error": error}))
    if per_user is not None:
        n = len(next(iter(per_user.values())))
        frame = pd.DataFrame({names.USER_INDEX: range(n), **{k: list(v) for k, v in per_user.items()}})
        frame.to_parquet(folder / names.PER_USER_FILE)
    return folder


def config(lr: float, seed: int, layers: int = 2) -> dict:
    return {"seed": seed, "optim": {"lr": lr}, "model": {"n_layers": layers}, "paths": {"output_dir": "x"}}


VAL, TEST = names.metric_key(names.VAL, names.NDCG, 10), names.metric_key(names.TEST, names.NDCG, 10)


def lr_seed_sweep(root: Path) -> Path:
    """A multirun: lr 0.01 / 0.001 x seeds 0, 1 (4 completed), a failed job and an incomplete (killed) one.

    val NDCG@10: lr=0.01 → 0.30, 0.34; lr=0.001 → 0.20, 0.22. Per-user test NDCG of 6 users: the lr=0.01 runs beat
    the lr=0.001 runs on every user."""
    sweep = root / "multiruns" / "2026-01-01_00-00-00"
    cells = [
        (0.01, 0, 0.30, [0.5, 0.4, 0.3, 0.6, 0.2, 0.7]),
        (0.01, 1, 0.34, [0.5, 0.6, 0.3, 0.6, 0.4, 0.7]),
        (0.001, 0, 0.20, [0.1, 0.2, 0.0, 0.3, 0.1, 0.2]),
        (0.001, 1, 0.22, [0.1, 0.2, 0.2, 0.3, 0.1, 0.2]),
    ]
    for job, (lr, seed, val, users) in enumerate(cells):
        metrics = {VAL: val, TEST: sum(users) / 6, names.TRAIN_TIME: 10.0 + job, names.EPOCHS: 4, "seed": seed}
        make_run(sweep / str(job), [f"optim.lr={lr}", f"seed={seed}"], config(lr, seed), metrics,
                 per_user={TEST: users})  # fmt: skip
    make_run(sweep / "4", ["optim.lr=0.5", "seed=0"], config(0.5, 0), status=names.FAILED, error="UserError: bad lr")
    make_run(sweep / "5", ["optim.lr=0.1", "seed=0"], config(0.1, 0), status=names.RUNNING)  # killed mid-run
    return sweep
