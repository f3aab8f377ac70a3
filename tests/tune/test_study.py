"""``divrec tune`` end to end on tiny synthetic data (about 1 s per trial): trial 0 is the config as given and is
never pruned, a pruner that prunes stops trials after their first validation, a rerun adds trials to the same
study, failed and interrupted trials are recorded and the study goes on, the budget ends the study, and best.yaml
composes as ``experiment=tuned`` into the best trial's configuration and reproduces its validation value."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from runhelpers import run_divrec

from divrec import names, pipeline
from divrec.configs import config_dir
from divrec.tune import study as study_module
from divrec.tune.report import BEST_YAML, EXPERIMENT, PROGRESS_PNG, TRIALS_CSV, TRIALS_MD
from divrec.tune.study import LOCK_FILE, STUDY_FILE, STUDY_NAME, TuneError

from .helpers import TRAIN, run_tune, tune_config

MONITOR = "val/ndcg@10"


def _study(out: Path) -> Any:
    return optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / STUDY_FILE}")


def _always_prune(cfg: Any) -> optuna.pruners.BasePruner:
    return optuna.pruners.ThresholdPruner(lower=2.0)  # every NDCG is below 2: prune at the first report


def _failing_trial(number: int, real: Any) -> Any:
    def train(cfg: Any, callbacks: Any = ()) -> dict[str, float]:
        if Path(cfg.paths.output_dir).name == str(number):
            raise RuntimeError("boom")
        return real(cfg, callbacks=callbacks)

    return train


def _compose_tuned(out: Path, *extra: str) -> Any:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=[f"hydra.searchpath=[file://{out}]", "experiment=tuned", *extra])


def test_trials_prune_resume_fail_and_best_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, data = tmp_path / "study", tmp_path / "data"
    monkeypatch.setattr(study_module, "make_pruner", _always_prune)
    first = run_tune(out, data, "tune.n_trials=3")
    assert (first["trials"], first["completed"], first["pruned"], first["failed"]) == (3, 1, 2, 0)
    trials = _study(out).trials
    assert trials[0].user_attrs["default"] and trials[0].state.name == "COMPLETE"  # the default is never pruned
    assert [t.state.name for t in trials[1:]] == ["PRUNED", "PRUNED"]
    assert all(t.user_attrs["stopped_by"] == "pruned" and t.user_attrs[names.EPOCHS] == 1 for t in trials[1:])
    assert trials[0].params == {"optim.lr": 2e-3, "model.dropout": 0.2, "model.n_layers": 1,
                                "model.hidden_size": 16, "data.batch_size": 32}  # fmt: skip  # = the command line
    assert '"TrialPruned: pruned after epoch 1' in (out / "trials" / "1" / names.STATUS_FILE).read_text()
    assert first["best_trial"] == 0 and first["default"] == first["best"]

    monkeypatch.setattr(study_module, "make_pruner", lambda cfg: optuna.pruners.NopPruner())
    monkeypatch.setattr(pipeline, "train", _failing_trial(3, pipeline.train))
    second = run_tune(out, data, "tune.n_trials=2", "tune.pruner=none")
    assert (second["trials"], second["completed"], second["failed"]) == (2, 1, 1)  # trials 3 (failed) and 4
    trials = _study(out).trials
    assert len(trials) == 5 and sum(bool(t.user_attrs.get("default")) for t in trials) == 1  # trial 0 not rerun
    assert [t.state.name for t in trials[3:]] == ["FAIL", "COMPLETE"]
    assert trials[4].params != trials[1].params  # the sampler seed moved on: no replayed draws
    assert trials[4].user_attrs["start_min"] >= trials[2].user_attrs["end_min"]  # minutes add up over reruns

    rows = (out / TRIALS_CSV).read_text().splitlines()
    assert len(rows) == 6 and rows[0].startswith(f"trial,state,default,{MONITOR},best_seen")
    assert "test/" not in (out / TRIALS_CSV).read_text()  # test metrics never reach the selection table
    assert (out / TRIALS_MD).is_file() and (out / PROGRESS_PNG).read_bytes()[:4] == b"\x89PNG"
    assert (out / BEST_YAML).read_text() == (out / EXPERIMENT).read_text()

    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: (t.value, -t.number))
    assert second["best_trial"] == best.number and second["best"] >= second["default"]
    run_dir = tmp_path / "reproduced"
    tuned = _compose_tuned(out, f"paths.output_dir={run_dir}", f"paths.data_dir={data}")
    trial_cfg = yaml.safe_load((out / "trials" / str(best.number) / names.CONFIG_FILE).read_text())
    for node in ("model", "optim", "task"):
        assert OmegaConf.to_container(tuned[node], resolve=True) == trial_cfg[node], node
    assert tuned.data.source == trial_cfg["data"]["source"] and tuned.data.batch_size == trial_cfg["data"]["batch_size"]
    assert tuned.trainer.max_epochs == best.user_attrs[names.EPOCHS] and tuned.trainer.accelerator == "cpu"
    assert pipeline.train(tuned)[MONITOR] == pytest.approx(best.value, rel=1e-5)


def test_budget_stops_the_study(tmp_path: Path) -> None:
    endless = ["trainer.max_epochs=100000", "callbacks.early_stopping.patience=100000"]
    summary = run_tune(tmp_path / "study", tmp_path / "data", "tune.budget_min=0.05", *endless)
    assert summary["stopped_by"] == "budget" and summary["trials"] == 1
    trial = _study(tmp_path / "study").trials[0]
    assert trial.state.name == "COMPLETE" and trial.user_attrs["stopped_by"] == "budget"
    assert 1 < trial.user_attrs[names.EPOCHS] < 100000  # trained until trainer.max_time, then was evaluated
    assert (tmp_path / "study" / BEST_YAML).is_file()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_interrupted_trials_are_failed_and_the_default_runs_again(tmp_path: Path) -> None:
    out = tmp_path / "study"
    run = study_module.prepare(*tune_config(out, tmp_path / "data"))
    out.mkdir()
    killed = optuna.create_study(storage=f"sqlite:///{out / STUDY_FILE}", study_name=STUDY_NAME,
                                 direction="maximize")  # fmt: skip
    killed.set_user_attr(study_module.RECORD_ATTR, {"overrides": list(run.overrides), "space": "transformer",
                                                    "monitor": MONITOR})  # fmt: skip
    killed.enqueue_trial(dict(run.space.defaults))
    killed.ask()  # the default trial, left RUNNING by a process that died
    summary = run_tune(out, tmp_path / "data", "tune.n_trials=1")
    trials = _study(out).trials
    assert trials[0].state.name == "FAIL" and trials[0].user_attrs["stopped_by"] == "interrupted"
    assert trials[1].state.name == "COMPLETE" and trials[1].user_attrs["default"] and summary["best_trial"] == 1
    assert "completed_rung_0" in trials[1].system_attrs  # ASHA (the default pruner) ranks later trials against it


def test_a_foreign_or_busy_study_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "study"
    out.mkdir()
    other = optuna.create_study(storage=f"sqlite:///{out / STUDY_FILE}", study_name=STUDY_NAME)
    other.set_user_attr(study_module.RECORD_ATTR, {"overrides": ["data=beauty"], "space": "transformer",
                                                   "monitor": MONITOR})  # fmt: skip
    with pytest.raises(TuneError, match=r"holds a study of .*data=beauty.*pass the same overrides to resume it"):
        run_tune(out, tmp_path / "data")
    with open(out / LOCK_FILE, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(TuneError, match="another divrec tune is running on this study"):
            run_tune(out, tmp_path / "data", "model.dropout=0.3")
    assert TRAIN[0] == "data=synthetic"


def test_pruners_from_the_config() -> None:
    asha, _ = tune_config(Path("x"), Path("d"), "tune.asha.min_resource=3", "tune.asha.reduction_factor=4")
    pruner = study_module.make_pruner(asha)
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
    assert (pruner._min_resource, pruner._reduction_factor) == (3, 4)
    median = study_module.make_pruner(tune_config(Path("x"), Path("d"), "tune.pruner=median")[0])
    assert isinstance(median, optuna.pruners.MedianPruner) and median._n_warmup_steps == 2
    none = study_module.make_pruner(tune_config(Path("x"), Path("d"), "tune.pruner=none")[0])
    assert isinstance(none, optuna.pruners.NopPruner)


def test_console_script_tunes_and_prints_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["tune", *TRAIN, "tune.n_trials=2", "tune.confirm.top_k=0", f"tune.out={out}",
            f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    result = run_divrec(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = [line for line in result.stdout.splitlines() if line.startswith("[tune] ")]
    assert len(summary) == 1 and "this run: 2 trials" in summary[0] and str(out / BEST_YAML) in summary[0]
    assert (out / EXPERIMENT).is_file() and len(_study(out).trials) == 2
    assert yaml.safe_load((tmp_path / "run" / names.STATUS_FILE).read_text())["status"] == names.COMPLETED
