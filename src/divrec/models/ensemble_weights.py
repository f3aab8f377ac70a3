"""Ensemble member weights chosen on validation (``model.weights=val``): an exact search over a simplex grid.

Every candidate is a weight vector whose entries are multiples of ``1 / steps`` and sum to 1 (zeros included, so a
member may be dropped; ``steps = M`` contains the equal weights). All candidates are scored in **one pass** over the
validation rows: per batch of users, the members' normalised scores ``Z`` (B, M, V) are computed once and every
candidate's combined scores come from one product ``Z^T w`` (B, C, V), for the users whose target can reach the top
10 under some weighting only (``contested``: with more than 10 items at or above the target in every member, a user
adds 0 to every candidate; most users, for models at NDCG@10 ~ 0.05). Each candidate's validation NDCG@10 uses the
evaluator's ranking exactly (padding and seen items excluded, the target kept, pessimistic ties:
``rank = #{j rankable : s_j >= s_target}``), so the chosen weights' validation NDCG@10 equals what ``divrec eval``
then reports on validation (up to fp32 rounding of the weighted sums). The best candidate wins; exact ties go to
the one nearest the equal weights, then to the first in grid order (deterministic). Test is never read: like a
learned model's epoch, the weights are selected on validation, so the reported validation metric is optimistic and
test is the honest number.

Size: ``C(steps + M - 1, M - 1)`` candidates (4 members at steps 10: 286; 5 members: 1001); the pass costs about
``C`` comparisons per (contested user, item): measured figures in ``experiments/ensemble/README.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from divrec.data.types import EvalSplit
from divrec.metrics.ranking import mask_scores

log = logging.getLogger(__name__)

MAX_CANDIDATES = 2000  # above this the pass takes many minutes: the config is refused before any data
K = 10  # the selection metric: validation NDCG@10 (the default checkpoint monitor of learned runs)
BLOCK_FLOATS = 1 << 25  # (B, C, V) combined scores per batch: at most 128 MiB of fp32

MemberScores = Callable[[Tensor, Tensor], Tensor]  # (B, L) histories, (B,) users → (B, M, V) normalised scores


def n_candidates(members: int, steps: int) -> int:
    """Weight vectors of ``members`` entries in multiples of 1/steps summing to 1: C(steps + M - 1, M - 1)."""
    return math.comb(steps + members - 1, members - 1)


def compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Every tuple of ``parts`` non-negative integers summing to ``total``, in lexicographic order (largest first)."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in compositions(total - first, parts - 1):
            yield (first, *rest)


def simplex_grid(members: int, steps: int) -> Tensor:
    """(C, M) float64: every candidate weight vector, rows summing to 1."""
    return torch.tensor(list(compositions(steps, members)), dtype=torch.float64) / steps


def rankable_items(n_users: int, width: int, seen: Tensor, target: Tensor) -> Tensor:
    """(B, V) bool: the items the evaluator ranks (``mask_scores``: padding and seen items out, the target kept)."""
    return mask_scores(torch.zeros(n_users, width, device=seen.device), seen, target, inplace=True).isfinite()


def contested(scores: Tensor, rankable: Tensor, target: Tensor) -> Tensor:
    """(B,) bool: users whose target can reach the top K under some weight vector. An item at or above the
    target in every member is at or above it under every non-negative weighting, so a user with more than K such
    items (the target included) has rank > K for every candidate and adds 0 to every candidate's NDCG@K."""
    index = target.long().view(-1, 1, 1).expand(-1, scores.shape[1], 1)  # (B, M, 1)
    always_ahead = ((scores >= scores.gather(2, index)).all(1) & rankable).sum(1)  # (B,)
    return always_ahead <= K


def candidate_ndcg(scores: Tensor, grid: Tensor, seen: Tensor, target: Tensor) -> Tensor:
    """(B, M, V) member scores, (C, M) weights, (B, S) seen ids (0-padded), (B,) targets → (C,) summed NDCG@10."""
    rankable = rankable_items(scores.shape[0], scores.shape[2], seen, target)  # (B, V)
    keep = contested(scores, rankable, target)  # the other users add 0 to every candidate
    scores, rankable, target = scores[keep], rankable[keep], target[keep]
    combined = torch.einsum("bmv,cm->bcv", scores, grid.to(scores.dtype))  # (B', C, V)
    index = target.long().view(-1, 1, 1).expand(-1, combined.shape[1], 1)  # (B', C, 1)
    at_target = combined.gather(2, index)  # (B', C, 1)
    ahead = (combined >= at_target) & rankable.unsqueeze(1)  # (B', C, V): the target counts itself (rank >= 1)
    ranks = ahead.sum(2, dtype=torch.int32).double()  # (B', C) pessimistic 1-based ranks
    gains = torch.where(ranks <= K, 1.0 / torch.log2(ranks + 1.0), torch.zeros_like(ranks))  # (B', C)
    return gains.sum(0)  # (C,)


def select_weights(member_scores: MemberScores, split: EvalSplit, max_len: int, members: int, steps: int,
                   n_items: int) -> tuple[Tensor, float]:
    """The grid's best weight vector on ``split`` by NDCG@10: (weights (M,) float32, its NDCG@10)."""
    from divrec import names
    from divrec.data.datamodule import eval_tensors  # lazy: the models package does not import Lightning

    grid = simplex_grid(members, steps)  # (C, M)
    tensors = eval_tensors(split, max_len)
    rows = len(split)
    batch = max(1, BLOCK_FLOATS // (grid.shape[0] * (n_items + 1)))
    total = torch.zeros(grid.shape[0], dtype=torch.float64)
    for start in range(0, rows, batch):
        part = {key: value[start : start + batch] for key, value in tensors.items()}
        scores = member_scores(part[names.HISTORY], part[names.USER_INDEX])  # (B, M, V)
        total += candidate_ndcg(scores, grid, part[names.SEEN], part[names.TARGET])
    ndcg = total / max(rows, 1)  # (C,)
    best = ndcg.max()
    tied = torch.nonzero(ndcg == best).flatten()
    distance = (grid[tied] - 1.0 / members).pow(2).sum(1)  # nearest the equal weights among exact ties
    chosen = int(tied[int(distance.argmin())])
    log.info("ensemble weights chosen on validation over %d candidates: %s (val NDCG@10 %.4f; equal weights %s)",
             grid.shape[0], grid[chosen].tolist(), float(best), _equal_note(grid, ndcg, members))
    return grid[chosen].float(), float(best)


def _equal_note(grid: Tensor, ndcg: Tensor, members: int) -> str:
    equal = torch.nonzero((grid - 1.0 / members).abs().max(1).values < 1e-9).flatten()
    return f"{float(ndcg[equal[0]]):.4f}" if len(equal) else "not on this grid"
