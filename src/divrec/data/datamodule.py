"""LightningDataModule: prepared dataset → padded tensors → batches, with no per-sample Python work.

Training windows and evaluation histories are built once as dense int64 tensors; a batch is one fancy-index into
them, trimmed to its longest row (dynamic padding). Loading goes through ``prepare_dataset`` (cached).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from divrec import names
from divrec.data.distributed import EpochShardBatchSampler, EvalShardBatchSampler, process_shard
from divrec.data.errors import DataError
from divrec.data.prepare import prepare_dataset
from divrec.data.splits import LeaveOneOut, ranges
from divrec.data.types import EvalSplit, ProcessedData
from divrec.data.windows import last_items, right_padded, training_windows, window_ends
from divrec.errors import UserError

SHUFFLE_STREAM = 0x5EED  # seeds the shuffled control apart from the other uses of ``seed`` (user sample, batches)


def leading_padding(x: Tensor) -> int:
    """How many leading columns are padding in every row of a left-padded (B, L) batch (keeps >= 1 column)."""
    used = (x != 0).any(dim=0).nonzero()
    return int(used[0]) if len(used) else x.shape[1] - 1


def trim_left(x: Tensor) -> Tensor:
    """Drop leading columns that are padding in every row of a left-padded (B, L) batch (keeps >= 1)."""
    return x[:, leading_padding(x) :]


def trim_right(x: Tensor) -> Tensor:
    """Drop trailing all-padding columns of a right-padded (B, S) batch (keeps >= 1)."""
    used = (x != 0).any(dim=0).nonzero()
    return x[:, : int(used[-1]) + 1] if len(used) else x[:, :1]


class TensorBatches(Dataset):
    """Rows of named tensors; ``__getitems__`` returns a whole batch at once (DataLoader's batched fetch)."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        self.tensors = tensors
        self.length = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.length

    def __getitems__(self, rows: list[int]) -> dict[str, Tensor]:
        idx = torch.as_tensor(rows, dtype=torch.long)
        batch = {key: value[idx] for key, value in self.tensors.items()}
        for key, aligned in ((names.ITEMS, names.RATINGS), (names.HISTORY, None)):
            if key in batch:
                start = leading_padding(batch[key])
                batch[key] = batch[key][:, start:]
                if aligned in batch:  # per-position values stay aligned with their items
                    batch[aligned] = batch[aligned][:, start:]
        if names.SEEN in batch:
            batch[names.SEEN] = trim_right(batch[names.SEEN])
        return batch

    def __getitem__(self, row: int) -> dict[str, Tensor]:
        return self.__getitems__([row])


def passthrough(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return batch


def eval_tensors(split: EvalSplit, max_len: int) -> dict[str, Tensor]:
    """History (last max_len items), every seen item, the target and the user index of each evaluated user.

    Rows are ordered by history length (stable), so that consecutive users pad to similar lengths; metrics do not
    depend on the order and per-user values carry ``names.USER_INDEX``.
    """
    offsets, items = split.history_offsets, split.history_items
    order = np.argsort(np.diff(offsets), kind="stable")
    tensors = {
        names.HISTORY: last_items(offsets, items, max_len),
        names.SEEN: right_padded(offsets, items),
        names.TARGET: split.targets.astype(np.int64),
        names.USER_INDEX: split.users.astype(np.int64),
    }
    if split.target_ratings is not None:
        tensors[names.TARGET_RATING] = split.target_ratings.astype(np.float32)
    return {key: torch.from_numpy(np.ascontiguousarray(value[order])) for key, value in tensors.items()}


def shuffled_training(data: ProcessedData, seed: int) -> ProcessedData:
    """``data`` with every user's training sequence randomly permuted (seeded; ratings move with their items): the
    "shuffled" control of ``divrec leaderboard``, which shows how much of a score comes from the order of training
    sequences. Only training changes (windows, and what a closed-form baseline is fitted on): validation and test
    targets and their histories keep the true order, so the model is still evaluated on real sequences."""
    offsets = data.train_offsets
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))  # (N,) the user of each training item
    rng = np.random.default_rng([seed, SHUFFLE_STREAM])
    order = np.lexsort((rng.random(len(rows)), rows))  # a random order within each (contiguous) user row
    ratings = None if data.train_ratings is None else data.train_ratings[order]
    return dataclasses.replace(data, train_items=data.train_items[order], train_ratings=ratings)


class SeqDataModule(pl.LightningDataModule):
    """Sequential-recommendation data: training windows of max_len + 1 items, val/test users with one target."""

    def __init__(
        self,
        source: Any,
        preprocessing: Any,
        split: Any,
        data_dir: str = "data",
        mirror: str | None = None,
        cache_dir: str | None = None,
        download: bool = True,
        max_len: int = 50,  # the model reads at most this many items
        stride: int | None = None,  # step between training windows; None = max_len (each target once)
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        num_workers: int = 0,
        group_batches: int = 32,  # batches of similar length are drawn from chunks of this many (1 = plain shuffle)
        seed: int = 0,
        train_users_fraction: float = 1.0,  # train on this share of users (low-data studies); evaluate on all
        shuffle_sequences: bool = False,  # control: permute each training sequence (seeded); evaluation untouched
    ) -> None:
        super().__init__()
        if not 0.0 < train_users_fraction <= 1.0:
            raise DataError(
                f"data.train_users_fraction={train_users_fraction} must be in (0, 1]; "
                "e.g. data.train_users_fraction=0.1 trains on 10% of users"
            )
        self.train_users_fraction = train_users_fraction
        if not isinstance(shuffle_sequences, bool):
            raise DataError(
                f"data.shuffle_sequences={shuffle_sequences!r} must be true or false; "
                "e.g. data.shuffle_sequences=true trains on shuffled sequences"
            )
        self.shuffle_sequences = shuffle_sequences
        self.source, self.preprocessing, self.split = source, preprocessing, split
        self.data_dir = Path(data_dir)
        self.mirror = Path(mirror) if mirror else None
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / "cache"
        self.download = download
        self.max_len, self.stride = max_len, stride or max_len
        self.prefixes = False  # a window ending at every position (set by objectives with prefix_windows)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.group_batches, self.seed = num_workers, group_batches, seed
        self.data: ProcessedData | None = None
        self.tensors: dict[str, dict[str, Tensor]] = {}

    def load(self) -> ProcessedData:
        """Prepare (or read from cache) the dataset; idempotent. With ``shuffle_sequences`` the training sequences
        are shuffled after the cache (``shuffled_training``), so the cache never holds a shuffled copy."""
        if self.data is None:
            data = prepare_dataset(
                self.source, self.preprocessing, self.split, data_dir=self.data_dir, mirror=self.mirror,
                cache_dir=self.cache_dir, download=self.download,
            )
            self.data = shuffled_training(data, self.seed) if self.shuffle_sequences else data
        return self.data

    def prepare_data(self) -> None:
        self.load()

    def setup(self, stage: str | None = None) -> None:
        if self.tensors:
            return
        data = self.load()
        offsets, items, item_ratings = self._training_sequences(data)
        width, stride, prefixes = self.max_len + 1, self.stride, self.prefixes
        windows = training_windows(offsets, items, width, stride, prefixes)
        usable = (windows != 0).sum(axis=1) >= 2  # a window needs an input and a target
        users, _ = window_ends(np.diff(offsets), width, stride, prefixes)  # (N,) the user of each window
        train = {names.ITEMS: torch.from_numpy(windows[usable]), names.USER_INDEX: torch.from_numpy(users[usable])}
        if item_ratings is not None:
            ratings = training_windows(offsets, item_ratings, width, stride, prefixes)
            train[names.RATINGS] = torch.from_numpy(ratings[usable].astype(np.float32))
        self.tensors = {
            names.TRAIN: train,
            names.VAL: eval_tensors(data.val, self.max_len),
            names.TEST: eval_tensors(data.test, self.max_len),
        }

    def _training_sequences(self, data: ProcessedData) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """CSR (offsets, items, ratings) of the training sequences; with ``train_users_fraction`` < 1, only those of
        a random sample of users (drawn from ``seed``), the others' rows empty."""
        offsets, items, ratings = data.train_offsets, data.train_items, data.train_ratings
        if self.train_users_fraction >= 1.0:
            return offsets, items, ratings
        rng = np.random.default_rng(self.seed)
        kept = np.zeros(data.n_users, dtype=np.int64)
        kept[rng.choice(data.n_users, size=max(1, round(self.train_users_fraction * data.n_users)), replace=False)] = 1
        lengths = np.diff(offsets) * kept
        rows = ranges(offsets[:-1], lengths)
        new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return new_offsets, items[rows], None if ratings is None else ratings[rows]

    def _no_windows(self) -> str:
        """Why there is nothing to train on, in data terms (every training sequence is shorter than 2 items)."""
        offsets, _, _ = self._training_sequences(self.load())
        longest = int(np.diff(offsets).max()) if len(offsets) > 1 else 0
        options = ["add interactions"]
        loo = isinstance(self.split, LeaveOneOut)
        val_items = self.split.val_items if loo else 1
        if val_items > 1:
            options.append(f"lower data.split.val_items (now {val_items})")
        if self.train_users_fraction < 1.0:
            options.append(f"raise data.train_users_fraction (now {self.train_users_fraction})")
        return (
            "too little data to train: no training sequence has the 2 items a window needs (an input and a target); "
            f"after holding out the validation and test items the longest has {longest}"
            + (f" (leave-one-out needs {3 + val_items} interactions per user)" if loo else "")
            + f"; {' or '.join(options)}"
        )

    @property
    def n_items(self) -> int:
        return self.load().n_items

    def _loader(self, stage: str, **batching: Any) -> DataLoader:
        return DataLoader(
            TensorBatches(self.tensors[stage]),
            collate_fn=passthrough,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **batching,
        )

    def _shard(self) -> tuple[int, int]:
        """This process's ``(rank, world_size)``; divrec shards its own batches (see ``divrec.data.distributed``)."""
        trainer = self.trainer
        rank, world = process_shard(trainer)
        if world > 1 and getattr(getattr(trainer, "_accelerator_connector", None), "use_distributed_sampler", False):
            raise UserError(
                "trainer.use_distributed_sampler=true would pad evaluation with repeated users and replace divrec's "
                "batches; set trainer.use_distributed_sampler=false (divrec shards the data per process itself)"
            )
        return rank, world

    def train_dataloader(self) -> DataLoader:
        self.setup()
        windows = self.tensors[names.TRAIN][names.ITEMS]
        if not len(windows):
            raise DataError(self._no_windows())
        rank, world = self._shard()
        sampler = EpochShardBatchSampler(
            (windows != 0).sum(1), self.batch_size, self.seed, self.group_batches, rank=rank, world_size=world
        )
        return self._loader(names.TRAIN, batch_sampler=sampler)

    def _eval_loader(self, stage: str) -> DataLoader:
        self.setup()
        rank, world = self._shard()
        n_rows = len(self.tensors[stage][names.TARGET])
        sampler = EvalShardBatchSampler(n_rows, self.eval_batch_size, rank, world, what=f"{stage} users")
        return self._loader(stage, batch_sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(names.VAL)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(names.TEST)
