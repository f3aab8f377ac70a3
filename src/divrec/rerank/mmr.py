"""Maximal Marginal Relevance (Carbonell & Goldstein 1998) and its sum variant (MaxSum diversification), batched."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from divrec.rerank.base import (
    Order,
    Relevance,
    RerankContext,
    Reranker,
    check_options,
    greedy_loop,
    pick,
    relevance,
    take,
)
from divrec.rerank.similarity import ItemSimilarity, SimilarityKind, SimilarityRows

Aggregate = Literal["max", "sum"]


def mmr_greedy(
    scores: Tensor,
    rows: SimilarityRows,
    valid: Tensor,
    k: int,
    lambda_: float,
    rel: Tensor | None = None,
    aggregate: Aggregate = "max",
) -> Tensor:
    r"""``(B, k)`` positions (-1 = empty) chosen greedily by MMR.

    Step :math:`t` picks :math:`\arg\max_{i \notin Y} \lambda\, \mathrm{rel}_i - (1-\lambda)\, D_i` with
    :math:`D_i = \max_{j \in Y} S_{ij}` (``aggregate="max"``, classic MMR; 0 over the empty set, so the first pick
    is the most relevant item) or :math:`D_i = \sum_{j \in Y} S_{ij}` (``"sum"``: the marginal loss of intra-list
    diversity, i.e. greedy ILD). ``rel`` defaults to the per-user min–max normalised scores
    (``normalize_relevance``).
    """
    if rel is None:
        rel = relevance("minmax", scores, valid, RerankContext())
    out, available = greedy_loop(k, valid)
    penalty = torch.zeros_like(rel)  # (B, N)
    for t in range(k):
        pos = pick(lambda_ * rel - (1.0 - lambda_) * penalty, available, scores)  # (B,)
        out[:, t] = pos
        take(available, pos)
        row = rows.row(pos).to(rel.dtype)  # (B, N)
        first_or_sum = t == 0 or aggregate == "sum"
        penalty = (row if t == 0 else penalty + row) if first_or_sum else torch.maximum(penalty, row)
    return out


class MMR(Reranker):
    """MMR re-ranker: ``lambda_`` in ``[0, 1]`` (1 = plain ranking), ``similarity`` from item categories (cosine of
    multi-hot, or ``"jaccard"``) or item embeddings (cosine); see ``mmr_greedy`` and ``divrec.rerank.similarity``.
    ``relevance``: ``"minmax"`` or ``"softmax"`` (model probabilities; then ``lambda_`` close to 1 balances them),
    ``aggregate``: ``"max"`` or ``"sum"``; ``order``: see ``Reranker``."""

    def __init__(
        self,
        lambda_: float = 0.5,
        similarity: SimilarityKind = "categories",
        item_categories: Tensor | None = None,
        item_embeddings: Tensor | None = None,
        order: Order = "greedy",
        relevance: Relevance = "minmax",
        aggregate: Aggregate = "max",
    ) -> None:
        super().__init__(order)
        check_options(
            {"lambda_": lambda_}, relevance=(relevance, ("minmax", "softmax")), aggregate=(aggregate, ("max", "sum"))
        )
        self.lambda_, self.relevance, self.aggregate = float(lambda_), relevance, aggregate
        self.similarity = ItemSimilarity(similarity, item_categories, item_embeddings)

    def select(self, scores: Tensor, candidates: Tensor, valid: Tensor, k: int, context: RerankContext) -> Tensor:
        rows = self.similarity.rows(candidates, context.item_embeddings)
        rel = relevance(self.relevance, scores, valid, context)
        return mmr_greedy(scores, rows, valid, k, self.lambda_, rel, self.aggregate)

    def extra_repr(self) -> str:
        return (
            f"lambda_={self.lambda_}, similarity={self.similarity.kind!r}, relevance={self.relevance!r}, "
            f"aggregate={self.aggregate!r}, order={self.order!r}"
        )
