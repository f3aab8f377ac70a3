"""bf16 full ranking with fp32 rescoring equals exact fp32 ranking: ranks (pessimistic ties), top-K, fallbacks."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import divrec.metrics.mixed as mixed
from divrec.metrics import mask_scores, target_ranks, top_k_scored
from divrec.metrics.mixed import dot_rows, fast_top_k_scored, mixed_ranking, prepare_table
from divrec.precision import bf16_supported

Result = tuple[Tensor, Tensor, Tensor]


def plain(query: Tensor, table: Tensor, seen: Tensor, target: Tensor, k: int) -> Result:
    """The fp32 evaluator: one matrix product, mask, ranks, top-K."""
    masked = mask_scores(query @ table.T, seen, target)
    return target_ranks(masked, target), *top_k_scored(masked, k)


def brute_force(query: Tensor, table: Tensor, seen: Tensor, target: Tensor, k: int) -> Result:
    """The same with every score from the rescoring kernel f (``dot_rows``), so near-ties compare bit for bit."""
    scores = dot_rows(query.unsqueeze(1), table.unsqueeze(0))  # (B, V+1)
    masked = mask_scores(scores, seen, target)
    return target_ranks(masked, target), *top_k_scored(masked, k)


def assert_equal(got: Result, want: Result) -> None:
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and torch.equal(g, w)


def random_case(seed: int, n_users: int, n_items: int, dim: int, n_seen: int = 30, scale: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(n_users, dim, generator=gen) * scale * 3
    table = torch.randn(n_items + 1, dim, generator=gen) * scale * 0.2
    table[0] = 0
    target = torch.randint(1, n_items + 1, (n_users,), generator=gen)
    seen = torch.randint(0, n_items + 1, (n_users, n_seen), generator=gen)
    seen[::4, 1] = target[::4]  # a re-consumed target stays rankable
    return query, table, seen, target


def integer_case(seed: int, n_users: int = 60, n_items: int = 80, dim: int = 4):
    """Small integers: exact in bf16 and fp32 whatever the summation order, with plenty of exact ties."""
    gen = torch.Generator().manual_seed(seed)
    query = torch.randint(-2, 3, (n_users, dim), generator=gen).float()
    table = torch.randint(-2, 3, (n_items + 1, dim), generator=gen).float()
    target = torch.randint(1, n_items + 1, (n_users,), generator=gen)
    seen = torch.randint(0, n_items + 1, (n_users, 9), generator=gen)
    seen[::3, 0] = target[::3]
    return query, table, seen, target


@pytest.mark.parametrize(
    ("n_users", "n_items", "dim", "k", "row_chunk"),
    [(300, 5001, 32, 20, 256), (64, 1000, 64, 10, 17), (257, 3000, 16, 100, 100), (40, 700, 8, 1, 256)],
)
@pytest.mark.parametrize("scale", [1.0, 1e-3, 50.0])
def test_equals_fp32_on_random_scores(n_users: int, n_items: int, dim: int, k: int, row_chunk: int, scale: float):
    case = random_case(n_users + n_items, n_users, n_items, dim, scale=scale)
    got = mixed_ranking(*case, k, row_chunk=row_chunk)
    assert_equal(got, brute_force(*case, k))
    assert_close_to_plain(got, case, k)


def assert_close_to_plain(got: Result, case: tuple[Tensor, ...], k: int) -> None:
    """Equal to the matrix-product evaluator except where its scores and f's differ by fp32 rounding at a tie."""
    query, table, seen, target = case
    masked = mask_scores(query @ table.T, seen, target)
    want = target_ranks(masked, target), *top_k_scored(masked, k)
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-30)
    tol = 16 * 2.0**-24 * (query.abs() @ table.abs().T)  # (B, V+1): 16 fp32 ulps of the terms' magnitudes
    at_target = masked.gather(1, target.unsqueeze(1))
    near = ((masked - at_target).abs() < 2 * tol).sum(1) > 1  # another item within rounding of the target
    near_top = ((masked - want[1][:, -1:]).abs() < 2 * tol).sum(1) > 1  # another item at the k-th score
    assert torch.equal(got[0][~near], want[0][~near]) and torch.equal(got[2][~near_top], want[2][~near_top])
    assert near.float().mean() < 0.05 and near_top.float().mean() < 0.05  # the comparison is not vacuous


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 7, 30, 90])
def test_exact_ties_follow_the_pessimistic_rule_and_id_order(seed: int, k: int) -> None:
    case = integer_case(seed)
    want = plain(*case, k)
    assert_equal(mixed_ranking(*case, k), want)
    assert_equal(mixed_ranking(*case, k, extra=0, row_chunk=7), want)
    assert (want[1] == float("-inf")).any() == (k == 90)  # k beyond the rankable items: padded slots


def near_tie_case(seed: int, spread: float, n_users: int = 50, n_items: int = 2000, dim: int = 64):
    """Every item's vector is the target's (of user 0) plus a perturbation of relative size ``spread``: thousands
    of scores within the bf16 error of each other, at the target and at the top."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(dim, generator=gen)
    table = base + spread * torch.randn(n_items + 1, dim, generator=gen)
    table[0] = 0
    query = base + 0.05 * torch.randn(n_users, dim, generator=gen)  # similar users: similar near-tie structure
    target = torch.randint(1, n_items + 1, (n_users,), generator=gen)
    seen = torch.randint(0, n_items + 1, (n_users, 12), generator=gen)
    return query, table, seen, target


@pytest.mark.parametrize("spread", [1e-2, 1e-3, 3e-4, 1e-4, 1e-6, 1e-8])
def test_adversarial_near_ties_equal_the_rescoring_kernel(spread: float) -> None:
    case = near_tie_case(round(-10 * torch.tensor(spread).log10().item()), spread)
    for k in (5, 40):
        assert_equal(mixed_ranking(*case, k), brute_force(*case, k))


def test_top_k_check_failures_fall_back_to_the_exact_path(monkeypatch: pytest.MonkeyPatch) -> None:
    query, table, seen, target = integer_case(11, n_users=30, n_items=300, dim=2)  # top scores tie in crowds
    redone: list[int] = []
    exact_rows = mixed._exact_rows

    def spy(q: Tensor, *args: object) -> Result:
        redone.append(len(q))
        return exact_rows(q, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(mixed, "_exact_rows", spy)
    assert_equal(mixed_ranking(query, table, seen, target, 10, extra=2), plain(query, table, seen, target, 10))
    assert redone and 0 < sum(redone) <= len(query)


def test_users_with_a_wide_band_go_to_the_exact_path() -> None:
    """Near-tied items in a wide table (EASE's item-item rows): bands of thousands of items per user are not
    rescored pair by pair (memory grows with band x D) but ranked exactly, with the same results."""
    gen = torch.Generator().manual_seed(3)
    n_items, dim = 3000, 256
    noise = 1e-4 * torch.randn(n_items + 1, dim, generator=gen)
    table = torch.randn(1, dim, generator=gen).repeat(n_items + 1, 1) + noise
    table[0] = 0
    query = torch.randn(20, dim, generator=gen)
    target = torch.randint(1, n_items + 1, (20,), generator=gen)
    seen = torch.randint(0, n_items + 1, (20, 5), generator=gen)
    stats: dict[str, int] = {}
    got = mixed_ranking(query, table, seen, target, 10, stats=stats)
    assert stats["exact_users"] == 20 and stats["band_pairs"] == 0
    assert_equal(got, brute_force(query, table, seen, target, 10))


def test_non_finite_scores_are_handled_like_target_ranks() -> None:
    query, table, seen, target = random_case(3, 20, 200, 8)
    query = query.abs() + 0.1  # no zeros: inf * q stays inf in every kernel
    query[1, 2] = float("nan")  # user 1: every score NaN
    k = 15
    for _ in range(2):
        got = mixed_ranking(query, table, seen, target, k)
        assert_equal(got, brute_force(query, table, seen, target, k))
        assert torch.equal(got[0], plain(query, table, seen, target, k)[0])
        table[target[4], 0] = float("-inf")  # then user 4's target scores -inf: last among the rankable items
    assert got[0][4] == 1 + (mask_scores(query @ table.T, seen, target)[4] > float("-inf")).sum()


def test_k_beyond_the_rankable_items_pads_with_empty_slots() -> None:
    query, table, seen, target = random_case(5, 9, 12, 4, n_seen=6)
    got = mixed_ranking(query, table, seen, target, 40)
    assert_equal(got, brute_force(query, table, seen, target, 40))
    assert (got[2][:, 13:] == 0).all() and (got[1][:, 13:] == float("-inf")).all()


def test_an_empty_batch_gives_empty_results() -> None:
    query, table, seen, target = random_case(6, 0, 50, 4)
    ranks, vals, ids = mixed_ranking(query, table, seen, target, 3)
    assert ranks.shape == (0,) and vals.shape == ids.shape == (0, 3)


def test_error_bound_holds_for_this_machines_bf16_product() -> None:
    """|ỹ - (f - C)| <= A_b + u|ỹ| on every entry: the error model the exactness rests on."""
    for seed, scale in [(0, 1.0), (1, 1e-4), (2, 1e4)]:
        query, table, _, target = random_case(seed, 64, 3000, 64, scale=scale)
        mt = prepare_table(table)
        side = mixed._query_side(query, target, mt)
        y = mixed._bf16_product(side.aug, mt.aug, torch.empty(len(query), len(mt.aug), dtype=torch.bfloat16))
        y = y[:, : mt.n_rows].double()  # (B, V+1)
        f = dot_rows(query.unsqueeze(1), table.unsqueeze(0)).double()
        err = (y - (f - side.shift.unsqueeze(1))).abs()
        assert (err <= side.bound.unsqueeze(1) / 2 + mixed._U * y.abs()).all()  # even without the safety factor


def test_in_place_table_updates_are_not_served_from_the_cache() -> None:
    query, table, seen, target = random_case(8, 30, 400, 16)
    mixed_ranking(query, table, seen, target, 5)
    with torch.no_grad():
        table.mul_(-1.0)
    assert_equal(mixed_ranking(query, table, seen, target, 5), brute_force(query, table, seen, target, 5))


def test_bf16_rounding_upwards_never_undershoots() -> None:
    x = torch.cat([torch.rand(10_000, dtype=torch.float64) * 10.0 ** torch.randint(-30, 30, (10_000,)),
                   torch.tensor([1.0, 2.0**-20, 3.0])])  # fmt: skip
    bits = mixed._to_bf16_up(x)
    up = bits.view(torch.bfloat16).double()
    below = (bits - 1).view(torch.bfloat16).double()
    assert (up >= x).all() and (below < x).all()


@pytest.mark.parametrize("width", [1, 63, 64, 1000, 4097])
@pytest.mark.parametrize("k", [1, 5, 20, 300])
def test_fast_top_k_scored_equals_top_k_scored(width: int, k: int) -> None:
    gen = torch.Generator().manual_seed(width + k)
    ties = torch.randint(0, 6, (40, width), generator=gen).float()
    ties[ties == 0] = float("-inf")
    ties[:, 0] = float("-inf")
    ties[3] = float("-inf")  # a row with nothing rankable
    ties[5, width // 2] = float("nan")
    dense = torch.randn(40, width, generator=gen)
    for scores in (ties, dense, dense.bfloat16()):
        got, want = fast_top_k_scored(scores, k, block=16), top_k_scored(scores, k)
        assert torch.equal(got[1], want[1]) and torch.equal(got[0].nan_to_num(), want[0].nan_to_num())


def test_bf16_supported_answers_a_cached_bool() -> None:
    assert isinstance(bf16_supported(), bool) and bf16_supported() is bf16_supported()
    assert bf16_supported("mps") is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_equals_fp32_on_cuda() -> None:
    case = tuple(t.cuda() for t in random_case(2, 300, 5001, 64))
    got = mixed_ranking(*case, 20)
    assert_equal(got, brute_force(*case, 20))
