"""``data.split.val_items=3``: a tiny run validates on several rows per user and every consumer copes.

Validation metrics are means over rows (re-scored here row by row, user features included), test stays one row per
user (per_user.parquet), ``known_sequences`` is still each user's whole sequence, and the attention images pick
distinct users.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from runhelpers import Run, compose_config, run_paths, tiny_train

from divrec import names
from divrec.checkpointing import read_checkpoint
from divrec.data.types import EvalSplit
from divrec.inspection.callbacks import spread_user_rows
from divrec.metrics.ranking import mask_scores, target_ranks
from divrec.pipeline import build

VAL_ITEMS = 3
# user features read each row's user index: with several rows per user they must still follow the row
USER_FEATURES = ["data.source.n_user_groups=3", "model.user_features=token"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    base = tmp_path_factory.mktemp("val-items")
    return tiny_train(base / "run", base / "data", seed=0, extra=[f"data.split.val_items={VAL_ITEMS}", *USER_FEATURES])


def test_validation_has_up_to_three_rows_per_user_and_test_one(run: Run, tmp_path: Path) -> None:
    cfg = compose_config("train", [*run.overrides[:-2], *run_paths(tmp_path / "x", run.data_dir)])
    data = instantiate(cfg.data).load()
    offsets, items = data.known_sequences()
    lengths = np.diff(offsets)
    evaluated = lengths >= 3
    assert evaluated.sum() > 10 and (lengths[evaluated] - 2 < VAL_ITEMS).any()  # short users are in the mix
    n_val = np.bincount(data.val.users, minlength=data.n_users)
    np.testing.assert_array_equal(n_val, np.where(evaluated, np.minimum(VAL_ITEMS, lengths - 2), 0))
    assert data.test.users.tolist() == np.flatnonzero(evaluated).tolist()
    for row, user in enumerate(data.test.users.tolist()):  # the known sequence is the whole sequence
        known = items[offsets[user] : offsets[user + 1]]
        val_targets = data.val.targets[data.val.users == user]
        whole = np.concatenate([data.train_sequence(user), val_targets, [data.test.targets[row]]])
        np.testing.assert_array_equal(known, whole)
        np.testing.assert_array_equal(known, np.append(data.test.history(row), data.test.targets[row]))
    per_user = pd.read_parquet(run.run_dir / names.PER_USER_FILE)  # test only: one row per user
    assert sorted(per_user[names.USER_INDEX].tolist()) == data.test.users.tolist()


def rescored(run: Run, stage: str) -> torch.Tensor:
    """(rows,) 1-based target ranks of every ``stage`` row under the best checkpoint, scored row by row."""
    datamodule, module = build(compose_config("train", run.overrides))
    module.load_state_dict(read_checkpoint(run.run_dir / "checkpoints" / "best.ckpt")["state_dict"])
    module.eval()
    datamodule.setup()
    tensors = datamodule.tensors[stage]
    scores = module.scores(tensors[names.HISTORY], tensors[names.USER_INDEX])
    return target_ranks(mask_scores(scores, tensors[names.SEEN], tensors[names.TARGET]), tensors[names.TARGET])


@pytest.mark.parametrize("stage", [names.VAL, names.TEST])
def test_metrics_are_means_over_rows(run: Run, stage: str) -> None:
    ranks = rescored(run, stage).double()
    assert len(ranks) > (60 if stage == names.VAL else 0)  # several validation rows per user
    hit = ranks <= 10
    expected = {"hr": hit.double().mean(), "ndcg": torch.where(hit, 1 / torch.log2(ranks + 1), 0.0).mean()}
    for metric, value in expected.items():
        assert run.metrics[names.metric_key(stage, metric, 10)] == pytest.approx(float(value), abs=1e-6)


def test_attention_users_are_distinct_and_each_ones_latest_row() -> None:
    users = np.array([0, 0, 0, 1, 2, 2, 3, 3, 3])
    split = EvalSplit(users, np.arange(10), np.arange(1, 10), np.arange(1, 10))
    assert spread_user_rows(split, 5).tolist() == [2, 3, 5, 8]  # 4 users, never one twice
    assert spread_user_rows(split, 2).tolist() == [2, 8]
    assert spread_user_rows(split, 0).tolist() == []
    one_row_each = EvalSplit(np.arange(7), np.arange(8), np.arange(1, 8), np.arange(1, 8))
    expected = np.linspace(0, 6, 3).round().astype(np.int64)  # as before val_items existed
    assert spread_user_rows(one_row_each, 3).tolist() == expected.tolist()
