"""``ensemble_weights``: the simplex grid and the one-pass NDCG@10 of every candidate weight vector."""

from __future__ import annotations

import torch

from divrec.models.ensemble_weights import candidate_ndcg, n_candidates, simplex_grid


def brute_force_ndcg(scores: torch.Tensor, grid: torch.Tensor, seen: torch.Tensor, target: torch.Tensor) -> list[float]:
    """Summed NDCG@10 per candidate, one user and one candidate at a time (no pruning)."""
    totals = []
    for w in grid.float():
        total = 0.0
        for u in range(scores.shape[0]):
            s = (w[:, None] * scores[u]).sum(0)  # (V,)
            rankable = torch.ones_like(s, dtype=torch.bool)
            rankable[0] = False
            rankable[seen[u]] = False
            rankable[target[u]] = True
            rank = int(((s >= s[target[u]]) & rankable).sum())
            total += 1.0 / torch.log2(torch.tensor(rank + 1.0)).item() if rank <= 10 else 0.0
        totals.append(total)
    return totals


def test_pruned_candidate_ndcg_equals_brute_force_with_ties_and_seen_targets() -> None:
    torch.manual_seed(0)
    users, members, items = 48, 3, 200
    scores = torch.randn(users, members, items)
    scores[:, 1] = scores[:, 0] + 0.3 * torch.randn(users, items)  # two correlated members
    scores[:, 2] = torch.randint(0, 3, (users, items)).float()  # a member with many ties (like EASE's zeros)
    target = torch.randint(1, items, (users,))
    scores[torch.arange(users), :, target] += torch.rand(users, 1) * 3  # some targets near the top
    seen = torch.randint(0, items, (users, 6))
    seen[:5, 0] = target[:5]  # re-consumed targets stay rankable
    grid = simplex_grid(members, 4)
    got = candidate_ndcg(scores, grid, seen, target)
    torch.testing.assert_close(got, torch.tensor(brute_force_ndcg(scores, grid, seen, target), dtype=torch.float64))
    assert got.max() > got.min() > 0  # the weights matter on this data


def test_simplex_grid_holds_every_composition_once() -> None:
    grid = simplex_grid(3, 3)
    assert grid.shape == (n_candidates(3, 3), 3) == (10, 3)
    torch.testing.assert_close(grid.sum(1), torch.ones(10, dtype=torch.float64))
    assert len({tuple(r) for r in grid.tolist()}) == 10 and [1 / 3] * 3 in grid.tolist()
    assert simplex_grid(2, 2).tolist() == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
