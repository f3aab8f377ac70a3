"""Full-catalog ranking in item chunks: target ranks and a running top-K without a ``(B, n_items)`` score matrix.

The plain evaluation builds ``scores = query @ table.T`` for a whole batch, then ``mask_scores`` → ``target_ranks``
→ ``top_k_scored``. ``chunked_ranking`` gives exactly the same results with O(B x chunk_size) memory:

* the target's score comes from the same dot products as the table scores (``query @ table[target].T``);
* each chunk of columns is scored and masked like ``mask_scores`` (padding column 0 and seen items → ``-inf``,
  the target kept), its ``>= target score`` entries are counted (the pessimistic tie rule of ``target_ranks``,
  including its handling of a ``-inf``/NaN target score), and its own top-K is merged into the running top-K by
  (score descending, id ascending), the deterministic rule of ``top_k_scored``;
* the logsumexp of each masked chunk is folded into a running one (``logaddexp``): the full-catalog log-normaliser
  that softmax relevance of the re-rankers needs (equal to ``masked.logsumexp(1)`` up to float rounding).

Exactness assumes a column's score does not depend on which other columns share its matrix product (true of the
BLAS kernels torch uses; tests check it on random data and on exactly representable scores with ties).
"""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.metrics.ranking import order_by_score_then_id, top_k_scored

_NEG_INF = float("-inf")


def target_scores(query: Tensor, table: Tensor, target: Tensor) -> Tensor:
    """(B,) score of each user's target, as the same matrix product that scores the catalog computes it."""
    return (query @ table[target.long()].T).diagonal()  # (B, B) -> (B,); B is a batch, so this is cheap


def mask_chunk(
    scores: Tensor, start: int, seen: Tensor, target: Tensor | None = None, target_score: Tensor | None = None
) -> Tensor:
    """In place: ``mask_scores`` restricted to columns ``start .. start + c`` of ``(B, c)`` chunk scores
    (``mask_seen`` when there is no target to keep)."""
    c = scores.shape[1]
    if start == 0:
        scores[:, 0] = _NEG_INF  # the padding item
    if seen.numel():
        local = seen.long() - start  # (B, S)
        rows, cols = ((local >= 0) & (local < c)).nonzero(as_tuple=True)
        scores[rows, local[rows, cols]] = _NEG_INF
    if target is not None and target_score is not None:
        local_t = target.long() - start
        rows = ((local_t >= 0) & (local_t < c)).nonzero().squeeze(1)
        scores[rows, local_t[rows]] = target_score[rows]  # the target is never masked
    return scores


class RunningTopK:
    """The best ``k`` (score descending, id ascending) and the logsumexp of a user batch's scores, fed one
    ``(B, c)`` chunk of columns at a time."""

    def __init__(self, n: int, k: int, like: Tensor) -> None:
        self.k = k
        self.vals = torch.full((n, 0), _NEG_INF, dtype=like.dtype, device=like.device)
        self.ids = torch.zeros((n, 0), dtype=torch.long, device=like.device)
        self.lse = torch.full((n,), _NEG_INF, dtype=like.dtype, device=like.device)

    def add(self, scores: Tensor, start: int) -> None:
        self.lse = torch.logaddexp(self.lse, scores.logsumexp(1))
        vals, ids = top_k_scored(scores, min(self.k, scores.shape[1]))
        ids = torch.where(vals > _NEG_INF, ids + start, ids)  # local → global ids; empty slots stay 0
        self.vals, self.ids = merge_top_k(self.vals, self.ids, vals, ids, self.k)

    def result(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, k)`` scores and ids (``-inf`` / 0 beyond the rankable items) and the ``(B,)`` logsumexp."""
        pad = self.k - self.vals.shape[1]
        vals = torch.nn.functional.pad(self.vals, (0, pad), value=_NEG_INF)
        return vals, torch.nn.functional.pad(self.ids, (0, pad), value=0), self.lse


def check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")


@torch.no_grad()
def chunked_ranking(
    query: Tensor, table: Tensor, seen: Tensor, target: Tensor, k: int, chunk_size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Ranks, top-K and log-normaliser of every user against every item, ``chunk_size`` items at a time.

    Args:
        query: ``(B, D)`` user representations; table: ``(V+1, D)`` item table, row 0 = padding.
        seen: ``(B, S)`` item ids to exclude (0-padded); target: ``(B,)`` target ids in ``1..V``.
    Returns:
        ``(B,)`` ranks equal to ``target_ranks(mask_scores(query @ table.T, seen, target), target)`` and the
        ``(B, k)`` scores and ids equal to ``top_k_scored`` of those masked scores, and the ``(B,)`` logsumexp of
        those masked scores.
    """
    check_chunk_size(chunk_size)
    ts = target_scores(query, table, target)  # (B,)
    ok = ts > _NEG_INF  # False for -inf and NaN (ranked last among rankable items, as in target_ranks)
    threshold = torch.where(ok, ts, torch.full_like(ts, torch.finfo(ts.dtype).min))[:, None]  # (B, 1)
    count = torch.zeros(len(query), dtype=torch.long, device=query.device)
    best = RunningTopK(len(query), k, query)
    for start in range(0, table.shape[0], chunk_size):
        scores = mask_chunk(query @ table[start : start + chunk_size].T, start, seen, target, ts)  # (B, c)
        count += (scores >= threshold).sum(1, dtype=torch.int32)
        best.add(scores, start)
    return count + (~ok).long(), *best.result()


@torch.no_grad()
def chunked_top_k(query: Tensor, table: Tensor, seen: Tensor, k: int, chunk_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Recommendation without a ``(B, V)`` score matrix: the ``(B, k)`` scores and ids equal to ``top_k_scored``
    of ``mask_seen(query @ table.T, seen)`` and their ``(B,)`` logsumexp, ``chunk_size`` items at a time."""
    check_chunk_size(chunk_size)
    best = RunningTopK(len(query), k, query)
    for start in range(0, table.shape[0], chunk_size):
        best.add(mask_chunk(query @ table[start : start + chunk_size].T, start, seen), start)  # (B, c)
    return best.result()


def merge_top_k(vals_a: Tensor, ids_a: Tensor, vals_b: Tensor, ids_b: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The best ``k`` of two (B, ·) candidate lists by (score descending, id ascending)."""
    vals, ids = order_by_score_then_id(torch.cat([vals_a, vals_b], 1), torch.cat([ids_a, ids_b], 1))
    return vals[:, :k], ids[:, :k]
