"""Batch samplers: random batches of similar-length sequences, so dynamic padding wastes little compute."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler


class EpochPermutation(Sampler[int]):
    """A random permutation of ``range(n)`` per epoch that is a pure function of (``seed``, epoch).

    Lightning calls ``set_epoch`` before every training epoch (also on the sampler of a batch sampler), so a run
    resumed at epoch e replays exactly the order the uninterrupted run drew at epoch e.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        """A fresh generator for this epoch; its seed mixes (seed, epoch) so that nearby pairs do not collide."""
        seed = np.random.SeedSequence([self.seed % 2**64, self.epoch]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(seed) % 2**63)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        yield from torch.randperm(self.n, generator=self.generator()).tolist()


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches whose rows have similar lengths (the "group by length" trick of NLP trainers).

    Each epoch: a random permutation is cut into chunks of ``group_batches`` batches; each chunk is sorted by length
    and cut into batches; the batch order is shuffled. Every row is used once per epoch; randomness comes only from
    ``sampler`` (its generator for the current epoch), so (seed, epoch) gives the same batches, whatever ran before.
    ``group_batches=1`` is plain shuffling.
    """

    def __init__(self, lengths: Tensor, batch_size: int, sampler: EpochPermutation, group_batches: int = 32) -> None:
        if batch_size < 1 or group_batches < 1:
            raise ValueError(f"batch_size={batch_size} and group_batches={group_batches} must be >= 1")
        if len(sampler) != len(lengths):
            raise ValueError(f"the sampler draws {len(sampler)} rows but there are {len(lengths)} lengths")
        self.lengths = lengths
        self.batch_size, self.group_batches = batch_size, group_batches
        self.sampler = sampler  # the name Lightning looks for when it calls set_epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = self.sampler.generator()
        perm = torch.randperm(len(self.lengths), generator=generator)
        chunk = self.batch_size * self.group_batches
        batches: list[Tensor] = []
        for start in range(0, len(perm), chunk):
            rows = perm[start : start + chunk]
            rows = rows[torch.argsort(self.lengths[rows], descending=True, stable=True)]
            batches.extend(rows.split(self.batch_size))
        for b in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[b].tolist()
