"""``divrec.pipeline``: end-to-end training of every saved experiment, run outputs, reproducibility, evaluation of a
checkpoint, and bad input failing early with one clear message."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf
from runhelpers import (
    QUIET,
    TINY_DATA,
    TINY_MODEL,
    TINY_TRAIN,
    Run,
    compose_config,
    leftovers,
    read_metrics,
    run_paths,
    tiny_train,
    without_hydra_node,
)
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from divrec import names
from divrec.cli import config_dir
from divrec.data.errors import DATA_DIR_KEY, MIRROR_KEY, DataError
from divrec.errors import UserError
from divrec.models import BackboneConfig, ModelConfigError
from divrec.pipeline import evaluate, train

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml") if not p.name.startswith("_"))
# Recipes that combine finished runs cannot run alone; their own end-to-end tests train the runs first.
NEEDS_RUNS = {"ensemble": "needs finished member runs: trained, combined, evaluated and exported in "
                          "tests/models/test_ensemble.py"}
NDCG10 = {stage: names.metric_key(stage, names.NDCG, 10) for stage in (names.VAL, names.TEST)}
NOT_REPRODUCIBLE = {names.TRAIN_TIME}  # wall-clock time is the only metrics.json entry that may differ


def ranking_metrics(metrics: dict[str, float], stage: str) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith(f"{stage}/")}


def tiny_cfg(tmp_path: Path, *extra: str) -> DictConfig:
    """The tiny 2-epoch CPU setup writing into ``tmp_path/run`` and ``tmp_path/data``, plus ``extra``."""
    return compose_config("train", [*TINY_TRAIN, *run_paths(tmp_path / "run", tmp_path / "data"), *extra])


def assert_nothing_trained(tmp_path: Path) -> None:
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "metrics.json").exists()


# --- every saved recipe runs end to end on its own dataset (one batch each) ------------------------------------------


def test_experiments_are_found() -> None:
    assert EXPERIMENTS, "conf/experiment/ has no recipes"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_end_to_end(
    experiment: str, tmp_path: Path, experiment_data_dir: Path, dataset_mirror: Path
) -> None:
    cfg = compose_config(
        "train",
        [
            f"experiment={experiment}",
            "trainer=debug",  # fast_dev_run: one batch of train, val and test...
            "data.batch_size=32",  # ...kept small: CPU-light, and full-softmax CE over Beauty's 12k items
            "data.eval_batch_size=128",
            *QUIET,
            f"paths.data_mirror={dataset_mirror}",
            *run_paths(tmp_path / "run", experiment_data_dir),
        ],
        hydra_node=True,
    )
    assert cfg.hydra.runtime.choices.experiment == experiment
    assert cfg.trainer.fast_dev_run is True
    if experiment in NEEDS_RUNS:
        pytest.skip(NEEDS_RUNS[experiment])
    metrics = train(without_hydra_node(cfg))
    for key in NDCG10.values():
        assert 0.0 <= metrics[key] <= 1.0
    assert all(math.isfinite(v) for v in metrics.values())
    assert read_metrics(tmp_path / "run") == metrics
    assert OmegaConf.load(tmp_path / "run" / "config.yaml").tags == cfg.tags


# --- one complete tiny run: what it writes ----------------------------------------------------------------------------


def test_run_folder_has_every_output(tiny_run: Run) -> None:
    run = tiny_run.run_dir
    for rel in ("metrics.json", "config.yaml", "checkpoints/best.ckpt", "checkpoints/last.ckpt", "timeline.jsonl"):
        assert (run / rel).is_file(), rel
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_metrics_json_is_what_train_returns(tiny_run: Run) -> None:
    on_disk = read_metrics(tiny_run.run_dir)
    assert on_disk == tiny_run.metrics
    for key in (*NDCG10.values(), names.TRAIN_TIME, names.EPOCHS):
        assert key in on_disk, key
    assert on_disk[names.EPOCHS] == 2
    assert on_disk[names.TRAIN_TIME] > 0
    ks = compose_config("train", tiny_run.overrides).metrics.ks
    for stage in (names.VAL, names.TEST):  # every metric at every cut-off, each a rate
        for name in (names.HR, names.NDCG, names.MRR, names.MAP, names.PRECISION, names.RECALL):
            for k in ks:
                assert 0.0 <= on_disk[names.metric_key(stage, name, k)] <= 1.0


def test_config_yaml_is_fully_resolved(tiny_run: Run) -> None:
    text = (tiny_run.run_dir / "config.yaml").read_text()
    assert "${" not in text
    saved = yaml.safe_load(text)
    composed = compose_config("train", tiny_run.overrides)
    assert saved["model"]["hidden_size"] == composed.model.hidden_size
    assert saved["model"]["max_len"] == saved["data"]["max_len"] == composed.data.max_len
    assert saved["paths"]["output_dir"] == str(tiny_run.run_dir)


def test_timeline_has_one_row_per_epoch(tiny_run: Run) -> None:
    rows = [json.loads(line) for line in (tiny_run.run_dir / "timeline.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(NDCG10[names.VAL] in r for r in rows)
    # every epoch sees each training window once; positions are the non-padding inputs among them
    assert rows[0]["train_sequences"] == rows[1]["train_sequences"] > 0
    max_len = yaml.safe_load((tiny_run.run_dir / "config.yaml").read_text())["data"]["max_len"]
    assert all(r["train_sequences"] <= r["train_positions"] <= r["train_sequences"] * max_len for r in rows)
    assert all(r["positions_per_s"] > 0 for r in rows)


def test_tensorboard_has_train_loss_val_curves_and_hparams(tiny_run: Run) -> None:
    events = EventAccumulator(str(tiny_run.run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    loss = names.metric_key(names.TRAIN, names.LOSS)
    assert loss in scalars
    losses = events.Scalars(loss)
    assert len({e.step for e in losses}) > 2  # per step, not per epoch
    assert all(math.isfinite(e.value) for e in losses)
    val_steps = {e.step for e in events.Scalars(NDCG10[names.VAL])}
    assert len(val_steps) >= tiny_run.metrics[names.EPOCHS]  # one point per validated epoch
    assert NDCG10[names.TEST] in scalars
    # hparams plugin: the run's hyperparameters, and the final metrics registered as its metrics
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    composed = compose_config("train", tiny_run.overrides)
    assert hparams["model.hidden_size"].number_value == composed.model.hidden_size
    assert hparams["seed"].number_value == composed.seed
    assert set(NDCG10.values()) <= scalars  # the hparams tab reads the final metrics from the scalars


LOGGERS = sorted(p.stem for p in (config_dir() / "logger").glob("*.yaml") if p.stem != "tensorboard")


@pytest.mark.parametrize("logger", LOGGERS)
def test_full_run_with_every_other_logger(logger: str, tmp_path: Path) -> None:
    """The default callbacks (checkpoints, early stopping, LR monitor, timeline) work with any logger, even none."""
    metrics = train(tiny_cfg(tmp_path, f"logger={logger}", "trainer.max_epochs=1"))
    assert read_metrics(tmp_path / "run") == metrics
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
    assert not (tmp_path / "run" / "tensorboard").exists()
    if logger == "csv":
        assert (tmp_path / "run" / "csv" / "metrics.csv").is_file()


# --- reproducibility --------------------------------------------------------------------------------------------------


def test_same_seed_same_metrics_other_seed_other_metrics(tiny_run: Run, tmp_path: Path) -> None:
    again = tiny_train(tmp_path / "again", tmp_path / "data-again", seed=0)
    other = tiny_train(tmp_path / "other", tmp_path / "data-other", seed=1)
    first = read_metrics(tiny_run.run_dir)
    second = read_metrics(again.run_dir)
    assert set(first) == set(second)
    assert {k: v for k, v in first.items() if k not in NOT_REPRODUCIBLE} == {
        k: v for k, v in second.items() if k not in NOT_REPRODUCIBLE
    }
    assert ranking_metrics(read_metrics(other.run_dir), names.TEST) != ranking_metrics(first, names.TEST)


# --- evaluating a checkpoint ------------------------------------------------------------------------------------------


def test_evaluate_reproduces_the_runs_test_metrics_with_the_checkpoints_own_config(
    tiny_run: Run, tmp_path: Path
) -> None:
    overrides = [
        f"ckpt_path={tiny_run.run_dir / 'checkpoints' / 'best.ckpt'}",
        "trainer=cpu",
        "logger=none",
        *QUIET,
        *run_paths(tmp_path / "eval", tmp_path / "data"),
    ]
    cfg = compose_config("eval", overrides)  # defaults: ml-100k and the full-size model
    trained = OmegaConf.load(tiny_run.run_dir / "config.yaml")
    assert cfg.model.hidden_size != trained.model.hidden_size
    assert cfg.data.source._target_ != trained.data.source._target_
    metrics = evaluate(cfg, overrides=overrides)
    for stage in (names.VAL, names.TEST):
        expected = ranking_metrics(tiny_run.metrics, stage)
        assert expected
        assert set(ranking_metrics(metrics, stage)) == set(expected)
        for key, value in expected.items():
            assert abs(metrics[key] - value) <= 1e-9, key
    used = OmegaConf.load(tmp_path / "eval" / "config.yaml")
    assert used.model.hidden_size == trained.model.hidden_size  # the checkpoint's model, not eval.yaml's default
    assert used.data.data_dir == str(tmp_path / "data")  # but this machine's data locations
    assert read_metrics(tmp_path / "eval") == metrics


def test_evaluate_key_override_changes_one_key_of_the_checkpoints_config(tiny_run: Run, tmp_path: Path) -> None:
    """``data.eval_batch_size=…`` / ``model.dropout=…`` adjust the checkpoint's data and model; they do not swap
    in eval.yaml's default dataset or model size."""
    key_overrides = ["data.eval_batch_size=1000", "model.dropout=0.0"]  # neither changes a single score
    overrides = [
        f"ckpt_path={tiny_run.run_dir / 'checkpoints' / 'best.ckpt'}",
        "trainer=cpu",
        "logger=none",
        *QUIET,
        *run_paths(tmp_path / "eval", tmp_path / "data"),
        *key_overrides,
    ]
    metrics = evaluate(compose_config("eval", overrides), overrides=overrides)
    used = OmegaConf.load(tmp_path / "eval" / "config.yaml")
    trained = OmegaConf.load(tiny_run.run_dir / "config.yaml")
    assert used.data.eval_batch_size == 1000 and used.model.dropout == 0.0
    assert used.data.source == trained.data.source and used.data.max_len == trained.data.max_len
    assert used.model.hidden_size == trained.model.hidden_size
    for key, value in ranking_metrics(tiny_run.metrics, names.TEST).items():
        assert abs(metrics[key] - value) <= 1e-9, key


def test_evaluate_group_override_replaces_the_checkpoints_group(tiny_run: Run, tmp_path: Path) -> None:
    trained = OmegaConf.load(tiny_run.run_dir / "config.yaml")
    overrides = [
        f"ckpt_path={tiny_run.run_dir / 'checkpoints' / 'best.ckpt'}",
        "trainer=cpu",
        "logger=none",
        *QUIET,
        *run_paths(tmp_path / "eval", tmp_path / "data"),
        *TINY_DATA,  # data=synthetic + the same sizes and seed: the same dataset, but the eval config's data group
        f"seed={trained.seed}",
    ]
    cfg = compose_config("eval", overrides)
    assert cfg.data.batch_size != trained.data.batch_size
    metrics = evaluate(cfg, overrides=overrides)
    assert OmegaConf.load(tmp_path / "eval" / "config.yaml").data.batch_size == cfg.data.batch_size
    for key, value in ranking_metrics(tiny_run.metrics, names.TEST).items():
        assert abs(metrics[key] - value) <= 1e-9, key


def test_evaluate_missing_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ckpt"
    cfg = compose_config("eval", [f"ckpt_path={missing}", *run_paths(tmp_path / "eval", tmp_path / "data")])
    with pytest.raises(UserError, match="checkpoint not found") as err:
        evaluate(cfg)
    assert str(missing) in str(err.value)
    assert not (tmp_path / "data").exists()


def test_evaluate_truncated_checkpoint_is_one_clear_error(tmp_path: Path, tiny_run: Run) -> None:
    whole = (tiny_run.run_dir / "checkpoints" / "best.ckpt").read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(whole[: len(whole) // 2])
    cfg = compose_config("eval", [f"ckpt_path={truncated}", *run_paths(tmp_path / "eval", tmp_path / "data")])
    with pytest.raises(UserError, match="cannot read checkpoint") as err:
        evaluate(cfg)
    assert str(truncated) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "data").exists()


# --- bad input: one clear error, raised early, nothing left behind ----------------------------------------------------


def test_unknown_model_key_fails_before_any_data_is_loaded(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError) as err:
        train(tiny_cfg(tmp_path, "+model.hiden_size=3"))
    message = str(err.value)
    assert "hiden_size" in message
    for key in (f.name for f in dataclasses.fields(BackboneConfig)):  # the valid keys are listed
        assert key in message, key
    assert "\n" not in message
    assert not (tmp_path / "data").exists()  # neither the data dir nor its cache was created
    assert_nothing_trained(tmp_path)


def test_impossible_model_shape_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match=r"model\.hidden_size=65 is not divisible by model\.n_heads=2"):
        train(tiny_cfg(tmp_path, "model.hidden_size=65", "model.n_heads=2"))
    assert not (tmp_path / "data").exists()
    assert_nothing_trained(tmp_path)


def test_missing_dataset_offline_names_every_place_and_the_download_option(tmp_path: Path) -> None:
    data_dir, mirror = tmp_path / "empty-data", tmp_path / "empty-mirror"
    data_dir.mkdir()
    mirror.mkdir()
    cfg = compose_config(
        "train",
        [
            *TINY_MODEL,
            *QUIET,
            "trainer=cpu",
            "data=ml-100k",
            "data.download=false",
            f"paths.data_mirror={mirror}",
            *run_paths(tmp_path / "run", data_dir),
        ],
    )
    with pytest.raises(DataError) as err:
        train(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert str(data_dir) in message and DATA_DIR_KEY in message
    assert str(mirror) in message and MIRROR_KEY in message
    assert "download=false" in message
    assert leftovers(data_dir) == [] and leftovers(mirror) == []  # no partial folder, no cache
    assert_nothing_trained(tmp_path)


def test_objective_that_does_not_fit_the_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Cloze needs a bidirectional .*model=bert4rec") as err:
        train(tiny_cfg(tmp_path, "task=cloze", "model=sasrec"))
    assert "\n" not in str(err.value)
    assert_nothing_trained(tmp_path)
