"""model.user_features end to end on tiny synthetic data with user features: train, evaluate the checkpoint (plain
and chunked ranking), recommend with explanations, warm start from a plain backbone, and the dataset-without error."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from runhelpers import QUIET, Run, compose_config, run_paths, tiny_train
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from divrec import names
from divrec.errors import UserError
from divrec.inspection.callbacks import ATTENTION, EXPLAIN
from divrec.pipeline import evaluate, train
from divrec.recommend import recommend

WITH_USERS = ["data.source.n_user_groups=3"]  # synthetic users get `group` and `activity`


def ranking(metrics: dict[str, float], stage: str) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith(f"{stage}/") and "@" in k}


@pytest.mark.parametrize("mode", ["add", "token"])
def test_user_features_train_evaluate_and_recommend(mode: str, tmp_path: Path) -> None:
    run = tiny_train(tmp_path / "run", tmp_path / "data", seed=0, extra=[*WITH_USERS, f"model.user_features={mode}"])
    assert run.metrics[names.MONITOR] > 0
    state = torch.load(run.run_dir / names.BACKBONE_FILE, weights_only=True)["state_dict"]
    tables = {k for k in state if k.startswith("user_side.")}
    assert tables == {"user_side.tables.0.weight", "user_side.tables.1.weight"}  # group, activity
    board = EventAccumulator(str(run.run_dir / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    tags = board.Reload().Tags()  # the inspection callbacks ran the model with the users' features
    assert any(t.startswith(ATTENTION) for t in tags["images"]) and any(t.startswith(EXPLAIN) for t in tags["tensors"])
    ckpt = run.run_dir / "checkpoints" / "best.ckpt"
    overrides = [f"ckpt_path={ckpt}", "trainer=cpu", "logger=none", *QUIET, "metrics.eval_chunk_size=7",
                 *run_paths(tmp_path / "eval", run.data_dir)]
    metrics = evaluate(compose_config("eval", overrides), overrides=overrides)  # chunked ranking, same scores
    for stage in (names.VAL, names.TEST):
        for key, value in ranking(run.metrics, stage).items():
            assert metrics[key] == pytest.approx(value, abs=1e-9), key
    out = tmp_path / "recs.csv"
    rec_cfg = compose_config("recommend", [f"ckpt_path={ckpt}", "k=3", "explain=true", f"output={out}",
                                           *run_paths(tmp_path / "rec", run.data_dir)])
    frame = pd.read_csv(recommend(rec_cfg), dtype={names.USER: str})
    assert frame[names.USER].nunique() == 60 and names.BECAUSE_OF in frame.columns


def test_user_features_on_a_dataset_without_them_is_one_clear_error(tmp_path: Path) -> None:
    cfg = compose_config("train", ["data=synthetic", "data.source.n_users=60", "data.source.n_items=40",
                                   "model.user_features=token", *QUIET, "trainer=cpu",
                                   *run_paths(tmp_path / "out", tmp_path / "data")])
    with pytest.raises(UserError, match=r"has no user features; set model\.user_features=null") as err:
        train(cfg)
    assert "\n" not in str(err.value)


def test_warm_start_from_a_backbone_without_user_features(
    tiny_run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init = tiny_run.run_dir / names.BACKBONE_FILE  # the shared plain run: same synthetic items, no user features
    extra = [*WITH_USERS, "model.user_features=add", "model.user_feature_names=[group]", f"init_from={init}",
             "trainer.max_epochs=1", "logger=none"]
    run = tiny_train(tmp_path / "run", tiny_run.data_dir, seed=0, extra=extra)
    assert (run.metrics[names.INIT_MATCHED], run.metrics[names.INIT_FRESH], run.metrics[names.INIT_UNUSED]) == (
        40, 0, 0
    )
    assert "side features kept fresh: user_side" in capsys.readouterr().out
    state = torch.load(run.run_dir / names.BACKBONE_FILE, weights_only=True)["state_dict"]
    assert [k for k in state if k.startswith("user_side.")] == ["user_side.tables.0.weight"]  # only `group`
