"""Size-class recipes (``divrec.recipes``): the class rule, precedence (command line and experiment= win), recipe=none
leaves the config alone, the run's config.yaml holds the effective values, and a bad recipe= is refused early."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf
from runhelpers import CONSOLE_SCRIPT, TINY_DATA, TINY_TRAIN, compose_config, error_line, run_divrec, run_paths

from divrec import names, recipes
from divrec.pipeline import train
from divrec.recipes import RECORD, apply_recipe, class_values, load_stats, model_name, size_class, user_set
from divrec.validation import ConfigError, validate

THRESHOLD = recipes.CLASSES[0].max_median


def composed(overrides: list[str], tmp_path: Path, name: str = "train", hydra_node: bool = False) -> DictConfig:
    return compose_config(name, [*overrides, *run_paths(tmp_path / "run", tmp_path / "data")], hydra_node)


def test_class_rule_at_both_sides_of_the_threshold() -> None:
    assert size_class(THRESHOLD) == "short"
    assert size_class(THRESHOLD + 0.5) == "long"
    assert size_class(0.0) == "short"


@pytest.mark.parametrize(("mean_length", "expected"), [(6.0, "short"), (80.0, "long")])
def test_class_of_synthetic_data_from_its_training_lengths(tmp_path: Path, mean_length: float, expected: str) -> None:
    sizes = ["data=synthetic", "data.source.n_users=60", "data.source.n_items=500"]  # lengths need distinct items
    cfg = composed([*sizes, f"data.source.mean_length={mean_length}"], tmp_path)
    median = load_stats(cfg)
    assert (median <= THRESHOLD) == (expected == "short"), median
    assert size_class(median) == expected


def test_model_name_from_the_target() -> None:
    for model in ("sasrec", "bert4rec", "hstu", "lrurec", "gru4rec", "fmlp", "bsarec", "ease"):
        assert model_name(compose_config("train", [f"model={model}"]), {}) == model
    cfg = compose_config("train")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(cfg.model, "_target_", "my.Model")
        assert model_name(cfg, {"model": "mine"}) == "mine"
        assert model_name(cfg, {}) is None


def test_long_is_no_change_for_sasrec_and_every_model_has_both_classes() -> None:
    assert class_values("long", "sasrec") == {} and class_values("long", "bert4rec") == {}
    tables = [OmegaConf.load(recipes.config_dir() / recipes.RECIPES_DIR / f"{c.name}.yaml") for c in recipes.CLASSES]
    assert all(set(table) == set(tables[0]) for table in tables)  # every model has a recipe in every class


def test_none_leaves_the_config_unchanged(tmp_path: Path) -> None:
    cfg = composed(["recipe=none"], tmp_path)
    assert apply_recipe(cfg, ["recipe=none"]) is cfg
    assert RECORD not in cfg


def test_command_line_keys_win(tmp_path: Path) -> None:
    overrides = ["recipe=short", "data.batch_size=32", "model.dropout=0.1"]
    cfg = apply_recipe(composed(overrides, tmp_path), overrides)  # a forced class reads no data
    assert cfg.data.batch_size == 32 and cfg.model.dropout == 0.1
    assert cfg.model.attn_dropout == 0.5 and cfg.optim.lr == 1e-3 and cfg.trainer.max_epochs == 30
    record = cfg[RECORD]
    assert record["class"] == "short" and record.median_train_length is None and record.model == "sasrec"
    assert sorted(record.kept_from_command_line) == ["data.batch_size", "model.dropout"]
    assert "data.batch_size" not in record["values"]


def test_a_group_choice_keeps_the_swapped_group_and_nothing_else() -> None:
    swapped = {"optim"}
    assert user_set("optim._target_", {"optim"}, swapped) and user_set("optim.lr", {"optim"}, swapped)
    assert not user_set("data.batch_size", {"data"}, swapped)  # data=beauty selects a dataset, not a batch size
    assert user_set("model.dropout", {"model.dropout"}, set()) and not user_set("model.dropout", {"model"}, set())


def test_hstu_short_swaps_the_optimizer(tmp_path: Path) -> None:
    overrides = ["model=hstu", "recipe=short"]
    cfg = apply_recipe(composed(overrides, tmp_path), overrides)
    assert cfg.optim._target_ == "torch.optim.AdamW" and cfg.optim.weight_decay == 0.0 and cfg.data.batch_size == 128
    kept = ["model=hstu", "optim=adam", "recipe=short"]
    cfg = apply_recipe(composed(kept, tmp_path), kept)
    assert cfg.optim._target_ == "torch.optim.Adam" and cfg.optim.lr == 2e-3 and cfg.data.batch_size == 128


def test_an_experiment_disables_the_recipe(tmp_path: Path) -> None:
    overrides = ["experiment=sasrec_beauty", "recipe=auto", "model.dropout=0.3"]
    cfg = composed(overrides, tmp_path)
    assert apply_recipe(cfg, overrides) is cfg  # before any data is read (Beauty is not in the test's data folder)
    assert not (tmp_path / "data").exists()
    hydra_cfg = composed(overrides, tmp_path, hydra_node=True)  # Hydra's own record of the choice
    assert apply_recipe(hydra_cfg) is hydra_cfg


def test_the_tuner_uses_its_config_as_given(tmp_path: Path) -> None:
    cfg = composed(["recipe=short"], tmp_path, name="tune", hydra_node=True)
    assert apply_recipe(cfg) is cfg


def test_auto_on_tiny_synthetic_data_is_short(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    overrides = [*TINY_DATA, "recipe=auto", "data.batch_size=32"]
    with caplog.at_level(logging.INFO, logger="divrec.recipes"):
        cfg = apply_recipe(composed(overrides, tmp_path), overrides)
    assert cfg[RECORD]["class"] == "short" and cfg[RECORD].median_train_length <= THRESHOLD
    assert cfg.data.batch_size == 32 and cfg.model.dropout == 0.5
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("recipe: short"))
    assert "(median train length" in line and "model.dropout=0.5" in line


def test_the_run_config_holds_the_effective_values(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = [*TINY_TRAIN, "trainer=debug", "recipe=short", *run_paths(run_dir, tmp_path / "data")]
    train(compose_config("train", overrides), overrides=overrides)
    written = OmegaConf.load(run_dir / names.CONFIG_FILE)
    assert written.model.dropout == 0.5 and written.model.attn_dropout == 0.5 and written.optim.lr == 1e-3
    assert written.data.batch_size == 32 and written.trainer.max_epochs == 2  # the command line's
    assert written[RECORD]["class"] == "short" and written[RECORD]["values"]["model.dropout"] == 0.5


def test_bad_recipe_is_refused_by_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"recipe=bogus: .*auto\|none\|short\|long"):
        validate(composed(["recipe=bogus"], tmp_path))


@pytest.mark.skipif(not CONSOLE_SCRIPT.is_file(), reason=f"{CONSOLE_SCRIPT} not installed")
def test_bad_recipe_exits_2_before_data_is_loaded(tmp_path: Path) -> None:
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    result = run_divrec(["train", "data=synthetic", "recipe=bogus", f"hydra.run.dir={run_dir}",
                         f"paths.data_dir={data_dir}"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert error_line(result.stderr).startswith("error: recipe=bogus: not one of the allowed names; allowed: one of "
                                                "auto|none|short|long")
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [error_line(result.stderr)]
    assert not data_dir.exists()
