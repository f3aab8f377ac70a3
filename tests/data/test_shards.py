"""Rank-aware batching (divrec.data.distributed): exact eval shards, equal-length training shards per (seed, epoch)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning_fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from divrec import names
from divrec.data.datamodule import SeqDataModule, TensorBatches, passthrough
from divrec.data.distributed import EpochShardBatchSampler, EvalShardBatchSampler, ShardError
from divrec.data.preprocess import Preprocessing
from divrec.data.splits import LeaveOneOut
from divrec.data.synthetic import Synthetic
from divrec.errors import UserError


def rank_batches(n_rows: int, batch_size: int, world: int) -> list[list[list[int]]]:
    return [list(EvalShardBatchSampler(n_rows, batch_size, rank, world)) for rank in range(world)]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize(("n_rows", "batch_size"), [(61, 8), (64, 8), (9, 2), (5, 1024), (1001, 7), (7, 3)])
def test_eval_shards_partition_the_rows_with_equal_batch_counts(n_rows: int, batch_size: int, world: int) -> None:
    if n_rows < world:
        pytest.skip("fewer rows than processes is an error (next test)")
    shards = rank_batches(n_rows, batch_size, world)
    rows = [row for shard in shards for batch in shard for row in batch]
    assert sorted(rows) == list(range(n_rows))  # every user exactly once: no padding, no drop
    assert len({len(shard) for shard in shards}) == 1  # same number of batches on every rank (FSDP needs it)
    assert all(0 < len(batch) <= batch_size for shard in shards for batch in shard)
    for shard in shards:  # the length-sorted order is kept within a rank
        flat = [row for batch in shard for row in batch]
        assert flat == sorted(flat)


def test_one_process_eval_batches_are_full_size() -> None:
    (shard,) = rank_batches(20, 8, 1)
    assert [len(b) for b in shard] == [7, 7, 6]  # balanced, never above eval_batch_size
    assert len(shard) == 3


def test_fewer_eval_rows_than_processes_is_a_user_error() -> None:
    with pytest.raises(ShardError, match=r"3 val users on 4 processes.*trainer.devices"):
        EvalShardBatchSampler(3, 8, rank=0, world_size=4, what="val users")
    assert issubclass(ShardError, UserError)


def epoch_batches(sampler: EpochShardBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_training_order_is_a_function_of_seed_and_epoch_only() -> None:
    lengths = torch.randint(1, 30, (203,))
    a, b = EpochShardBatchSampler(lengths, 16, seed=3), EpochShardBatchSampler(lengths, 16, seed=3)
    assert epoch_batches(a, 1) == epoch_batches(b, 1)
    assert epoch_batches(a, 0) != epoch_batches(a, 1)  # a new order every epoch
    assert epoch_batches(a, 1) == epoch_batches(a, 1)  # ...that does not depend on what was drawn before
    assert epoch_batches(a, 0) != epoch_batches(EpochShardBatchSampler(lengths, 16, seed=4), 0)
    one = epoch_batches(a, 2)
    assert sorted(i for batch in one for i in batch) == list(range(203))  # one process: every row once
    assert len(one) == len(a) == 13


@pytest.mark.parametrize("world", [2, 3])
def test_training_shards_have_equal_step_counts_and_cover_every_row(world: int) -> None:
    lengths = torch.randint(1, 30, (203,))  # 13 batches of 16: not a multiple of 2 or 3
    shards = [epoch_batches(EpochShardBatchSampler(lengths, 16, 5, 4, rank, world), 7) for rank in range(world)]
    assert len({len(shard) for shard in shards}) == 1  # DDP: the same number of steps on every rank
    assert all(len(shard) == len(EpochShardBatchSampler(lengths, 16, 5, 4, 0, world)) for shard in shards)
    counts = Counter(i for shard in shards for batch in shard for i in batch)
    assert set(counts) == set(range(203))  # every row in this epoch...
    repeated = sum(c - 1 for c in counts.values())
    assert repeated <= 16 * (world - 1)  # ...and only the wrap-around batches twice


def test_lightning_sets_the_epoch_through_the_dataloader() -> None:
    sampler = EpochShardBatchSampler(torch.ones(10, dtype=torch.long), 4, seed=0)
    loader = DataLoader(TensorBatches({names.ITEMS: torch.ones(10, 2)}), batch_sampler=sampler, collate_fn=passthrough)
    _set_sampler_epoch(loader, 5)  # what Lightning's fit loop calls at every epoch start
    assert sampler.epoch == 5


def tiny_datamodule(tmp_path: Path, n_users: int = 61) -> SeqDataModule:
    source = Synthetic(n_users=n_users, n_items=30, n_categories=4, mean_length=8.0, seed=0)
    return SeqDataModule(
        source, Preprocessing(), LeaveOneOut(), data_dir=str(tmp_path), max_len=6, batch_size=8, eval_batch_size=8
    )


def fake_trainer(rank: int, world: int, use_distributed_sampler: bool = False) -> SimpleNamespace:
    connector = SimpleNamespace(use_distributed_sampler=use_distributed_sampler)
    return SimpleNamespace(global_rank=rank, world_size=world, _accelerator_connector=connector)


def test_datamodule_evaluates_every_user_once_across_ranks(tmp_path: Path) -> None:
    dm = tiny_datamodule(tmp_path)
    for stage in (names.VAL, names.TEST):
        users, steps = [], []
        for rank in range(2):
            dm.trainer = fake_trainer(rank, 2)
            batches = list(dm.val_dataloader() if stage == names.VAL else dm.test_dataloader())
            steps.append(len(batches))
            users += [int(u) for batch in batches for u in batch[names.USER_INDEX]]
        expected = dm.tensors[stage][names.USER_INDEX].tolist()
        assert len(expected) % 2 == 1  # an odd count: Lightning's DistributedSampler would repeat one user
        assert sorted(users) == sorted(expected)  # every user exactly once across the two ranks
        assert steps[0] == steps[1]
    train_steps = []
    for rank in range(2):
        dm.trainer = fake_trainer(rank, 2)
        train_steps.append(len(list(dm.train_dataloader())))
    assert train_steps[0] == train_steps[1] > 0


def test_lightning_distributed_sampler_is_refused(tmp_path: Path) -> None:
    dm = tiny_datamodule(tmp_path)
    dm.trainer = fake_trainer(0, 2, use_distributed_sampler=True)
    with pytest.raises(UserError, match="use_distributed_sampler=false"):
        dm.val_dataloader()
