"""Batch samplers: random batches of similar-length sequences, so dynamic padding wastes little compute."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches whose rows have similar lengths (the "group by length" trick of NLP trainers).

    Each epoch: a random permutation is cut into chunks of ``group_batches`` batches; each chunk is sorted by length
    and cut into batches; the batch order is shuffled. Every row is used once per epoch; randomness comes only from
    ``generator`` (seeded by the datamodule), so a seed gives the same batches. ``group_batches=1`` is plain shuffling.
    """

    def __init__(self, lengths: Tensor, batch_size: int, generator: torch.Generator, group_batches: int = 32) -> None:
        if batch_size < 1 or group_batches < 1:
            raise ValueError(f"batch_size={batch_size} and group_batches={group_batches} must be >= 1")
        self.lengths = lengths
        self.batch_size, self.group_batches = batch_size, group_batches
        self.generator = generator

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        perm = torch.randperm(len(self.lengths), generator=self.generator)
        chunk = self.batch_size * self.group_batches
        batches: list[Tensor] = []
        for start in range(0, len(perm), chunk):
            rows = perm[start : start + chunk]
            rows = rows[torch.argsort(self.lengths[rows], descending=True, stable=True)]
            batches.extend(rows.split(self.batch_size))
        for b in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[b].tolist()


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed mixing the run's seed and the epoch (nearby pairs do not collide)."""
    return int(np.random.SeedSequence([int(seed) % 2**64, int(epoch)]).generate_state(1, dtype=np.uint64)[0] >> 1)


class EpochBatchSampler(Sampler[list[int]]):
    """:class:`LengthGroupedBatchSampler` batches whose order is a pure function of ``(seed, epoch)``.

    Lightning calls ``set_epoch`` before every training epoch (on ``batch_sampler.sampler``, which is this object),
    also after a resume, so a run resumed at epoch e replays exactly the batches the uninterrupted run drew at e,
    whatever ran before.
    """

    def __init__(self, lengths: Tensor, batch_size: int, seed: int, group_batches: int = 32) -> None:
        self.lengths, self.batch_size, self.seed, self.group_batches = lengths, batch_size, seed, group_batches
        self.epoch = 0
        self.sampler = self  # where Lightning looks for set_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        yield from LengthGroupedBatchSampler(self.lengths, self.batch_size, generator, self.group_batches)
