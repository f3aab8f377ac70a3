"""Ratings travel with their interactions (preprocessing, splits, windows, batch trimming); user subsampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datahelpers import raw

from divrec import names
from divrec.data.datamodule import SeqDataModule, TensorBatches
from divrec.data.errors import DataError
from divrec.data.preprocess import Preprocessing
from divrec.data.splits import LeaveOneOut
from divrec.data.types import ProcessedData


def test_ratings_follow_chronological_order_deduplication_and_the_split() -> None:
    # user a: items x (t=3, r=1), y (t=1, r=5), x again (t=4, r=2), z (t=2, r=4), w (t=5, r=3)
    data = raw(["a"] * 5, ["x", "y", "x", "z", "w"], [3, 1, 4, 2, 5], rating=[1.0, 5.0, 2.0, 4.0, 3.0])
    seqs = Preprocessing()(data)
    assert seqs.ratings is not None
    assert seqs.item_raw_ids[seqs.items].tolist() == ["y", "z", "x", "w"]  # the duplicate x (t=4) is dropped
    assert seqs.ratings.tolist() == [5.0, 4.0, 1.0, 3.0]
    parts = LeaveOneOut().split(seqs)
    assert parts.train_ratings is not None and parts.train_ratings.tolist() == [5.0, 4.0]
    assert parts.val.target_ratings.tolist() == [1.0] and parts.test.target_ratings.tolist() == [3.0]


def test_sources_without_ratings_carry_none() -> None:
    seqs = Preprocessing()(raw(["a", "a", "a"], ["x", "y", "z"], [1, 2, 3]))
    parts = LeaveOneOut().split(seqs)
    assert seqs.ratings is None and parts.train_ratings is None and parts.test.target_ratings is None


def test_training_windows_and_trimmed_batches_keep_ratings_aligned_with_items() -> None:
    seqs = Preprocessing()(raw(["a"] * 4 + ["b"] * 7, list("pqrstuvwxyz"), list(range(11)), rating=list(range(1, 12))))
    parts = LeaveOneOut().split(seqs)
    data = ProcessedData(
        n_users=seqs.n_users, n_items=seqs.n_items, train_offsets=parts.train_offsets, train_items=parts.train_items,
        val=parts.val, test=parts.test, item_raw_ids=seqs.item_raw_ids, user_raw_ids=seqs.user_raw_ids,
        train_ratings=parts.train_ratings,
    )
    datamodule = SeqDataModule(source=None, preprocessing=None, split=None, max_len=8, batch_size=2)
    datamodule.data = data
    datamodule.setup()
    train = datamodule.tensors[names.TRAIN]
    rating_of = dict(zip(parts.train_items.tolist(), parts.train_ratings.tolist(), strict=False))
    batch = TensorBatches(train).__getitems__([0])  # user a's window: 2 items, heavily left-padded
    assert batch[names.ITEMS].shape == batch[names.RATINGS].shape == (1, 2)
    for items, ratings in zip(train[names.ITEMS].tolist(), train[names.RATINGS].tolist(), strict=True):
        assert [r for i, r in zip(items, ratings, strict=True) if i] == [rating_of[i] for i in items if i]
    test = datamodule.tensors[names.TEST]
    assert torch.equal(test[names.TARGET_RATING], torch.tensor([4.0, 11.0]))
    assert np.isclose(float(train[names.RATINGS].sum()), float(parts.train_ratings.sum()))


def test_train_users_fraction_keeps_whole_sequences_of_a_seeded_user_sample() -> None:
    rows = range(100)  # 20 users x 5 distinct items
    seqs = Preprocessing()(raw([r // 5 for r in rows], [r % 7 + 10 * (r // 5) for r in rows], list(rows)))
    parts = LeaveOneOut().split(seqs)
    data = ProcessedData(
        n_users=seqs.n_users, n_items=seqs.n_items, train_offsets=parts.train_offsets, train_items=parts.train_items,
        val=parts.val, test=parts.test, item_raw_ids=seqs.item_raw_ids, user_raw_ids=seqs.user_raw_ids,
    )

    def windows(fraction: float, seed: int) -> list[list[int]]:
        datamodule = SeqDataModule(None, None, None, max_len=8, seed=seed, train_users_fraction=fraction)
        datamodule.data = data
        datamodule.setup()
        return datamodule.tensors[names.TRAIN][names.ITEMS].tolist()

    everyone = windows(1.0, 0)
    quarter = windows(0.25, 0)
    assert len(everyone) == 20 and len(quarter) == 5  # one window per user here; 25% of 20 users
    assert all(w in everyone for w in quarter)  # whole, unchanged sequences of the sampled users
    assert quarter == windows(0.25, 0) and quarter != windows(0.25, 1)
    assert len(SeqDataModule(None, None, None, seed=0).tensors) == 0
    with pytest.raises(DataError, match="train_users_fraction"):
        SeqDataModule(None, None, None, train_users_fraction=0.0)
