"""Maximal Marginal Relevance (Carbonell & Goldstein 1998), batched over users."""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.rerank.base import Order, RerankContext, Reranker, greedy_loop, normalize_relevance, pick, take
from divrec.rerank.similarity import ItemSimilarity, SimilarityKind, SimilarityRows


def mmr_greedy(scores: Tensor, rows: SimilarityRows, valid: Tensor, k: int, lambda_: float) -> Tensor:
    r"""``(B, k)`` positions (-1 = empty) chosen greedily by MMR.

    Step :math:`t` picks :math:`\arg\max_{i \notin Y} \lambda\, \mathrm{rel}_i - (1-\lambda) \max_{j \in Y} S_{ij}`
    with :math:`\mathrm{rel}` the per-user min–max normalised scores in ``[0, 1]`` (``normalize_relevance``) and the
    max over the empty set taken as 0 (the first pick is the most relevant item).
    """
    rel = normalize_relevance(scores, valid)  # (B, N)
    out, available = greedy_loop(k, valid)
    max_sim = torch.zeros_like(rel)  # (B, N)
    for t in range(k):
        pos = pick(lambda_ * rel - (1.0 - lambda_) * max_sim, available, scores)  # (B,)
        out[:, t] = pos
        take(available, pos)
        row = rows.row(pos).to(rel.dtype)  # (B, N)
        max_sim = row if t == 0 else torch.maximum(max_sim, row)
    return out


class MMR(Reranker):
    """MMR re-ranker: ``lambda_`` in ``[0, 1]`` (1 = plain ranking), ``similarity`` from item categories (cosine of
    multi-hot) or item embeddings (cosine); see ``mmr_greedy`` and ``divrec.rerank.similarity``."""

    def __init__(
        self,
        lambda_: float = 0.5,
        similarity: SimilarityKind = "categories",
        item_categories: Tensor | None = None,
        item_embeddings: Tensor | None = None,
        order: Order = "greedy",
    ) -> None:
        super().__init__(order)
        if not 0.0 <= lambda_ <= 1.0:
            raise ValueError(f"lambda_ must lie in [0, 1], got {lambda_}")
        self.lambda_ = float(lambda_)
        self.similarity = ItemSimilarity(similarity, item_categories, item_embeddings)

    def select(self, scores: Tensor, candidates: Tensor, valid: Tensor, k: int, context: RerankContext) -> Tensor:
        rows = self.similarity.rows(candidates, context.item_embeddings)
        return mmr_greedy(scores, rows, valid, k, self.lambda_)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}, similarity={self.similarity.kind!r}"
