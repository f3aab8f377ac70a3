r"""xQuAD (Santos, Macdonald & Ounis, WWW 2010) over item categories as aspects, batched over users.

Greedy step :math:`t` adds

.. math:: \arg\max_{i \notin Y} (1-\lambda)\, P(i \mid u) + \lambda \sum_c P(c \mid u)\, P(i \mid c)
          \prod_{j \in Y} \bigl(1 - P(j \mid c)\bigr)

with binary :math:`P(i \mid c) = \mathbb{1}[c \in C_i]` (as in Vargas & Castells' recommender adaptation), so the
product is 1 while category :math:`c` is still uncovered by the list and 0 after: the diversity term is the user's
probability mass of the *new* categories an item brings (a coverage objective).

* :math:`P(i \mid u)` (``relevance``): ``"softmax"`` = the model's probabilities (``softmax_relevance``: over the
  whole catalog when the context carries its normaliser, as ``rerank_lists`` does; else over the candidates);
  ``"minmax"`` = per-user min–max normalised scores (``normalize_relevance``), as MMR uses. Softmax makes the
  trade-off adaptive: a user whose probability mass is spread thin loses little expected accuracy from a diverse
  list, a confident one keeps the top items.
* :math:`P(c \mid u)` (``aspects``): ``"candidates"`` = the model's category distribution over the candidates,
  :math:`\sum_i P(i \mid u)\, \mathbb{1}[c \in C_i] / |C_i|`; ``"history"`` = the category distribution of the
  user's history (``context.histories``, as in ``divrec.metrics.category_distribution``).

``lambda_ = 0`` is the plain ranking (ties aside). Each step is one gather over the ``(B, N, S)`` category ids of the
candidates (S = most categories per item), never a ``(B, N, C)`` multi-hot.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from divrec.metrics.diversity import category_distribution, category_slots
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

Aspects = Literal["candidates", "history"]


def xquad_greedy(
    scores: Tensor, rel: Tensor, slots: Tensor, aspect: Tensor, valid: Tensor, k: int, lambda_: float
) -> Tensor:
    """``(B, k)`` positions (-1 = empty) of the greedy xQuAD selection (module docstring).

    Args:
        scores: ``(B, N)`` model scores (fallback order). rel: ``(B, N)`` :math:`P(i \\mid u)`.
        slots: ``(B, N, S)`` category ids of each candidate, padded with the sentinel ``C``.
        aspect: ``(B, C + 1)`` :math:`P(c \\mid u)`, column ``C`` (the sentinel) 0.
    """
    out, available = greedy_loop(k, valid)
    b, n, s = slots.shape
    flat = slots.reshape(b, n * s)
    uncovered = aspect.clone()  # (B, C+1): P(c|u) while c is uncovered, 0 once covered
    for t in range(k):
        novelty = uncovered.gather(1, flat).view(b, n, s).sum(-1)  # (B, N)
        pos = pick((1.0 - lambda_) * rel + lambda_ * novelty, available, scores)  # (B,)
        out[:, t] = pos
        take(available, pos)
        if t + 1 < k:
            cats = slots.gather(1, pos.clamp_min(0).view(b, 1, 1).expand(b, 1, s)).squeeze(1)  # (B, S)
            keep = (pos < 0).unsqueeze(1).to(uncovered.dtype)  # rows with nothing picked cover nothing
            uncovered.scatter_(1, cats, uncovered.gather(1, cats) * keep)
    return out


class XQuAD(Reranker):
    """xQuAD re-ranker over item categories (see the module docstring).

    Args:
        item_categories: ``(n_items+1, C)`` multi-hot (``divrec.metrics.categories_multi_hot``).
        lambda_: trade-off in ``[0, 1]``; 0 = plain ranking.
        relevance: ``"softmax"`` or ``"minmax"`` (:math:`P(i \\mid u)`).
        aspects: ``"candidates"`` or ``"history"`` (:math:`P(c \\mid u)`; ``"history"`` needs ``context.histories``).
        item_embeddings: accepted and ignored (the pipeline hands every re-ranker its item features).
    """

    slots: Tensor

    def __init__(
        self,
        item_categories: Tensor,
        lambda_: float = 0.5,
        relevance: Relevance = "softmax",
        aspects: Aspects = "candidates",
        item_embeddings: Tensor | None = None,
        order: Order = "greedy",
    ) -> None:
        super().__init__(order)
        check_options(
            {"lambda_": lambda_},
            relevance=(relevance, ("softmax", "minmax")),
            aspects=(aspects, ("candidates", "history")),
        )
        if item_categories is None or item_categories.dim() != 2:
            raise ValueError("XQuAD needs item_categories (n_items+1, C)")
        self.lambda_, self.relevance, self.aspects = float(lambda_), relevance, aspects
        self.n_categories = int(item_categories.shape[1])
        self.register_buffer("multi_hot", item_categories.bool(), persistent=False)
        self.register_buffer("slots", category_slots(item_categories.bool()), persistent=False)

    def select(self, scores: Tensor, candidates: Tensor, valid: Tensor, k: int, context: RerankContext) -> Tensor:
        dtype = scores.dtype if scores.dtype == torch.float64 else torch.float32
        s = scores.to(dtype)
        rel = relevance(self.relevance, s, valid, context)
        slots = self.slots.to(candidates.device)[candidates.long()]  # (B, N, S)
        aspect = self._aspects(rel, slots, valid, context)
        return xquad_greedy(s, rel, slots, aspect, valid, k, self.lambda_)

    def _aspects(self, rel: Tensor, slots: Tensor, valid: Tensor, context: RerankContext) -> Tensor:
        """``(B, C + 1)`` :math:`P(c \\mid u)` with a zero sentinel column."""
        b, c = rel.shape[0], self.n_categories
        if self.aspects == "history":
            if context.histories is None:
                raise ValueError("XQuAD(aspects='history') needs context.histories (B, L)")
            dist, _ = category_distribution(context.histories.to(rel.device), self.multi_hot, rel.dtype, self.slots)
            return torch.cat([dist, dist.new_zeros(b, 1)], dim=1)
        weight = rel / rel.sum(1, keepdim=True).clamp_min(torch.finfo(rel.dtype).tiny)  # (B, N) sums to 1
        sizes = (slots < c).sum(-1, keepdim=True).clamp_min(1).to(rel.dtype)  # (B, N, 1)
        mass = (weight * valid.to(rel.dtype)).unsqueeze(-1) / sizes  # (B, N, 1)
        aspect = torch.zeros(b, c + 1, dtype=rel.dtype, device=rel.device)
        aspect.scatter_add_(1, slots.reshape(b, -1), mass.expand(slots.shape).reshape(b, -1))
        aspect[:, c] = 0.0
        return aspect

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}, relevance={self.relevance!r}, aspects={self.aspects!r}"
