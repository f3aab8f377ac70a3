"""What the leaderboard's run folders say, per cell and per (row, dataset): the numbers behind ``leaderboard.md``,
``leaderboard.csv`` and ``leaderboard.png`` (``divrec.leaderboard.render``), read from the run folders only.

Per row and dataset: test NDCG@10 of the best-validation checkpoint (what ``divrec train`` tests), mean ± sample std
over the completed seeds; the paired permutation test over test users against the baseline row
(``divrec.compare.stats``; each user's NDCG@10 averaged over the seeds both rows completed, then paired by user);
the median seconds per training epoch (``timeline.jsonl``); the wall time summed over seeds; and the protocol read
from each run's resolved ``config.yaml``. Failed and unfinished cells are listed under the table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import pandas as pd
import yaml

from divrec import names
from divrec.compare.stats import PairedTest, paired_test, per_user_values
from divrec.leaderboard.cells import Cell, Plan, Row, cell_state

NDCG10 = names.metric_key(names.TEST, names.NDCG, 10)
VAL_NDCG10 = names.metric_key(names.VAL, names.NDCG, 10)


@dataclass
class CellResult:
    """What one cell's run folder says."""

    cell: Cell
    folder: Path
    state: str  # names.COMPLETED / FAILED / INCOMPLETE / cells.MISSING
    error: str | None
    ndcg: float
    val: float  # val/ndcg@10 of the same checkpoint (what a choice across rows may look at)
    epochs: float
    s_per_epoch: float  # median epoch_train_s of timeline.jsonl (NaN without epochs)
    train_s: float  # metrics.json train_time_s (the fit time of a closed-form baseline)
    wall_s: float  # Hydra's job start (.hydra/config.yaml written) to the final status.json
    protocol: str


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def median_epoch_seconds(folder: Path) -> float:
    path = folder / names.TIMELINE_FILE
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return math.nan
    seconds = [float(r["epoch_train_s"]) for r in rows if isinstance(r, dict) and "epoch_train_s" in r]
    return median(seconds) if seconds else math.nan


def wall_seconds(folder: Path) -> float:
    """Seconds of the cell's last attempt: from Hydra's records of the job start to its final ``status.json``."""
    start, end = folder / ".hydra" / "config.yaml", folder / names.STATUS_FILE
    if not (start.is_file() and end.is_file()):
        return math.nan
    return max(0.0, end.stat().st_mtime - start.stat().st_mtime)


def _short(target: Any) -> str:
    return str(target).rsplit(".", 1)[-1] if target else "?"


def _objective(task: dict[str, Any]) -> str:
    objective = _short(task.get("_target_"))
    positions = f" (positions={task['positions']})" if task.get("positions") else ""
    if objective == "Fitted":
        return "closed form (no loss)"
    if task.get("n_negatives") is not None:
        sampler = (task.get("sampler") or {}).get("_target_")
        how = f", {_short(sampler)}" if sampler else ""
        return f"{objective}{positions}, {task['n_negatives']} negatives{how}"
    return f"{objective}{positions}, full softmax over all items"


def _selection(cfg: dict[str, Any], fitted: bool) -> str:
    trainer, monitor = cfg.get("trainer") or {}, str(cfg.get("monitor"))
    if fitted:
        return "fitted on training (no epochs)"
    if trainer.get("fast_dev_run"):
        return "fast_dev_run: one batch, no model selection"
    honest = "" if monitor.startswith(f"{names.VAL}/") else " (NOT a validation metric)"
    return f"best epoch by {monitor}{honest}, <= {trainer.get('max_epochs')} epochs"


def _ensemble(model: dict[str, Any]) -> tuple[str, str]:
    """An ensemble's (objective, selection) parts: its members, their scale, and how the weights were set."""
    members = [Path(str(m)).parent.name if Path(str(m)).name.startswith("seed") else str(m)
               for m in model.get("members") or []]  # fmt: skip  # <out>/runs/<dataset>/<member>/seed<k>
    weights = model.get("weights")
    if weights == "val":
        how = f"weights chosen on val/ndcg@10 (grid of 1/{model.get('weight_steps')})"
    else:
        how = "equal weights" if weights is None else f"weights {list(weights)}"
    return (f"ensemble of {'+'.join(members)} ({model.get('normalize')} scores)",
            f"each member's epoch by its own validation, {how}")  # fmt: skip


def protocol_line(cfg: dict[str, Any]) -> str:
    """How a run was trained and evaluated, from its resolved config: ranking, objective and negatives, max_len,
    split, model selection, controls. divrec always ranks the full catalog with the user's history masked out."""
    task, data, model = cfg.get("task") or {}, cfg.get("data") or {}, cfg.get("model") or {}
    split = data.get("split") or {}
    rerank = cfg.get("rerank")
    ranking = "full ranking, history excluded"
    if isinstance(rerank, dict) and rerank.get("_target_"):
        ranking += f", re-ranked by {_short(rerank['_target_'])}"
    fitted = _short(task.get("_target_")) == "Fitted"
    objective, selection = _objective(task), _selection(cfg, fitted)
    if _short(model.get("_target_")) == "Ensemble":
        objective, selection = _ensemble(model)
    parts = [
        ranking,
        objective,
        f"max_len {data.get('max_len')}",
        f"{_short(split.get('_target_'))} (val_items {split.get('val_items', 1)})",
        selection,
    ]
    if data.get("shuffle_sequences"):
        parts.append("training sequences shuffled")
    return "; ".join(parts)


def read_cell(cell: Cell, out: Path) -> CellResult:
    folder = cell.folder(out)
    state, error = cell_state(folder)
    metrics = _read_json(folder / names.METRICS_FILE) if state == names.COMPLETED else {}
    try:
        config = yaml.safe_load((folder / names.CONFIG_FILE).read_text())
    except (OSError, yaml.YAMLError):
        config = None
    return CellResult(
        cell=cell,
        folder=folder,
        state=state,
        error=error,
        ndcg=float(metrics.get(NDCG10, math.nan)),
        val=float(metrics.get(VAL_NDCG10, math.nan)),
        epochs=float(metrics.get(names.EPOCHS, math.nan)),
        s_per_epoch=median_epoch_seconds(folder) if state == names.COMPLETED else math.nan,
        train_s=float(metrics.get(names.TRAIN_TIME, math.nan)),
        wall_s=wall_seconds(folder) if state == names.COMPLETED else math.nan,
        protocol=protocol_line(config) if isinstance(config, dict) else "",
    )


@dataclass
class Entry:
    """One (row, dataset) of the table."""

    n: int  # completed seeds
    mean: float
    std: float  # sample std (ddof 1); NaN with one seed
    val_mean: float  # mean val/ndcg@10 over the same seeds
    s_per_epoch: float
    train_s: float
    wall_s: float  # summed over the completed seeds
    test: PairedTest | None  # against the baseline row
    protocols: list[str]


def _nanmedian(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return median(finite) if finite else math.nan


def significance(done: list[CellResult], baseline: list[CellResult], label: str, base: str) -> PairedTest | None:
    """Paired test of ``done`` against ``baseline`` over test users, on per-user NDCG@10 averaged over the seeds
    both completed; None without common seeds or per-user files."""
    mine = {r.cell.seed: r.folder for r in done}
    theirs = {r.cell.seed: r.folder for r in baseline}
    seeds = sorted(mine.keys() & theirs.keys())
    if not seeds:
        return None
    a = per_user_values([mine[s] for s in seeds], NDCG10)
    b = per_user_values([theirs[s] for s in seeds], NDCG10)
    return None if a is None or b is None else paired_test(NDCG10, label, a, base, b)


def entries(results: list[CellResult], plan: Plan) -> dict[tuple[Row, str], Entry]:
    done = [r for r in results if r.state == names.COMPLETED]
    baseline_row = Row(plan.baseline) if plan.baseline in plan.models else None
    table: dict[tuple[Row, str], Entry] = {}
    for row in plan.rows():
        for dataset in plan.datasets:
            cell = [r for r in done if r.cell.row == row and r.cell.dataset == dataset]
            base = [r for r in done if r.cell.row == baseline_row and r.cell.dataset == dataset]
            values = np.array([r.ndcg for r in cell], dtype=np.float64)
            test = significance(cell, base, row.label, plan.baseline) if row != baseline_row and base else None
            table[row, dataset] = Entry(
                n=len(cell),
                mean=float(values.mean()) if len(values) else math.nan,
                std=float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                val_mean=float(np.mean([r.val for r in cell])) if cell else math.nan,
                s_per_epoch=_nanmedian([r.s_per_epoch for r in cell]),
                train_s=float(np.mean([r.train_s for r in cell])) if cell else math.nan,
                wall_s=float(np.nansum([r.wall_s for r in cell])) if cell else math.nan,
                test=test,
                protocols=sorted({r.protocol for r in cell if r.protocol}),
            )
    return table


def best_rows(table: dict[tuple[Row, str], Entry], plan: Plan) -> dict[str, set[Row]]:
    """Per dataset, the model row(s) with the highest mean (controls are diagnostics, never the best)."""
    best: dict[str, set[Row]] = {}
    for dataset in plan.datasets:
        means = {row: table[row, dataset].mean for row in plan.rows() if row.control is None}
        finite = [m for m in means.values() if math.isfinite(m)]
        best[dataset] = {row for row, m in means.items() if finite and m == max(finite)}
    return best


def val_choice(table: dict[tuple[Row, str], Entry], plan: Plan) -> dict[str, Row | None]:
    """Per dataset, the model row with the highest mean validation NDCG@10 (controls excluded): the row a choice
    across models made on validation only would report."""
    chosen: dict[str, Row | None] = {}
    for dataset in plan.datasets:
        means = {row: table[row, dataset].val_mean for row in plan.rows() if row.control is None}
        finite = {row: m for row, m in means.items() if math.isfinite(m)}
        chosen[dataset] = max(finite, key=lambda row: finite[row]) if finite else None
    return chosen


def frame(table: dict[tuple[Row, str], Entry], plan: Plan) -> pd.DataFrame:
    """The CSV: one line per row; per dataset its mean, std, seeds, difference and p against the baseline, users
    paired, s/epoch, train and wall seconds; then the protocol."""
    lines = []
    for row in plan.rows():
        line: dict[str, Any] = {"row": row.label, "model": row.model, "control": row.control or ""}
        for d in plan.datasets:
            e = table[row, d]
            line |= {
                f"{d}/{NDCG10}_mean": e.mean, f"{d}/{NDCG10}_std": e.std, f"{d}/seeds": e.n,
                f"{d}/{VAL_NDCG10}_mean": e.val_mean,
                f"{d}/diff_vs_{plan.baseline}": e.test.mean_diff if e.test else math.nan,
                f"{d}/p_vs_{plan.baseline}": e.test.permutation_p if e.test else math.nan,
                f"{d}/users_paired": e.test.n_users if e.test else 0,
                f"{d}/s_per_epoch": e.s_per_epoch, f"{d}/train_s": e.train_s, f"{d}/wall_s": e.wall_s,
            }  # fmt: skip
        line["protocol"] = row_protocol(table, row, plan)
        lines.append(line)
    return pd.DataFrame(lines)


def row_protocol(table: dict[tuple[Row, str], Entry], row: Row, plan: Plan) -> str:
    """The row's protocol: one line when every dataset (and seed) agrees, else each dataset's."""
    per_dataset = {d: " | ".join(table[row, d].protocols) for d in plan.datasets if table[row, d].protocols}
    distinct = set(per_dataset.values())
    if len(distinct) <= 1:
        return next(iter(distinct), "no completed run")
    return " || ".join(f"{d}: {p}" for d, p in per_dataset.items())
