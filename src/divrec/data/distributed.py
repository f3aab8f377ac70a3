"""Rank-aware batching: every process reads its own shard, chosen here rather than by Lightning's DistributedSampler.

Lightning's automatic sampler (``trainer.use_distributed_sampler``) pads the last shard with repeated rows so that
every process gets the same number of rows; for evaluation that counts some users twice, and it would replace the
datamodule's length-grouped batches. divrec therefore keeps ``use_distributed_sampler: false`` and shards itself:

- evaluation: rank ``r`` of ``W`` gets rows ``r, r+W, r+2W, …`` of the length-sorted table (similar lengths on every
  rank), split into the same number of batches on every rank (FSDP runs collectives in each forward), no padding,
  so every user is evaluated exactly once;
- training: all ranks draw the same global batch order from ``(seed, epoch)``; it is extended by wrapping around to
  a multiple of ``W`` batches (DDP needs the same number of steps everywhere) and rank ``r`` takes every ``W``-th.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import Sampler

from divrec.data.errors import DataError
from divrec.data.sampling import EpochBatchSampler


class ShardError(DataError):
    """The dataset cannot be split across the processes (fewer rows than processes)."""


def process_shard(trainer: Any) -> tuple[int, int]:
    """``(global_rank, world_size)`` of the attached Lightning trainer; ``(0, 1)`` without one."""
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)


class EvalShardBatchSampler(Sampler[list[int]]):
    """Batches of this rank's evaluation rows: rows ``rank::world_size`` (order kept), cut into as many batches as
    the largest shard needs at ``batch_size``, every batch non-empty and at most ``batch_size`` rows.

    Every rank yields the same number of batches (except when ``batch_size=1`` and the shards differ in size), and
    the shards partition the rows: each user is evaluated exactly once across all processes.
    """

    def __init__(self, n_rows: int, batch_size: int, rank: int = 0, world_size: int = 1, what: str = "rows") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        if n_rows == 0:
            raise ShardError(
                f"no {what} to evaluate: no user has enough interactions for the split (data.split); add "
                "interactions, or lower the preprocessing filters (data.preprocessing.user_core / item_core)"
            )
        if n_rows < world_size:
            raise ShardError(
                f"cannot evaluate {n_rows} {what} on {world_size} processes (every process needs at least one); "
                "use fewer devices (trainer.devices / trainer.num_nodes) for this dataset, or more data (only users "
                "with enough interactions for data.split are evaluated)"
            )
        self.rows = np.arange(rank, n_rows, world_size)
        largest = -(-n_rows // world_size)
        self.n_batches = min(-(-largest // batch_size), len(self.rows))

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in np.array_split(self.rows, self.n_batches):
            yield batch.tolist()


class EpochShardBatchSampler(EpochBatchSampler):
    """One rank's share of :class:`EpochBatchSampler`'s batches (length-grouped, a function of ``(seed, epoch)``).

    All ranks draw the same global batch list; it is wrapped around to a multiple of ``world_size`` batches (the
    first few batches of the epoch are repeated on the ranks that would otherwise run out), so all ranks take the
    same number of steps, and rank ``r`` takes every ``world_size``-th batch from ``r``. With ``world_size=1`` it
    is exactly :class:`EpochBatchSampler`: every row once per epoch.
    """

    def __init__(
        self, lengths: Tensor, batch_size: int, seed: int, group_batches: int = 32, rank: int = 0, world_size: int = 1
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        super().__init__(lengths, batch_size, seed, group_batches)
        self.rank, self.world_size = rank, world_size

    def global_batches(self) -> list[list[int]]:
        """This epoch's batches of all ranks, in order (identical on every rank)."""
        return list(super().__iter__())

    def __len__(self) -> int:
        return -(-super().__len__() // self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.global_batches()
        if not batches:
            return
        padded = [batches[i % len(batches)] for i in range(len(self) * self.world_size)]
        yield from padded[self.rank :: self.world_size]
