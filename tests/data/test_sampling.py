import torch

from divrec.data.sampling import EpochBatchSampler, LengthGroupedBatchSampler


def epoch(sampler: LengthGroupedBatchSampler) -> list[list[int]]:
    return list(iter(sampler))


def test_every_row_once_per_epoch_and_a_seed_gives_the_same_batches() -> None:
    lengths = torch.randint(1, 50, (1003,))
    a = LengthGroupedBatchSampler(lengths, 64, torch.Generator().manual_seed(3), group_batches=4)
    b = LengthGroupedBatchSampler(lengths, 64, torch.Generator().manual_seed(3), group_batches=4)
    first, again = epoch(a), epoch(b)
    assert first == again
    assert sorted(i for batch in first for i in batch) == list(range(1003))
    assert len(first) == len(a) == 16
    assert epoch(a) != first  # the next epoch draws new batches


def test_grouping_reduces_padding_against_plain_shuffling() -> None:
    lengths = torch.randint(1, 50, (4096,))

    def padded(group_batches: int) -> int:
        s = LengthGroupedBatchSampler(lengths, 128, torch.Generator().manual_seed(0), group_batches)
        return sum(int(lengths[batch].max()) * len(batch) for batch in epoch(s))

    assert padded(32) < 0.7 * padded(1)


def test_epoch_batches_are_a_function_of_seed_and_epoch_only() -> None:
    """What resumption relies on: epoch 2 of a fresh sampler equals epoch 2 after epochs 0 and 1 were drawn (and
    drawing an epoch twice gives it twice); other epochs and seeds draw other batches."""
    lengths = torch.randint(1, 50, (500,))

    def at(sampler: EpochBatchSampler, number: int) -> list[list[int]]:
        sampler.set_epoch(number)
        return list(sampler)

    running = EpochBatchSampler(lengths, 32, seed=7, group_batches=4)
    drawn = [at(running, number) for number in range(3)]
    assert drawn[2] == at(EpochBatchSampler(lengths, 32, seed=7, group_batches=4), 2) == at(running, 2)
    assert drawn[0] != drawn[1] != drawn[2]
    assert at(EpochBatchSampler(lengths, 32, seed=8, group_batches=4), 2) != drawn[2]
    assert sorted(i for batch in drawn[2] for i in batch) == list(range(500)) and len(drawn[2]) == len(running)
    assert running.sampler is running  # Lightning calls set_epoch on batch_sampler.sampler
