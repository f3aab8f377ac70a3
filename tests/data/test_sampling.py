import torch

from divrec.data.sampling import EpochPermutation, LengthGroupedBatchSampler


def epoch(sampler: LengthGroupedBatchSampler, number: int = 0) -> list[list[int]]:
    sampler.set_epoch(number)
    return list(iter(sampler))


def grouped(lengths: torch.Tensor, batch_size: int, seed: int, group_batches: int) -> LengthGroupedBatchSampler:
    return LengthGroupedBatchSampler(lengths, batch_size, EpochPermutation(len(lengths), seed), group_batches)


def test_every_row_once_per_epoch_and_a_seed_gives_the_same_batches() -> None:
    lengths = torch.randint(1, 50, (1003,))
    a, b = grouped(lengths, 64, 3, 4), grouped(lengths, 64, 3, 4)
    first, again = epoch(a), epoch(b)
    assert first == again
    assert sorted(i for batch in first for i in batch) == list(range(1003))
    assert len(first) == len(a) == 16
    assert epoch(a, 1) != first  # the next epoch draws new batches
    assert epoch(grouped(lengths, 64, 4, 4)) != first  # and so does another seed


def test_order_is_a_function_of_seed_and_epoch_only() -> None:
    """What resumption relies on: epoch 2 of a fresh sampler equals epoch 2 after epochs 0 and 1 were drawn (and
    drawing an epoch twice gives it twice)."""
    lengths = torch.randint(1, 50, (500,))
    running = grouped(lengths, 32, 7, 4)
    for number in range(3):
        drawn = epoch(running, number)
    assert drawn == epoch(grouped(lengths, 32, 7, 4), 2) == epoch(running, 2)
    order = EpochPermutation(10, seed=7)
    order.set_epoch(5)
    assert list(order) == list(order) and sorted(order) == list(range(10))


def test_grouping_reduces_padding_against_plain_shuffling() -> None:
    lengths = torch.randint(1, 50, (4096,))

    def padded(group_batches: int) -> int:
        return sum(int(lengths[batch].max()) * len(batch) for batch in epoch(grouped(lengths, 128, 0, group_batches)))

    assert padded(32) < 0.7 * padded(1)
