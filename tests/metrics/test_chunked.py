"""Chunked full ranking equals the plain one: ranks (pessimistic ties), top-K ids and scores, masking."""

from __future__ import annotations

import pytest
import torch

from divrec.metrics import chunked_ranking, mask_scores, target_ranks, top_k, top_k_scored


def plain(query: torch.Tensor, table: torch.Tensor, seen: torch.Tensor, target: torch.Tensor, k: int):
    masked = mask_scores(query @ table.T, seen, target)
    return (target_ranks(masked, target), *top_k_scored(masked, k), masked.logsumexp(1))


def assert_same(got: tuple, want: tuple) -> None:
    """Ranks, top-K scores and ids bit for bit; the log-normaliser to float rounding (chunks sum in another order)."""
    for g, w in zip(got[:3], want[:3], strict=True):
        assert torch.equal(g, w)
    torch.testing.assert_close(got[3], want[3], rtol=1e-6, atol=1e-6)


def integer_case(seed: int, n_users: int = 40, n_items: int = 60, dim: int = 3):
    """Small-integer embeddings: every score is exact whatever the summation order, and ties are plentiful."""
    gen = torch.Generator().manual_seed(seed)
    query = torch.randint(-2, 3, (n_users, dim), generator=gen).float()
    table = torch.randint(-2, 3, (n_items + 1, dim), generator=gen).float()
    target = torch.randint(1, n_items + 1, (n_users,), generator=gen)
    seen = torch.randint(0, n_items + 1, (n_users, 9), generator=gen)  # 0 = padding of the seen lists
    seen[::3, 0] = target[::3]  # a re-consumed target stays rankable
    return query, table, seen, target


@pytest.mark.parametrize("chunk_size", [1, 4, 16, 61, 1000])
@pytest.mark.parametrize("k", [1, 10, 70])
def test_chunked_equals_plain_with_ties_and_seen_items(chunk_size: int, k: int) -> None:
    query, table, seen, target = integer_case(chunk_size + k)
    want = plain(query, table, seen, target, k)
    assert_same(chunked_ranking(query, table, seen, target, k, chunk_size), want)
    assert (want[1] == float("-inf")).any() == (k == 70)  # k beyond the rankable items: padded slots


def test_chunked_equals_plain_on_random_float_scores() -> None:
    torch.manual_seed(0)
    query, table = torch.randn(300, 32), torch.randn(5001, 32)
    target = torch.randint(1, 5001, (300,))
    seen = torch.randint(0, 5001, (300, 40))
    want = plain(query, table, seen, target, 200)
    assert_same(chunked_ranking(query, table, seen, target, 200, 777), want)


def test_top_k_breaks_ties_towards_lower_ids_like_a_brute_force_sort() -> None:
    gen = torch.Generator().manual_seed(5)
    scores = torch.randint(0, 4, (50, 30), generator=gen).float()
    scores[scores == 0] = float("-inf")
    scores[:, 0] = float("-inf")  # column 0 = padding, masked as in evaluation
    for k in (1, 3, 8, 30, 35):
        vals, ids = top_k_scored(scores, k)
        for row in range(50):
            order = sorted(range(30), key=lambda j: (-scores[row, j].item(), j))[:k]
            expect = [j if scores[row, j] > float("-inf") else 0 for j in order] + [0] * max(0, k - 30)
            assert ids[row].tolist() == expect
        assert torch.equal(top_k(scores, k), ids)
        assert torch.equal(vals == float("-inf"), ids == 0)


def test_constant_scores_rank_the_target_last_in_both_paths() -> None:
    query, table = torch.ones(4, 2), torch.ones(11, 2)  # every item ties with the target
    target, seen = torch.tensor([1, 5, 10, 3]), torch.tensor([[2, 3, 0], [0, 0, 0], [1, 0, 0], [3, 4, 0]])
    ranks, _, ids, _ = chunked_ranking(query, table, seen, target, 3, 4)
    assert ranks.tolist() == [8, 10, 9, 9]  # 10 items - seen (target never excluded)
    assert ids.tolist() == [[1, 4, 5], [1, 2, 3], [2, 3, 4], [1, 2, 3]]
    assert torch.equal(ranks, plain(query, table, seen, target, 3)[0])
