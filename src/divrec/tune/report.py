"""What ``divrec tune`` writes into its study folder after every trial, and the one summary line it prints.

- ``trials.csv`` / ``trials.md``: one row per trial: state (completed | pruned | failed | running), the validation
  value (completed trials: the checkpointed epoch's; pruned: the best reported before pruning, ``best_seen``), best
  epoch, epochs, why it stopped, start/end in tuning minutes, the sampled params. Test metrics are left out: they
  stay in each trial's ``metrics.json`` and never choose.
- ``progress.png``: best-so-far validation value against tuning minutes (every invocation of the study end to
  end); completed trials as dots, pruned ones as crosses at their best reported value.
- ``best.yaml`` = ``experiment/tuned.yaml``: a ``# @package _global_`` experiment of the chosen trial (the
  confirmed choice, ``divrec.tune.confirm``, where there is one; else the single-seed best): the command
  line's group choices (``override /data: beauty``), its key overrides, the sampled and tied values, and
  ``trainer.max_epochs`` = the epochs the best trial trained. ``divrec train hydra.searchpath=[file://<out>]
  experiment=tuned`` runs it.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from divrec import names
from divrec.configs import config_dir
from divrec.report import write_atomic

from .confirm import Choice, chosen
from .objective import DEFAULT_ATTR

if TYPE_CHECKING:
    from .study import Invocation

TRIALS_CSV = "trials.csv"
TRIALS_MD = "trials.md"
PROGRESS_PNG = "progress.png"
BEST_YAML = "best.yaml"
EXPERIMENT = "experiment/tuned.yaml"  # under <out>: hydra.searchpath=[file://<out>] experiment=tuned
STATES = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}
NOT_IN_RECIPE = ("launcher", "hydra", "sweep")  # groups that are where/how to run, not what to train
_ABSENT = object()


def best_trial(study: Any, maximize: bool) -> Any | None:
    """The completed trial with the best validation value; on a tie the earlier trial (the default first)."""
    done = [t for t in study.trials if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)]
    if not done:
        return None
    return sorted(done, key=lambda t: (-t.value if maximize else t.value, t.number))[0]


def chosen_trial(study: Any, maximize: bool) -> tuple[Any | None, Choice | None]:
    """The trial best.yaml holds: the confirmed choice where a confirmation is usable, else the single-seed best."""
    choice = chosen(study, maximize)
    if choice is None:
        return best_trial(study, maximize), None
    return next(t for t in study.trials if t.number == choice.trial), choice


def trial_rows(study: Any, run: Invocation) -> list[dict[str, Any]]:
    rows = []
    for t in study.trials:
        attrs = t.user_attrs
        value = t.value if t.state.name == "COMPLETE" else None  # optuna gives a pruned trial its last report
        row = {
            "trial": t.number, "state": STATES.get(t.state.name, t.state.name.lower()),
            "default": bool(attrs.get(DEFAULT_ATTR)), run.monitor: value, "best_seen": attrs.get("best_seen"),
            "best_epoch": attrs.get("best_epoch"), names.EPOCHS: attrs.get(names.EPOCHS),
            "stopped_by": attrs.get("stopped_by"), "start_min": attrs.get("start_min"), "end_min": attrs.get("end_min"),
        }  # fmt: skip
        rows.append(row | {p.key: t.params.get(p.key) for p in run.space.params})
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def write_tables(rows: list[dict[str, Any]], out: Path, best: int | None) -> None:
    if not rows:
        return
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / TRIALS_CSV, buffer.getvalue())
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        cells = [_cell(row[c]) for c in columns]
        if row["trial"] == best:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    write_atomic(out / TRIALS_MD, "\n".join(lines) + "\n")


def write_plot(rows: list[dict[str, Any]], out: Path, monitor: str, maximize: bool) -> Path | None:
    """Best-so-far validation value against tuning minutes; pruned trials marked where they were stopped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ended = sorted((r for r in rows if isinstance(r["end_min"], int | float)), key=lambda r: r["end_min"])
    if not ended:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    xs, best, current = [0.0], [math.nan], None
    for row in ended:
        value = row[monitor]
        if row["state"] == "completed" and value is not None:
            current = value if current is None else (max if maximize else min)(current, value)
        xs.append(row["end_min"])
        best.append(math.nan if current is None else current)
    ax.step(xs, best, where="post", color="C0", label="best so far")
    for state, marker, key, color in (("completed", "o", monitor, "C0"), ("pruned", "x", "best_seen", "C3")):
        pts = [(r["end_min"], r[key]) for r in ended if r["state"] == state and r[key] is not None]
        if pts:
            ax.scatter(*zip(*pts, strict=True), marker=marker, color=color, label=state, zorder=3)
    ax.set_xlabel("tuning wall-clock minutes")
    ax.set_ylabel(monitor)
    ax.legend(loc="lower right" if maximize else "upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / PROGRESS_PNG
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _is_group(key: str, base: DictConfig) -> bool:
    """A group override (``data=beauty``) rather than a key override (``optim.lr=1e-3``)."""
    if "/" in key or (config_dir() / key).is_dir():
        return True
    selected = OmegaConf.select(base, key, default=_ABSENT)
    return selected is _ABSENT or isinstance(selected, DictConfig)


def recipe(run: Invocation, settings: dict[str, Any], epochs: int | None) -> tuple[list[str], DictConfig]:
    """The experiment's defaults entries and values: the command line's group choices and key overrides (their
    values as the trials saw them), then ``settings``, then ``trainer.max_epochs``."""
    defaults: list[str] = []
    node = OmegaConf.create({})
    for override in OverridesParser.create().parse_overrides(list(run.overrides)):
        key = override.key_or_group
        if override.is_delete() or key.split("/")[0] in NOT_IN_RECIPE:
            continue
        if _is_group(key, run.base) and isinstance(override.value(), str):
            option = override.value()
            if key == "experiment":  # a saved recipe, nested: its own overrides apply, then this file's
                defaults.insert(0, f"/experiment/{option}")
            else:
                defaults.append(f"override /{key}: {option}")
        else:
            OmegaConf.update(node, key, OmegaConf.select(run.base, key), force_add=True)
    for key, value in settings.items():
        OmegaConf.update(node, key, value, force_add=True)
    if epochs:
        OmegaConf.update(node, "trainer.max_epochs", int(epochs), force_add=True)
    return defaults, node


def experiment_yaml(study: Any, run: Invocation, best: Any, default_value: float | None,
                    choice: Choice | None = None) -> str:
    defaults, node = recipe(run, run.space.settings(best.params), best.user_attrs.get(names.EPOCHS))
    command = " ".join(["divrec tune", *run.overrides, f"tune.space={run.space.name}"])
    confirmed = [] if choice is None else [f"# {choice.line(run.monitor)}; see confirm.md"]
    header = [
        "# @package _global_",
        f"# divrec tune: trial {best.number} of {len(study.trials)} in {run.out / 'study.db'}",
        f"# {run.monitor} = {best.value:.4f} (the default, trial 0: {_cell(default_value) or 'not measured'}),"
        " chosen on validation only;",
        *confirmed,
        "# trainer.max_epochs = the epochs that trial trained (early stopping still applies).",
        f"# tuned by: {command}",
        "# run it:",
        f"#   divrec train hydra.searchpath=[file://{run.out}] experiment=tuned seed=0",
    ]
    body = "defaults:\n" + "".join(f"  - {d}\n" for d in defaults) if defaults else ""
    return "\n".join(header) + "\n" + body + OmegaConf.to_yaml(node)


def default_value(study: Any) -> float | None:
    values = [t.value for t in study.trials if t.user_attrs.get(DEFAULT_ATTR) and t.state.name == "COMPLETE"]
    return values[0] if values else None


def write_outputs(study: Any, run: Invocation) -> None:
    """Tables, plot, and (once a trial completed) best.yaml + experiment/tuned.yaml."""
    best, choice = chosen_trial(study, run.maximize)
    rows = trial_rows(study, run)
    write_tables(rows, run.out, None if best is None else best.number)
    write_plot(rows, run.out, run.monitor, run.maximize)
    if best is not None:
        text = experiment_yaml(study, run, best, default_value(study), choice)
        write_atomic(run.out / BEST_YAML, text)
        write_atomic(run.out / EXPERIMENT, text)


def summary_line(study: Any, run: Invocation, first: int, minutes: float, budget_min: float, stop: str
                 ) -> dict[str, Any]:
    """The summary of this invocation (its trials are those numbered ``first`` on; ``line``: what is printed)."""
    mine = [t for t in study.trials if t.number >= first]  # this invocation's trials
    counts = {s: sum(STATES.get(t.state.name) == s for t in mine) for s in ("completed", "pruned", "failed")}
    best, default = best_trial(study, run.maximize), default_value(study)
    best_text = "none completed" if best is None else f"{best.value:.4f} (trial {best.number})"
    pick, choice = chosen_trial(study, run.maximize)
    if choice is not None:
        best_text += f"; {choice.line(run.monitor)}"
    line = (
        f"[tune] {run.monitor}: default {_cell(default) or 'not measured'}, best {best_text}; this run: "
        f"{len(mine)} trials ({counts['completed']} completed, {counts['pruned']} pruned, {counts['failed']} "
        f"failed), {minutes:.1f} of {budget_min:g} min (stopped by {stop}); study: {len(study.trials)} trials, "
        f"{float(study.user_attrs.get('minutes_used', minutes)):.1f} min -> {run.out / BEST_YAML}"
    )
    return {"line": line, "default": default, "best": None if best is None else best.value,
            "best_trial": None if best is None else best.number, "trials": len(mine), **counts,
            "chosen_trial": None if pick is None else pick.number,
            "confirmed_seeds": [] if choice is None else list(choice.seeds),
            "minutes": minutes, "stopped_by": stop, "out": str(run.out)}  # fmt: skip

