"""``divrec leaderboard models=[...] datasets=[...] seeds=[0,1,2] out=<dir> [key=value ...]``: a plain command
beside ``compare`` (no Hydra config of its own). It runs the cells not yet completed through Hydra multiruns of
``divrec train`` (``divrec.leaderboard.cells``), then writes ``leaderboard.md``, ``.csv`` and ``.png`` into ``out``
(``divrec.leaderboard.render``). Any other ``key=value`` is a ``divrec train`` override passed to every cell;
``<model>:key=value``, ``<dataset>:key=value`` or ``<dataset>/<model>:key=value`` only to those cells (a recipe).
``ensembles=[a+b,...]`` adds a row per ensemble of the listed models, run after them (``divrec.leaderboard.cells``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from divrec.configs import config_dir
from divrec.errors import UserError
from divrec.leaderboard.cells import CONTROLS, LeaderboardError, Plan, hydra_quoted, launcher_overrides, run_pending
from divrec.leaderboard.render import write_report
from divrec.report import write_atomic

RECORD_FILE = "leaderboard.json"  # <out>/leaderboard.json: the overrides every cell of this folder ran with
USAGE = """usage: divrec leaderboard models=[sasrec,bsarec] datasets=[ml-100k,beauty] seeds=[0,1,2] out=<dir>
                          [controls=[shuffled]] [ensembles=[sasrec+bsarec]] [baseline=sasrec] [jobs=1]
                          [threads=N] [run=true] [override ...] [<model>|<dataset>|<dataset>/<model>:override ...]

Runs every (dataset, model, seed) cell not yet completed in <out> (divrec train through Hydra multiruns; failed cells
run again from scratch, interrupted ones resume), then writes <out>/leaderboard.md, .csv and .png. run=false only
writes the report. Any other key=value (e.g. trainer=debug, trainer.max_epochs=20) goes to every cell;
<model>:, <dataset>: or <dataset>/<model>:key=value (e.g. bsarec:optim.lr=5e-4, beauty/sasrec:model.dropout=0.5)
only to those cells, after the shared ones. ensembles=[a+b+c]: a row per ensemble of listed models, its seed-k cell
combining their seed-k cells (z-scored, weights chosen on validation; a+b+c:model.weights=null for equal ones)."""
# Keys the leaderboard sets itself, and what to pass instead.
RESERVED = {
    "model": "models=[...]", "data": "datasets=[...]", "seed": "seeds=[...]",
    "data.shuffle_sequences": "controls=[shuffled]",
    "hydra.sweep.dir": "out=<dir>", "hydra.sweep.subdir": "out=<dir>", "paths.output_dir": "out=<dir>",
    "hydra.run.dir": "out=<dir>", "ckpt_path": "nothing (interrupted cells resume by themselves)",
    "hydra/launcher": "jobs=N", "hydra.launcher.n_jobs": "jobs=N",
}  # fmt: skip
DEFAULTS = {"out": "outputs/leaderboard", "seeds": "[0,1,2]", "baseline": "sasrec", "jobs": "1", "run": "true"}
REQUIRED = ("models", "datasets")


def parse_list(key: str, value: str) -> list[str]:
    """``[a,b]`` or ``a,b`` or ``a`` → ``["a", "b"]`` (no empty entries, no repeats)."""
    inner = value.strip()
    inner = inner[1:-1] if inner.startswith("[") and inner.endswith("]") else inner
    items = [item.strip().strip("'\"") for item in inner.split(",")] if inner.strip() else []
    if any(not item for item in items) or len(set(items)) != len(items):
        raise LeaderboardError(f"{key}={value}: give distinct names, e.g. {key}=[a,b]")
    return items


def _integer(key: str, value: str, low: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if number < low:
        raise LeaderboardError(f"{key}={value} must be an integer >= {low}, e.g. {key}={low}")
    return number


def options(group: str) -> list[str]:
    """The options of a config group in divrec's ``conf/`` (``_``-files are shared pieces, not options)."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml") if not p.stem.startswith("_"))


def _check_names(key: str, values: list[str], known: list[str]) -> None:
    unknown = [v for v in values if v not in known]
    if unknown:
        raise LeaderboardError(f"{key}: unknown {unknown}; choose from {known}")


def check_override(token: str) -> str:
    """A ``divrec train`` override for every cell: parseable, one value (a sweep would put several runs in one
    cell) and none of the keys the leaderboard sets itself."""
    try:
        override = OverridesParser.create().parse_override(token)
    except HydraException as err:  # OverrideParseException, or the grammar's own syntax error
        raise LeaderboardError(f"cannot parse the override {token!r}: {str(err).splitlines()[0]}") from None
    key = override.key_or_group
    if key in RESERVED:
        raise LeaderboardError(f"{token}: the leaderboard sets {key} itself; pass {RESERVED[key]}")
    if override.is_sweep_override():
        raise LeaderboardError(f"{token}: a sweep inside a cell is not a leaderboard cell; pass one value")
    return token


def parse_args(argv: Sequence[str]) -> tuple[Plan, bool]:
    """The plan and whether to run (``run=false``: report only)."""
    given: dict[str, str] = {}
    overrides: list[str] = []
    scoped: dict[str, list[str]] = {}
    for token in argv:
        key, sep, value = token.partition("=")
        scope, colon, override = token.partition(":")
        if not sep or token.startswith("-"):
            raise LeaderboardError(f"{token!r}: arguments are key=value (e.g. models=[sasrec,bsarec]); see --help")
        if key in ("models", "datasets", "seeds", "controls", "ensembles", "out", "jobs", "threads", "baseline", "run"):
            given[key] = value
        elif colon and "=" not in scope:  # <model>:, <dataset>: or <dataset>/<model>:key=value, for those cells
            scoped.setdefault(scope, []).append(check_override(override))
        else:
            overrides.append(check_override(token))
    missing = [k for k in REQUIRED if k not in given]
    if missing:
        raise LeaderboardError(f"missing {', '.join(f'{k}=[...]' for k in missing)}; e.g. {USAGE.splitlines()[0][7:]}")
    values = DEFAULTS | given
    plan = Plan(
        models=parse_list("models", values["models"]),
        datasets=parse_list("datasets", values["datasets"]),
        seeds=[_integer("seeds", s, 0) for s in parse_list("seeds", values["seeds"])],
        out=Path(values["out"]).expanduser().absolute(),
        controls=parse_list("controls", values.get("controls", "[]")),
        overrides=overrides,
        scoped=scoped,
        baseline=values["baseline"],
        jobs=_integer("jobs", values["jobs"], 1),
        threads=None if values.get("threads") in (None, "null") else _integer("threads", values["threads"], 1),
        ensembles=[tuple(e.split("+")) for e in parse_list("ensembles", values.get("ensembles", "[]"))],
    )
    _check_plan(plan, explicit_baseline="baseline" in given)
    if values["run"] not in ("true", "false"):
        raise LeaderboardError(f"run={values['run']} must be true or false")
    return plan, values["run"] == "true"


def _check_plan(plan: Plan, explicit_baseline: bool) -> None:
    if not plan.models or not plan.datasets or not plan.seeds:
        raise LeaderboardError("models, datasets and seeds each need at least one entry, e.g. seeds=[0]")
    if not any(o.lstrip("+").startswith("hydra.searchpath") for o in plan.overrides):  # else: the user's configs
        _check_names("models", plan.models, options("model"))
        _check_names("datasets", plan.datasets, options("data"))
    _check_names("controls", plan.controls, sorted(CONTROLS))
    for members in plan.ensembles:
        _check_ensemble(members, plan.models)
    row_names = plan.row_names()
    scopes = {*row_names, *plan.datasets, *(f"{d}/{m}" for d in plan.datasets for m in row_names)}
    stray = sorted(set(plan.scoped) - scopes)
    if stray:
        raise LeaderboardError(
            f"{stray[0]}:<override>: {stray[0]} is none of models={plan.models}, datasets={plan.datasets}, "
            f"ensembles={[r.model for r in plan.ensemble_rows()]} or <dataset>/<model>"
        )
    if explicit_baseline and plan.baseline not in plan.models:
        raise LeaderboardError(f"baseline={plan.baseline} is not one of models={plan.models}")
    hydra_quoted(plan.out)


def _check_ensemble(members: tuple[str, ...], models: list[str]) -> None:
    label = "+".join(members)
    if len(members) < 2 or len(set(members)) != len(members) or not all(members):
        raise LeaderboardError(f"ensembles: {label!r} needs two or more distinct models joined by +, e.g. sasrec+ease")
    outside = [m for m in members if m not in models]
    if outside:
        raise LeaderboardError(f"ensembles: {label} combines {outside}, which models={models} does not run; add "
                               "them to models=[...]")  # fmt: skip


def check_record(plan: Plan) -> None:
    """``<out>/leaderboard.json`` holds the overrides each (dataset, model) ran with: a later command that would
    run one of them with others would mix two protocols in one table, so it is refused (a pair new to the folder
    may bring its own); the record is written before any cell runs."""
    path = plan.out / RECORD_FILE
    try:
        recorded = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        recorded = {}
    recorded = recorded if isinstance(recorded, dict) else {}
    mine = {f"{d}/{m}": plan.cell_overrides(d, m) for d in plan.datasets for m in plan.row_names()}
    for pair, overrides in mine.items():
        if recorded.get(pair, overrides) != overrides:
            raise LeaderboardError(
                f"{plan.out} holds {pair} cells run with the overrides {recorded[pair]}, not {overrides}: pass the "
                "same overrides to add or resume cells, or choose a new out=<dir>"
            )
    plan.out.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(recorded | mine, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    try:
        plan, run = parse_args(args)
        if run:
            launcher_overrides(plan.jobs)  # jobs > 1 without the joblib launcher: refused before anything runs
            check_record(plan)
            run_pending(plan)
        written, markdown, _ = write_report(plan)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    print(markdown)
    print("wrote " + ", ".join(str(p) for p in written), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
