"""Every evaluation metric synchronises exactly across processes: per-user values are concatenated, item-exposure
counts are summed, nothing is averaged. ``merge_state`` applies the same reductions as the multi-process sync, so
two uneven halves merged must equal one pass over all users (the 2-process CLI check is in tests/test_scale_out.py).
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat, dim_zero_sum

from divrec.metrics import DiversityEvaluator, RankingEvaluator, top_k

N_ITEMS, N_USERS, KS = 30, 41, (1, 5, 10)


def evaluators() -> tuple[RankingEvaluator, DiversityEvaluator]:
    g = torch.Generator().manual_seed(0)
    offsets = torch.arange(0, 2 * (N_ITEMS + 1) + 1, 2)  # two categories per item (id 0 included, unused)
    ids = torch.randint(0, 6, (2 * (N_ITEMS + 1),), generator=g)
    ranking = RankingEvaluator("test", N_ITEMS, KS)
    diversity = DiversityEvaluator(
        "test", N_ITEMS, KS, item_category_offsets=offsets.numpy(), item_category_ids=ids.numpy(), n_categories=6,
        popularity=torch.randint(0, 50, (N_ITEMS + 1,), generator=g).numpy(),
        embeddings=torch.randn(N_ITEMS + 1, 4, generator=g),
    )
    return ranking, diversity


def metric_modules(evaluator: torch.nn.Module) -> dict[str, Metric]:
    return {name: m for name, m in evaluator.named_modules() if isinstance(m, Metric)}


def test_every_metric_state_reduces_by_cat_or_integer_sum() -> None:
    ranking, diversity = evaluators()
    metrics = metric_modules(ranking) | metric_modules(diversity)
    assert len(metrics) > 40
    for name, metric in metrics.items():
        for state, reduce_fx in metric._reductions.items():
            default = metric._defaults[state]
            if isinstance(default, list):
                assert reduce_fx is dim_zero_cat, (name, state)
            else:  # a count vector: summing integers is exact in any order
                assert reduce_fx is dim_zero_sum and not default.is_floating_point(), (name, state)


def feed(ranking: RankingEvaluator, diversity: DiversityEvaluator, scores: torch.Tensor, rows: range) -> None:
    idx = torch.tensor(list(rows))
    targets = idx % N_ITEMS + 1
    seen = torch.stack([(idx * 7) % N_ITEMS + 1, (idx * 3) % N_ITEMS + 1], dim=1)
    masked = scores[idx].clone()
    ranking.update(masked, targets, seen, idx, inplace=False)
    diversity.update(top_k(masked, max(KS)), histories=seen)


def test_two_uneven_shards_merged_equal_one_pass() -> None:
    scores = torch.randn(N_USERS, N_ITEMS + 1, generator=torch.Generator().manual_seed(1))
    whole, halves = evaluators(), [evaluators(), evaluators()]
    feed(*whole, scores, range(N_USERS))
    feed(*halves[0], scores, range(0, N_USERS, 2))  # 21 users
    feed(*halves[1], scores, range(1, N_USERS, 2))  # 20 users
    for i in range(2):
        mine, theirs = metric_modules(halves[0][i]), metric_modules(halves[1][i])
        for name, metric in mine.items():
            metric.merge_state(theirs[name])
    expected = whole[0].compute() | whole[1].compute()
    merged = halves[0][0].compute() | halves[0][1].compute()
    assert merged.keys() == expected.keys()
    assert {k for k in expected if not math.isclose(merged[k], expected[k], abs_tol=1e-9)} == set()
