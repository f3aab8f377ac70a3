"""Bad ``tune.*`` values and non-validation objectives: one ``error:`` line naming the key and a fix, exit 2,
before any data is read or any study folder is made."""

from __future__ import annotations

from pathlib import Path

import pytest
from runhelpers import compose_config, error_line, run_divrec

from divrec.tune.checks import check_tune
from divrec.tune.space import SpaceError
from divrec.tune.study import TuneError, prepare, study_dir, study_overrides
from divrec.validation import ConfigError


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tune.budget_min=0", "tune.budget_min=0: out of range; allowed: a number > 0"),
        ("tune.budget_min=abc", "tune.budget_min=abc: not a number"),
        ("tune.pruner=hyperband", "tune.pruner=hyperband: not one of the allowed names; allowed: one of asha|median"),
        ("tune.space=nope", "tune.space=nope: no such search space; allowed: one of recurrent|transformer"),
        ("tune.n_trials=0", "tune.n_trials=0: out of range; allowed: an integer >= 1 or null"),
        ("tune.asha.reduction_factor=1", "tune.asha.reduction_factor=1: out of range"),
        ("tune.median.warmup_epochs=-1", "tune.median.warmup_epochs=-1: out of range"),
        ("monitor=test/ndcg@10", "monitor=test/ndcg@10: a test metric (the tuner never selects on test)"),
        ("callbacks.model_checkpoint.monitor=test/hr@10", "callbacks.model_checkpoint.monitor=test/hr@10: a test"),
        ("monitor=ndcg@10", "monitor=ndcg@10: not a validation metric; allowed: a validation metric key val/"),
        ("tune.confirm.top_k=-1", "tune.confirm.top_k=-1: out of range"),
        ("tune.confirm.seeds=[43,43]", "tune.confirm.seeds=[43,43]: a seed is repeated"),
        ("tune.confirm.seeds=7", "tune.confirm.seeds=7: not a list"),
        ("tune.confirm.reserve=1", "tune.confirm.reserve=1: out of range"),
        ("tune.confirm.margin_se=-1", "tune.confirm.margin_se=-1: out of range"),
        ("tune.confirm.seeds=[42,43]", "tune.confirm.seeds=[42,43]: holds the trials' own seed=42"),
    ],
)  # fmt: skip
def test_bad_tune_values_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_tune(compose_config("tune", [override]))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_shipped_tune_config_passes() -> None:
    check_tune(compose_config("tune", ["model=hstu", "tune.pruner=median", "tune.space=recurrent"]))


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["model=pop"], SpaceError, "params.model.dropout: this config has no model.dropout"),  # the space vs model
        (["data.batch_size=0"], ConfigError, "data.batch_size=0: out of range"),  # train's own rules, before data
        (["trainer=ddp_cpu"], TuneError, "trainer.devices=2, trainer.num_nodes=1: divrec tune trains its trials in "
                                         "one process"),
    ],
)
def test_train_config_and_space_are_checked_before_the_study(
    tmp_path: Path, overrides: list[str], error: type[Exception], message: str
) -> None:
    out = tmp_path / "study"
    with pytest.raises(error, match=None) as caught:
        prepare(compose_config("tune", [*overrides, f"tune.out={out}"]), overrides)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not out.exists()


def test_console_script_refuses_with_one_line_and_status_2(tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["tune", "tune.budget_min=-5", f"tune.out={out}", f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_divrec(args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert error_line(result.stderr).startswith("error: tune.budget_min=-5: out of range; allowed: a number > 0")
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [error_line(result.stderr)]
    assert not out.exists()  # refused before the study folder was made


def test_the_default_study_folder_is_named_by_the_train_overrides() -> None:
    given = ["data=beauty", "model=sasrec", "tune.budget_min=20", "hydra.run.dir=x", "paths.data_dir=/d"]
    cfg = compose_config("tune", given)
    assert study_overrides(given) == ("data=beauty", "model=sasrec")  # the budget, hydra and paths change no trial
    folder = study_dir(cfg, study_overrides(given), "transformer")
    assert folder == (Path("outputs") / "tune" / "studies" / "data=beauty,model=sasrec,space=transformer").absolute()
    assert study_dir(compose_config("tune", ["tune.out=/tmp/s"]), (), "transformer") == Path("/tmp/s")
