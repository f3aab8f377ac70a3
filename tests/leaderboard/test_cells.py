"""``divrec leaderboard`` arguments, cell states, resumption and the multirun commands, without training."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from divrec import names
from divrec.leaderboard.cells import (
    JOBLIB,
    Cell,
    Group,
    LeaderboardError,
    Plan,
    Row,
    cell_state,
    command,
    last_error,
    launcher_overrides,
    pending_groups,
    record_unfinished,
    set_aside_failed,
)
from divrec.leaderboard.cli import check_record, parse_args
from divrec.sweep.status import read_status, write_status


def test_arguments_lists_defaults_and_pass_through_overrides(tmp_path: Path) -> None:
    plan, run = parse_args(["models=[sasrec, bsarec]", "datasets=ml-100k,beauty", f"out={tmp_path}", "threads=1",
                            "controls=[shuffled]", "trainer=debug", "+model.extra=1", "metrics.ks=[5,10]",
                            "bsarec:optim.lr=5e-4", "beauty:data.batch_size=256", "beauty/bsarec:optim.lr=1e-3",
                            "bsarec:hydra.searchpath=[file:///x]"])  # fmt: skip
    assert (plan.models, plan.datasets, plan.seeds, plan.controls) == (
        ["sasrec", "bsarec"], ["ml-100k", "beauty"], [0, 1, 2], ["shuffled"])  # fmt: skip
    assert plan.overrides == ["trainer=debug", "+model.extra=1", "metrics.ks=[5,10]"]
    scoped = ["data.batch_size=256", "optim.lr=5e-4", "hydra.searchpath=[file:///x]", "optim.lr=1e-3"]
    assert plan.cell_overrides("beauty", "bsarec") == [*plan.overrides, *scoped]  # dataset, model, then the pair
    assert plan.cell_overrides("ml-100k", "sasrec") == plan.overrides
    assert (plan.baseline, plan.jobs, plan.threads, plan.out, run) == ("sasrec", 1, 1, tmp_path, True)
    assert [r.label for r in plan.rows()] == ["sasrec", "sasrec+shuffled", "bsarec", "bsarec+shuffled"]
    assert len(plan.cells()) == 2 * 4 * 3
    assert parse_args(["models=[pop]", "datasets=[synthetic]", "seeds=[3]", "run=false"])[1] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["datasets=[synthetic]"], "missing models=[...]"),
        (["models=[sasrec,nosuch]", "datasets=[synthetic]"], "models: unknown ['nosuch']; choose from ["),
        (["models=[sasrec]", "datasets=[nosuch]"], "datasets: unknown ['nosuch']"),
        (["models=[sasrec]", "datasets=[synthetic]", "controls=[reversed]"], "controls: unknown ['reversed']"),
        (["models=[sasrec]", "datasets=[synthetic]", "seed=3"], "seed=3: the leaderboard sets seed itself; pass seeds"),
        (["models=[sasrec]", "datasets=[synthetic]", "model=bsarec"], "pass models=[...]"),
        (["models=[sasrec]", "datasets=[synthetic]", "hydra.sweep.dir=x"], "pass out=<dir>"),
        (["models=[sasrec]", "datasets=[synthetic]", "data.shuffle_sequences=true"], "pass controls=[shuffled]"),
        (["models=[sasrec]", "datasets=[synthetic]", "optim.lr=1e-3,1e-2"], "a sweep inside a cell"),
        (["models=[sasrec]", "datasets=[synthetic]", "optim.lr=[1"], "cannot parse the override 'optim.lr=[1'"),
        (["models=[sasrec]", "datasets=[synthetic]", "-m"], "arguments are key=value"),
        (["models=[sasrec,sasrec]", "datasets=[synthetic]"], "give distinct names"),
        (["models=[sasrec]", "datasets=[synthetic]", "seeds=[0,x]"], "seeds=x must be an integer >= 0"),
        (["models=[bsarec]", "datasets=[synthetic]", "baseline=sasrec"], "baseline=sasrec is not one of models"),
        (["models=[sasrec]", "datasets=[synthetic]", "out=/tmp/a$b"], "may not contain"),
        (["models=[sasrec]", "datasets=[synthetic]", "bsarec:optim.lr=1"], "bsarec is none of models=['sasrec'],"),
        (["models=[sasrec]", "datasets=[synthetic]", "sasrec:seed=1"], "the leaderboard sets seed itself"),
    ],
)
def test_bad_arguments_are_one_line_errors(args: list[str], message: str) -> None:
    with pytest.raises(LeaderboardError) as caught:
        parse_args(args)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_jobs_above_one_need_the_joblib_launcher() -> None:
    assert launcher_overrides(1) == []
    if importlib.util.find_spec(JOBLIB) is not None:
        assert launcher_overrides(2) == ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    else:
        with pytest.raises(LeaderboardError, match="joblib launcher, which is not installed"):
            launcher_overrides(2)


def test_one_multirun_per_dataset_and_row_over_its_missing_seeds(tmp_path: Path) -> None:
    plan = Plan(models=["sasrec"], datasets=["synthetic"], seeds=[0, 1, 2], out=tmp_path, controls=["shuffled"],
                overrides=["trainer=debug"], scoped={"sasrec": ["optim.lr=1e-3"]})  # fmt: skip
    done = Cell("synthetic", Row("sasrec"), 1).folder(tmp_path)
    done.mkdir(parents=True)
    write_status(done, names.COMPLETED)
    assert cell_state(done) == (names.INCOMPLETE, None)  # completed needs metrics.json too
    (done / names.METRICS_FILE).write_text("{}")
    failed = Cell("synthetic", Row("sasrec", "shuffled"), 0).folder(tmp_path)
    failed.mkdir(parents=True)
    write_status(failed, names.FAILED, "UserError: bad")
    assert cell_state(done) == (names.COMPLETED, None) and cell_state(failed) == (names.FAILED, "UserError: bad")
    groups = pending_groups(plan)
    control = Row("sasrec", "shuffled")
    assert groups == [Group("synthetic", Row("sasrec"), (0, 2)), Group("synthetic", control, (0, 1, 2))]
    args = command(groups[1], plan)
    assert args[1:6] == ["-m", "divrec", "train", "-m", "data=synthetic"]
    assert args[6:] == [
        "model=sasrec", "data.shuffle_sequences=true", "seed=0,1,2", "trainer=debug", "optim.lr=1e-3", "ckpt_path=last",
        f"hydra.sweep.dir='{tmp_path}/runs/synthetic/sasrec+shuffled'", "hydra.sweep.subdir=seed${seed}",
    ]  # fmt: skip


def test_failed_cells_are_set_aside_and_unfinished_ones_get_a_failed_status(tmp_path: Path) -> None:
    group = Group("synthetic", Row("sasrec"), (0, 1, 2))
    folders = [c.folder(tmp_path) for c in group.cells()]
    for attempt in (1, 2):
        folders[0].mkdir(parents=True)
        write_status(folders[0], names.FAILED, f"UserError: attempt {attempt}")
        assert set_aside_failed(group, tmp_path) == [tmp_path / "previous/synthetic/sasrec" / f"seed0.{attempt}"]
    assert not folders[0].exists()
    assert json.loads((tmp_path / "previous/synthetic/sasrec/seed0.1/status.json").read_text())["error"].endswith("1")
    folders[1].mkdir(parents=True)
    write_status(folders[1], names.RUNNING)
    record_unfinished(group, tmp_path, 2, "Could not override 'model.x'")
    assert read_status(folders[0])["error"] == (
        "not started: divrec train -m exited with status 2: Could not override 'model.x'")  # fmt: skip
    assert read_status(folders[1])["error"].startswith("the training process ended (status 2) during this cell")
    assert cell_state(folders[2])[0] == names.FAILED


def test_the_error_of_a_multirun_log_is_its_last_one_line_error(tmp_path: Path) -> None:
    log = tmp_path / "leaderboard.log"
    log.write_text("$ divrec train -m ...\nerror: Could not override 'x'\n")
    assert last_error(log) == "Could not override 'x'"
    log.write_text("[..][divrec.cli][ERROR] - job failed, the sweep goes on: DataError: no rows\nTraceback\n  ...\n")
    assert last_error(log) == "DataError: no rows"
    log.write_text("Killed\n\n")
    assert last_error(log) == "Killed"


def test_a_folder_keeps_the_overrides_its_cells_ran_with(tmp_path: Path) -> None:
    plan = Plan(models=["sasrec"], datasets=["synthetic"], seeds=[0], out=tmp_path, overrides=["trainer=debug"])
    check_record(plan)
    check_record(plan)  # the same overrides: adding or resuming cells is fine
    plan.models, plan.scoped = ["sasrec", "bsarec"], {"bsarec": ["optim.lr=5e-4"]}
    check_record(plan)  # a model new to the folder brings its own recipe
    plan.scoped = {"bsarec": ["optim.lr=1e-3"]}
    with pytest.raises(LeaderboardError, match=r"synthetic/bsarec cells run with the overrides \['trainer=debug', 'o"):
        check_record(plan)
    plan.scoped, plan.overrides = {"bsarec": ["optim.lr=5e-4"]}, ["trainer=cpu"]
    with pytest.raises(LeaderboardError, match=r"synthetic/sasrec cells run with the overrides \['trainer=debug'\]"):
        check_record(plan)


def test_an_ensemble_row_runs_after_its_members_on_their_cells_of_the_same_seed(tmp_path: Path) -> None:
    scoped = ["sasrec+ease:model.weights=null", "synthetic/sasrec+ease:metrics.diversity=false"]
    plan, _ = parse_args(["models=[sasrec,ease]", "datasets=[synthetic]", "seeds=[0,1]", f"out={tmp_path}",
                          "ensembles=[sasrec+ease]", "controls=[shuffled]", "trainer=debug", *scoped])  # fmt: skip
    assert plan.ensembles == [("sasrec", "ease")] and plan.row_names() == ["sasrec", "ease", "sasrec+ease"]
    assert [r.label for r in plan.rows()][-1] == "sasrec+ease"  # after every model row: its members run first
    group = pending_groups(plan)[-1]
    assert (group.row, group.seeds) == (Row.ensemble(("sasrec", "ease")), (0, 1))
    runs = f"'{tmp_path}/runs/synthetic"
    assert command(group, plan)[5:] == [
        "data=synthetic", "experiment=ensemble", "model.normalize=zscore", "model.weights=val",
        f"model.members=[{runs}/sasrec/seed${{seed}}',{runs}/ease/seed${{seed}}']", "seed=0,1", "trainer=debug",
        "model.weights=null", "metrics.diversity=false", "ckpt_path=last",
        f"hydra.sweep.dir={runs}/sasrec+ease'", "hydra.sweep.subdir=seed${seed}",
    ]  # fmt: skip
    check_record(plan)
    assert json.loads((tmp_path / "leaderboard.json").read_text())["synthetic/sasrec+ease"] == [
        "trainer=debug", "model.weights=null", "metrics.diversity=false"]  # fmt: skip


@pytest.mark.parametrize(
    ("ensemble", "message"),
    [
        ("sasrec+bsarec", "ensembles: sasrec+bsarec combines ['bsarec'], which models=['sasrec', 'ease'] does not"),
        ("sasrec", "ensembles: 'sasrec' needs two or more distinct models joined by +"),
        ("sasrec+sasrec", "needs two or more distinct models"),
        ("sasrec+", "needs two or more distinct models"),
    ],
)
def test_an_ensemble_of_models_the_plan_does_not_run_is_refused(ensemble: str, message: str) -> None:
    with pytest.raises(LeaderboardError, match=message.replace("[", r"\[").replace("+", r"\+")):
        parse_args(["models=[sasrec,ease]", "datasets=[synthetic]", f"ensembles=[{ensemble}]"])
