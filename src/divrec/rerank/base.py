"""The re-ranker interface and the batched greedy-selection helpers shared by every re-ranker.

Contract of ``Reranker.forward(scores, candidates, k, context)``:

* ``scores``: ``(B, N)`` floating relevance scores of the candidates (any order, sorted or not; higher = better).
  A candidate is *invalid* when its score is ``-inf`` or NaN (seen items, padding) or its id is ``<= 0``.
  Valid scores must be finite.
* ``candidates``: ``(B, N)`` int item ids (``1..n_items``; 0 = padding).
* ``k``: list length, ``>= 1`` (may exceed ``N``).
* ``context``: optional ``RerankContext`` (user histories for calibration, a live embedding table).
* returns ``(B, k)`` int64 item ids, best first. Invalid candidates are never selected; when a user has fewer than
  ``k`` valid candidates the remaining slots are 0 (as ``divrec.metrics.top_k`` pads), which every metric ignores.

All selection is batched over users: each of the ``k`` greedy steps is a handful of ``(B, N)`` tensor ops.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from divrec.data.types import ProcessedData
from divrec.metrics.ranking import top_k, top_k_scored

_NEG_INF = float("-inf")


@dataclass
class RerankContext:
    """Per-batch side information. histories: ``(B, L)`` item ids of each user's history, 0 = padding (needed by
    ``Calibrated``). item_embeddings: ``(n_items+1, D)`` table overriding a re-ranker's own (e.g. the model's).
    log_normalizer: ``(B, 1)`` logsumexp of each user's scores over the whole (masked) catalog, so softmax relevance
    is the model's full-catalog probability rather than one renormalised to the candidates (``rerank_lists`` sets
    it)."""

    histories: Tensor | None = None
    item_embeddings: Tensor | None = None
    log_normalizer: Tensor | None = None


def valid_mask(scores: Tensor, candidates: Tensor) -> Tensor:
    """``(B, N)`` bool: score neither ``-inf`` nor NaN, and item id ``> 0``."""
    return (scores > _NEG_INF) & (candidates > 0)


def normalize_relevance(scores: Tensor, valid: Tensor) -> Tensor:
    """``(B, N)`` per-user min–max normalised relevance in ``[0, 1]`` over the valid candidates.

    ``rel = (s - min_valid) / (max_valid - min_valid)``; a user whose valid scores are all equal gets ``rel = 1``;
    invalid entries get 0. Monotone per user, so it never changes the plain ranking.
    """
    big = torch.finfo(scores.dtype).max
    safe = torch.where(valid, scores, torch.zeros_like(scores))
    lo = torch.where(valid, scores, torch.full_like(scores, big)).amin(1, keepdim=True)  # (B, 1)
    hi = torch.where(valid, scores, torch.full_like(scores, -big)).amax(1, keepdim=True)  # (B, 1)
    span = hi - lo
    rel = torch.where(span > 0, (safe - lo) / span.clamp_min(torch.finfo(scores.dtype).tiny), torch.ones_like(safe))
    return torch.where(valid, rel, torch.zeros_like(rel))


def softmax_relevance(scores: Tensor, valid: Tensor, log_normalizer: Tensor | None = None) -> Tensor:
    """``(B, N)`` the model's probabilities of the valid candidates (0 elsewhere): ``exp(s - log_normalizer)`` with
    the full-catalog ``(B, 1)`` logsumexp when given, else the softmax over the valid candidates."""
    masked = torch.where(valid, scores, torch.full_like(scores, _NEG_INF))
    full = log_normalizer is not None
    probs = (masked - log_normalizer.to(scores.dtype)).exp() if full else torch.softmax(masked, dim=1)
    return torch.where(valid, probs, torch.zeros_like(probs)).nan_to_num(0.0)


Relevance = Literal["minmax", "softmax"]


def relevance(kind: Relevance, scores: Tensor, valid: Tensor, context: RerankContext) -> Tensor:
    """``(B, N)`` relevance of the candidates: ``"minmax"`` (``normalize_relevance``, per-user ``[0, 1]``) or
    ``"softmax"`` (``softmax_relevance``: probabilities, comparable across users)."""
    if kind == "softmax":
        return softmax_relevance(scores, valid, context.log_normalizer)
    return normalize_relevance(scores, valid)


def pick(gain: Tensor, available: Tensor, fallback: Tensor) -> Tensor:
    """``(B,)`` argmax of ``gain`` over the ``available`` candidates, -1 where none is available.

    Where every available candidate has gain ``-inf``/NaN (e.g. a DPP kernel of exhausted rank), the argmax of
    ``fallback`` (the scores) over the available candidates is taken instead. Ties: the lowest position wins.
    """
    masked = torch.where(available & ~gain.isnan(), gain, torch.full_like(gain, _NEG_INF))
    best, pos = masked.max(1)
    fb = torch.where(available, fallback, torch.full_like(fallback, _NEG_INF)).argmax(1)
    pos = torch.where(best > _NEG_INF, pos, fb)
    return torch.where(available.any(1), pos, torch.full_like(pos, -1))


def take(available: Tensor, pos: Tensor) -> None:
    """Mark the ``(B,)`` picked positions as taken, in place. A row with ``pos = -1`` has nothing available, so
    clearing its position 0 is a no-op."""
    available.scatter_(1, pos.clamp_min(0).unsqueeze(1), False)


def positions_to_items(candidates: Tensor, pos: Tensor) -> Tensor:
    """``(B, k)`` item ids from ``(B, k)`` positions into the candidates, 0 where the position is -1."""
    items = candidates.long().gather(1, pos.clamp_min(0))
    return torch.where(pos >= 0, items, torch.zeros_like(items))


Order = Literal["greedy", "score"]


def order_by_score(pos: Tensor, scores: Tensor, block: int = 10) -> Tensor:
    """``(B, k)`` the picked positions re-sorted by descending score within consecutive blocks of ``block`` slots
    (empty slots, -1, last). Each block keeps the greedy's items, so a list prefix of a multiple of ``block`` items
    is exactly the greedy selection of that length (what metrics@10 of a longer evaluation list then see), and set
    metrics (ILD, coverage) of those prefixes are unchanged; a likely item moves ahead of a diverse but unlikely one.
    """
    picked = scores.gather(1, pos.clamp_min(0))
    key = torch.where(pos >= 0, picked, torch.full_like(picked, _NEG_INF)).nan_to_num(nan=_NEG_INF)
    by_score = torch.sort(key, dim=1, descending=True, stable=True).indices  # (B, k)
    blocks = torch.arange(pos.shape[1], device=pos.device).div(block, rounding_mode="floor")  # (k,)
    by_block = torch.sort(blocks[by_score], dim=1, stable=True).indices  # score order kept inside each block
    return pos.gather(1, by_score.gather(1, by_block))


def check_options(unit: dict[str, float] | None = None, **choices: tuple[str, tuple[str, ...]]) -> None:
    """Shared argument checks of the re-rankers: every ``unit`` value in [0, 1], every choice ``name=(value,
    allowed)`` among its allowed values; one ValueError naming what is wrong."""
    problems = [f"{n} must lie in [0, 1], got {v}" for n, v in (unit or {}).items() if not 0.0 <= v <= 1.0]
    problems += [f"{n} must be one of {'|'.join(ok)}, got {v!r}" for n, (v, ok) in choices.items() if v not in ok]
    if problems:
        raise ValueError("; ".join(problems))


class Reranker(nn.Module):
    """Base class; subclasses implement ``select`` (positions), ``forward`` validates and maps them to item ids.

    ``order``: ``"greedy"`` keeps the selection order; ``"score"`` re-sorts the selected items by model score within
    blocks of ``order_block`` slots (``order_by_score``): the greedy pass only decides *which* items form each block
    (default 10: the top-10 is the greedy's 10-item set, sorted by score)."""

    def __init__(self, order: Order = "greedy", order_block: int = 10) -> None:
        super().__init__()
        if order not in ("greedy", "score") or order_block < 1:
            raise ValueError(f"order must be 'greedy' or 'score' and order_block >= 1, got {order!r}, {order_block}")
        self.order, self.order_block = order, int(order_block)

    def forward(self, scores: Tensor, candidates: Tensor, k: int, context: RerankContext | None = None) -> Tensor:
        if scores.dim() != 2 or candidates.shape != scores.shape:
            raise ValueError(
                f"scores and candidates must both be (B, N), got {tuple(scores.shape)}, {tuple(candidates.shape)}"
            )
        if not scores.is_floating_point():
            raise TypeError(f"scores must be floating point, got {scores.dtype}")
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        scores = scores.detach()
        valid = valid_mask(scores, candidates)
        pos = self.select(scores, candidates, valid, int(k), context or RerankContext())  # (B, k)
        if self.order == "score":
            pos = order_by_score(pos, scores, self.order_block)
        return positions_to_items(candidates, pos)

    def select(self, scores: Tensor, candidates: Tensor, valid: Tensor, k: int, context: RerankContext) -> Tensor:
        """``(B, k)`` int64 positions into the N candidates, best first, -1 for empty slots."""
        raise NotImplementedError

    def bind(self, data: ProcessedData) -> None:
        """Dataset facts (item popularity, categories, user histories), once the data is loaded and before any
        list is re-ranked: the same hook name as models, objectives and samplers. Default: nothing."""


class NoRerank(Reranker):
    """The plain ranking: top-k valid candidates by score (ties: ``torch.topk``'s order). Accepts (and ignores) the
    item features the pipeline hands every re-ranker."""

    def __init__(self, item_categories: Tensor | None = None, item_embeddings: Tensor | None = None) -> None:
        super().__init__()

    def select(self, scores: Tensor, candidates: Tensor, valid: Tensor, k: int, context: RerankContext) -> Tensor:
        masked = torch.where(valid, scores, torch.full_like(scores, _NEG_INF))
        n = min(k, scores.shape[1])
        vals, pos = masked.topk(n, dim=1)
        pos = torch.where(vals > _NEG_INF, pos, torch.full_like(pos, -1))
        return nn.functional.pad(pos, (0, k - n), value=-1)


def greedy_loop(k: int, available: Tensor) -> tuple[Tensor, Tensor]:
    """Allocates the ``(B, k)`` output positions (all -1) and a private copy of ``available``."""
    return torch.full((available.shape[0], k), -1, dtype=torch.long, device=available.device), available.clone()


def rerank_lists(
    masked: Tensor, k: int, reranker: Reranker | None, n_candidates: int, context: RerankContext | None = None
) -> Tensor:
    """``(B, k)`` final lists from ``(B, V)`` already-masked full-catalog scores: the plain top-k, or ``reranker``
    applied to the top ``n_candidates`` (0 = empty slot)."""
    if reranker is None:
        return top_k(masked, k)
    cand_scores, candidates = top_k_scored(masked, min(max(n_candidates, k), masked.shape[1]))  # (B, N)
    context = replace(context or RerankContext(), log_normalizer=masked.logsumexp(1, keepdim=True))
    return reranker(cand_scores, candidates, k, context)


def rerank_candidates(
    cand_scores: Tensor, candidates: Tensor, k: int, reranker: Reranker | None, context: RerankContext | None = None
) -> Tensor:
    """``(B, k)`` final lists from each user's ``(B, N)`` best candidates (scores and ids, best first, as
    ``top_k_scored`` gives them): the first k, or ``reranker`` applied to all N (what ``rerank_lists`` does after
    its own top-N). ``context.log_normalizer`` (for softmax relevance) must come from the caller here."""
    if reranker is None:
        return candidates[:, :k]
    return reranker(cand_scores, candidates, k, context)


def list_ranks(lists: Tensor, target: Tensor) -> Tensor:
    """``(B,)`` 1-based position of each target in its ``(B, k)`` list; ``k + 1`` where it is absent (a miss at
    every cut-off <= k)."""
    hit = lists == target[:, None]  # (B, k)
    first = hit.int().argmax(dim=1) + 1
    return torch.where(hit.any(dim=1), first, torch.full_like(first, lists.shape[1] + 1))
