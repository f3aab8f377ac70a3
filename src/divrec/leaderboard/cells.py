"""The cells of a leaderboard (dataset x row x seed), where each one's run folder lives, what state it is in, and
the Hydra multiruns of ``divrec train`` that run the cells still missing.

A row is a model, or a model under a control (``sasrec+shuffled``). Run folders: ``<out>/runs/<dataset>/<row>/
seed<k>``. A cell is done when its ``status.json`` says completed and it has ``metrics.json``; such cells are never
run again. The others are run by one multirun per (dataset, row) over its missing seeds (``divrec train -m ...
seed=0,2 hydra.sweep.dir=<out>/runs/<dataset>/<row> hydra.sweep.subdir=seed${seed}``), so that a config one model
cannot compose fails only that model's cells, and a job that fails inside a multirun fails alone (the CLI records it
in its ``status.json``). A cell that failed before is moved to ``<out>/previous/`` and run from scratch; a cell left
running (the leaderboard was interrupted) resumes from its ``last.ckpt`` (``ckpt_path=last``).

An ensemble row (``ensembles=[bsarec+sasrec+ease]``) runs after the model rows of its dataset: its seed-``k`` cell is
``divrec train experiment=ensemble`` over the members' seed-``k`` cells of the same folder (each member's epoch
chosen on its own validation), scores z-scored and weights chosen on validation NDCG@10 unless its scoped overrides
say otherwise (``<members>:model.weights=null``), so the seeds of an ensemble row share no run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from divrec import names
from divrec.errors import UserError
from divrec.sweep.status import read_status, write_status

RUNS_DIR = "runs"  # <out>/runs/<dataset>/<row>/seed<k>
PREVIOUS_DIR = "previous"  # <out>/previous/<dataset>/<row>/seed<k>.<n>: earlier failed attempts
LOG_FILE = "leaderboard.log"  # <out>/runs/<dataset>/<row>/leaderboard.log: the multiruns' output
MISSING = "missing"  # no run folder yet
# Each control: the overrides that make it, and what it means (for the table's footnote).
CONTROLS: dict[str, tuple[tuple[str, ...], str]] = {
    "shuffled": (
        ("data.shuffle_sequences=true",),
        "each user's training sequence randomly permuted (seeded); validation/test histories keep their order",
    ),
}
# An ensemble row's own settings, before the shared and scoped overrides: every member kind may join (closed-form
# baselines too) and the weights are a validation choice, so the row is selected on validation like any other
ENSEMBLE_DEFAULTS = ("experiment=ensemble", "model.normalize=zscore", "model.weights=val")
JOBLIB = "hydra_plugins.hydra_joblib_launcher"
JOB_FAILED = "job failed, the sweep goes on: "  # how divrec.cli logs a failed multirun job


class LeaderboardError(UserError):
    """Bad input to ``divrec leaderboard``: an unknown model, dataset or control, a reserved override."""


@dataclass(frozen=True)
class Row:
    """One leaderboard row: a model (a ``conf/model/`` option), optionally under a control, or an ensemble of the
    plan's models (``model`` is then the members' names joined by ``+``, the name its scoped overrides use)."""

    model: str
    control: str | None = None
    members: tuple[str, ...] = ()

    @classmethod
    def ensemble(cls, members: tuple[str, ...]) -> Row:
        return cls("+".join(members), members=members)

    @property
    def label(self) -> str:
        return self.model if self.control is None else f"{self.model}+{self.control}"

    def overrides(self, out: Path, dataset: str) -> list[str]:
        """What makes the row: its model and control, or an ensemble of the members' cells of the same seed."""
        if self.members:
            # each member's folder quoted, its seed left to Hydra: '<out>/runs/<dataset>/<member>/seed${seed}'
            runs = ",".join(hydra_quoted(out / RUNS_DIR / dataset / m)[:-1] + "/seed${seed}'" for m in self.members)
            return [*ENSEMBLE_DEFAULTS, f"model.members=[{runs}]"]
        return [f"model={self.model}", *(CONTROLS[self.control][0] if self.control else ())]


@dataclass(frozen=True)
class Cell:
    dataset: str
    row: Row
    seed: int

    def folder(self, out: Path) -> Path:
        return out / RUNS_DIR / self.dataset / self.row.label / f"seed{self.seed}"

    def __str__(self) -> str:
        return f"{self.dataset}/{self.row.label}/seed{self.seed}"


@dataclass
class Plan:
    """What one ``divrec leaderboard`` command asks for."""

    models: list[str]
    datasets: list[str]
    seeds: list[int]
    out: Path
    controls: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # passed to every cell
    # "<model>", "<dataset>" or "<dataset>/<model>" → overrides of those cells only (a recipe), after the shared ones
    scoped: dict[str, list[str]] = field(default_factory=dict)
    baseline: str = "sasrec"  # every row is tested against this model's row
    jobs: int = 1  # cells of one multirun at a time (> 1: Hydra's joblib launcher)
    threads: int | None = None  # torch threads per cell (OMP_NUM_THREADS); None = torch's default
    ensembles: list[tuple[str, ...]] = field(default_factory=list)  # each: models of this plan, combined per seed

    def rows(self) -> list[Row]:
        """Each model, each followed by its control rows; then the ensembles (their members run first)."""
        return [Row(m, c) for m in self.models for c in (None, *self.controls)] + self.ensemble_rows()

    def ensemble_rows(self) -> list[Row]:
        return [Row.ensemble(members) for members in self.ensembles]

    def row_names(self) -> list[str]:
        """The names a scoped override or the folder record may use: the models, then the ensembles."""
        return [*self.models, *(row.model for row in self.ensemble_rows())]

    def cells(self) -> list[Cell]:
        return [Cell(d, row, s) for d in self.datasets for row in self.rows() for s in self.seeds]

    def cell_overrides(self, dataset: str, model: str) -> list[str]:
        """What a (dataset, model) cell runs with: the shared overrides, then the dataset's, the model's and the
        pair's (a later value of the same key wins)."""
        scopes = (dataset, model, f"{dataset}/{model}")
        return [*self.overrides, *(o for scope in scopes for o in self.scoped.get(scope, []))]


def cell_state(folder: Path) -> tuple[str, str | None]:
    """``(state, error)``: completed (status completed and metrics.json), failed (with its one-line error),
    incomplete (a run folder that did neither: still running, killed, interrupted) or missing."""
    status = read_status(folder) or {}
    if status.get("status") == names.COMPLETED and (folder / names.METRICS_FILE).is_file():
        return names.COMPLETED, None
    if status.get("status") == names.FAILED:
        return names.FAILED, str(status.get("error") or "failed (no error recorded)")
    return (names.INCOMPLETE, None) if folder.exists() else (MISSING, None)


@dataclass(frozen=True)
class Group:
    """The missing seeds of one (dataset, row): one multirun."""

    dataset: str
    row: Row
    seeds: tuple[int, ...]

    def sweep_dir(self, out: Path) -> Path:
        return out / RUNS_DIR / self.dataset / self.row.label

    def cells(self) -> list[Cell]:
        return [Cell(self.dataset, self.row, s) for s in self.seeds]


def pending_groups(plan: Plan) -> list[Group]:
    """The cells not completed, grouped by (dataset, row), in the plan's order."""
    todo: dict[tuple[str, Row], list[int]] = {}
    for cell in plan.cells():
        if cell_state(cell.folder(plan.out))[0] != names.COMPLETED:
            todo.setdefault((cell.dataset, cell.row), []).append(cell.seed)
    return [Group(dataset, row, tuple(seeds)) for (dataset, row), seeds in todo.items()]


def hydra_quoted(path: Path) -> str:
    """A path as a Hydra override value (quoted; the characters Hydra would read differently are refused)."""
    text = str(path)
    if any(c in text for c in "\\$'"):
        raise LeaderboardError(f"out={text}: the path may not contain \\, $ or '; choose a plain folder name")
    return f"'{text}'"


def launcher_overrides(jobs: int) -> list[str]:
    """Several cells at a time through Hydra's joblib launcher, which divrec does not depend on."""
    if jobs == 1:
        return []
    if importlib.util.find_spec(JOBLIB) is None:
        raise LeaderboardError(
            f"jobs={jobs} runs cells side by side through Hydra's joblib launcher, which is not installed "
            "(pip install hydra-joblib-launcher); run with jobs=1"
        )
    return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]


def command(group: Group, plan: Plan) -> list[str]:
    """``divrec train -m`` over the group's seeds into its sweep folder (``ckpt_path=last``: an interrupted cell
    resumes; the others have no last.ckpt and start from scratch)."""
    seeds = ",".join(str(s) for s in group.seeds)
    return [
        sys.executable, "-m", "divrec", "train", "-m", f"data={group.dataset}",
        *group.row.overrides(plan.out, group.dataset),
        f"seed={seeds}", *plan.cell_overrides(group.dataset, group.row.model), "ckpt_path=last",
        f"hydra.sweep.dir={hydra_quoted(group.sweep_dir(plan.out))}", "hydra.sweep.subdir=seed${seed}",
        *launcher_overrides(plan.jobs),
    ]  # fmt: skip


def set_aside_failed(group: Group, out: Path) -> list[Path]:
    """Move the group's failed cells to ``<out>/previous/`` (kept, not deleted) so that they start afresh."""
    moved = []
    for cell in group.cells():
        folder = cell.folder(out)
        if cell_state(folder)[0] != names.FAILED:
            continue
        parent = out / PREVIOUS_DIR / cell.dataset / cell.row.label
        parent.mkdir(parents=True, exist_ok=True)
        n = 1 + sum(1 for _ in parent.glob(f"{folder.name}.*"))
        target = parent / f"{folder.name}.{n}"
        shutil.move(str(folder), str(target))
        moved.append(target)
    return moved


def run_group(group: Group, plan: Plan) -> int:
    """Run the group's multirun (its output appended to ``leaderboard.log`` in its sweep folder), then give each
    of its cells that neither completed nor recorded a failure a failed ``status.json`` saying why; the exit
    status of the multirun."""
    set_aside_failed(group, plan.out)
    env = dict(os.environ)
    if plan.threads is not None:
        env |= {"OMP_NUM_THREADS": str(plan.threads), "MKL_NUM_THREADS": str(plan.threads)}
    log_path = group.sweep_dir(plan.out) / LOG_FILE
    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = command(group, plan)
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(args[1:])}\n")
        log.flush()
        rc = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode
    record_unfinished(group, plan.out, rc, last_error(log_path))
    return rc


def last_error(log_path: Path) -> str:
    """The last one-line error of a log (``error: ...`` of a command, or a multirun job's ``job failed, the sweep
    goes on: ...``), else its last non-empty line."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [
        line.removeprefix("error:").strip() if line.startswith("error:") else line.partition(JOB_FAILED)[2]
        for line in lines
        if line.startswith("error:") or JOB_FAILED in line
    ]
    return errors[-1] if errors else (lines[-1] if lines else "no output")


def record_unfinished(group: Group, out: Path, rc: int, line: str) -> None:
    for cell in group.cells():
        folder = cell.folder(out)
        state, _ = cell_state(folder)
        if state == MISSING:
            folder.mkdir(parents=True, exist_ok=True)
            write_status(folder, names.FAILED, f"not started: divrec train -m exited with status {rc}: {line}")
        elif state == names.INCOMPLETE:
            write_status(folder, names.FAILED, f"the training process ended (status {rc}) during this cell: {line}")


def run_pending(plan: Plan) -> list[Group]:
    """Run every pending group one after the other, printing one line before and after each; the groups run."""
    groups = pending_groups(plan)
    total = sum(len(g.seeds) for g in groups)
    done = 0
    for group in groups:
        seeds = ",".join(str(s) for s in group.seeds)
        print(f"[leaderboard] {group.dataset}/{group.row.label} seeds {seeds} ({done}/{total} cells run so far)",
              flush=True)  # fmt: skip
        rc = run_group(group, plan)
        done += len(group.seeds)
        states = [cell_state(c.folder(plan.out))[0] for c in group.cells()]
        failed = states.count(names.FAILED)
        note = f", {failed} failed" if failed else ""
        print(f"[leaderboard]   {states.count(names.COMPLETED)} completed{note} (exit status {rc}; log "
              f"{group.sweep_dir(plan.out) / LOG_FILE})", flush=True)  # fmt: skip
    return groups
