import torch

from divrec.data.sampling import LengthGroupedBatchSampler


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
