"""Protocol honesty behind the leaderboard: the shuffled control permutes training sequences only, metrics do not
depend on the evaluation batch size, and the saved per-user ranks reproduce the reported metrics in numpy."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from runhelpers import TINY_DATA, Run, compose_config, read_metrics, run_paths, tiny_train

from divrec import names
from divrec.data.datamodule import SeqDataModule, shuffled_training
from divrec.data.types import EvalSplit, ProcessedData
from divrec.errors import UserError
from divrec.validation import validate


def _rows(offsets: np.ndarray, items: np.ndarray) -> list[list[int]]:
    return [items[a:b].tolist() for a, b in itertools.pairwise(offsets)]


def _data() -> ProcessedData:
    """Three users with training sequences 1..6, 7..9 and [] (ratings = item / 10), one eval row each for two."""
    offsets = np.array([0, 6, 9, 9])
    items = np.arange(1, 10)
    split = EvalSplit(users=np.array([0, 1]), history_offsets=np.array([0, 6, 9]), history_items=items.copy(),
                      targets=np.array([10, 11]), target_ratings=None)  # fmt: skip
    return ProcessedData(
        n_users=3, n_items=11, train_offsets=offsets, train_items=items, val=split, test=split,
        item_raw_ids=np.array([""] + [str(i) for i in range(1, 12)]), user_raw_ids=np.array(["a", "b", "c"]),
        train_ratings=items.astype(np.float32) / 10,
    )  # fmt: skip


def test_shuffled_training_permutes_each_training_sequence_and_nothing_else() -> None:
    data = _data()
    shuffled = shuffled_training(data, seed=0)
    before, after = _rows(data.train_offsets, data.train_items), _rows(shuffled.train_offsets, shuffled.train_items)
    assert [sorted(row) for row in after] == before  # the same items per user: a permutation within each row
    assert after != before  # 6! orders for user 0: this seed moves something
    assert np.allclose(shuffled.train_ratings, shuffled.train_items / 10)  # ratings travel with their items
    assert shuffled.val is data.val and shuffled.test is data.test  # evaluation rows and histories untouched
    assert data.train_items.tolist() == list(range(1, 10))  # the input is not modified (the cache's arrays)
    assert shuffled_training(data, 0).train_items.tolist() == shuffled.train_items.tolist()  # seeded
    assert any(shuffled_training(data, s).train_items.tolist() != shuffled.train_items.tolist() for s in (1, 2, 3))


def _datamodule(tmp_path: Path, *extra: str) -> SeqDataModule:
    cfg = compose_config("train", [*TINY_DATA, *extra, *run_paths(tmp_path / "run", tmp_path / "data")])
    validate(cfg)
    datamodule: SeqDataModule = instantiate(cfg.data)
    datamodule.load()
    return datamodule


def test_shuffle_sequences_key_shuffles_training_windows_after_the_cache(tmp_path: Path) -> None:
    plain = _datamodule(tmp_path).load()
    shuffled = _datamodule(tmp_path, "data.shuffle_sequences=true").load()
    assert len(list((tmp_path / "data" / "cache").rglob("*.npz"))) == 1  # one cache entry: the key does not split it
    assert _datamodule(tmp_path).load().train_items.tolist() == plain.train_items.tolist()  # the cache is unshuffled
    rows = _rows(plain.train_offsets, plain.train_items)
    shuffled_rows = _rows(plain.train_offsets, shuffled.train_items)
    assert [sorted(r) for r in rows] == [sorted(r) for r in shuffled_rows] and rows != shuffled_rows
    for stage in ("val", "test"):  # evaluation keeps the true order
        a, b = getattr(plain, stage), getattr(shuffled, stage)
        assert np.array_equal(a.history_items, b.history_items) and np.array_equal(a.targets, b.targets)
    with pytest.raises(UserError, match=r"data\.shuffle_sequences"):
        _datamodule(tmp_path, "data.shuffle_sequences=maybe")


def test_metrics_do_not_depend_on_the_evaluation_batch_size(tmp_path: Path) -> None:
    one = tiny_train(tmp_path / "one", tmp_path / "data", seed=0, extra=["data.eval_batch_size=1", "logger=none"])
    many = tiny_train(tmp_path / "many", tmp_path / "data", seed=0, extra=["data.eval_batch_size=512", "logger=none"])
    measured = [k for k in one.metrics if k.startswith((f"{names.VAL}/", f"{names.TEST}/"))]
    assert len(measured) > 20
    assert {k: one.metrics[k] for k in measured} == {k: many.metrics[k] for k in measured}  # exactly equal
    a, b = (pd.read_parquet(r.run_dir / names.PER_USER_FILE).sort_values(names.USER_INDEX) for r in (one, many))
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_numpy_metrics_from_the_saved_ranks_equal_metrics_json(tiny_run: Run) -> None:
    frame = pd.read_parquet(tiny_run.run_dir / names.PER_USER_FILE)
    metrics = read_metrics(tiny_run.run_dir)
    ranks = frame[names.metric_key(names.TEST, names.RANK)].to_numpy()
    assert np.array_equal(ranks, np.round(ranks)) and ranks.min() >= 1 and ranks.max() <= 40  # 40 synthetic items
    for k in (5, 10, 20):
        hit = ranks <= k
        ndcg = np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
        key = names.metric_key(names.TEST, names.NDCG, k)
        assert ndcg == pytest.approx(frame[key].to_numpy(), abs=1e-12)  # user by user
        assert ndcg.mean() == pytest.approx(metrics[key], abs=1e-6)  # metrics.json went through a float32 log
        assert hit.mean() == pytest.approx(metrics[names.metric_key(names.TEST, names.HR, k)], abs=1e-6)
        assert np.where(hit, 1.0 / ranks, 0).mean() == pytest.approx(metrics[f"{names.TEST}/{names.MRR}@{k}"], abs=1e-6)
