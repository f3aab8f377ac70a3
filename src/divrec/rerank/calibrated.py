"""Calibrated recommendations (Steck, RecSys 2018), greedy and batched over users."""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.metrics.diversity import calibration_kl, category_distribution
from divrec.rerank.base import RerankContext, Reranker, check_options, greedy_loop, normalize_relevance, pick, take


def calibrated_greedy(
    scores: Tensor, item_dist: Tensor, p: Tensor, valid: Tensor, k: int, lambda_: float, alpha: float
) -> Tensor:
    r"""``(B, k)`` positions (-1 = empty) greedily maximising Steck's objective over the growing list :math:`Y`.

    :math:`f(Y) = (1-\lambda) \sum_{i \in Y} \mathrm{rel}_i - \lambda\, \mathrm{KL}(p \| \tilde q(Y))`; step :math:`t`
    adds :math:`\arg\max_i f(Y \cup \{i\})`. :math:`\mathrm{rel}` = per-user min–max normalised scores in
    ``[0, 1]``; :math:`q(Y)` = mean over the categorised items of :math:`Y` of their category distributions,
    :math:`\tilde q = (1-\alpha) q + \alpha p` (same definitions as ``divrec.metrics.Miscalibration``).

    Args:
        item_dist: ``(B, N, C)`` each candidate's category distribution (rows sum to 1, or 0 if uncategorised).
        p: ``(B, C)`` the user's history category distribution (all zeros: no calibration term).
    """
    rel = normalize_relevance(scores, valid).to(item_dist.dtype)  # (B, N)
    has_cat = (item_dist.sum(-1) > 0).to(item_dist.dtype)  # (B, N)
    out, available = greedy_loop(k, valid)
    q_sum = torch.zeros_like(p)  # (B, C)
    n = torch.zeros_like(p[:, 0])  # (B,)
    p_n = p.unsqueeze(1).expand_as(item_dist)  # (B, N, C)
    for t in range(k):
        denom = (n.unsqueeze(1) + has_cat).clamp_min(1).unsqueeze(2)  # (B, N, 1)
        q_cand = (q_sum.unsqueeze(1) + item_dist) / denom  # (B, N, C)
        gain = (1.0 - lambda_) * rel - lambda_ * calibration_kl(p_n, q_cand, alpha) if lambda_ > 0 else rel
        pos = pick(gain, available, scores)  # (B,)
        out[:, t] = pos
        take(available, pos)
        ok = (pos >= 0).to(p.dtype).unsqueeze(1)  # (B, 1)
        idx = pos.clamp_min(0).view(-1, 1, 1).expand(-1, 1, item_dist.shape[2])
        q_sum = q_sum + ok * item_dist.gather(1, idx).squeeze(1)
        n = n + ok.squeeze(1) * has_cat.gather(1, pos.clamp_min(0).unsqueeze(1)).squeeze(1)
    return out


class Calibrated(Reranker):
    """Steck's calibrated re-ranker over item categories.

    Args:
        item_categories: ``(n_items+1, C)`` multi-hot (``divrec.metrics.categories_multi_hot``).
        lambda_: trade-off in ``[0, 1]``; 0 = plain ranking.
        alpha: mixing weight of :math:`\\tilde q`, default 0.01.
    ``context.histories`` ``(B, L)`` is required when ``lambda_ > 0``.
    """

    def __init__(self, item_categories: Tensor, lambda_: float = 0.5, alpha: float = 0.01) -> None:
        super().__init__()
        check_options({"lambda_": lambda_, "alpha": alpha})
        if item_categories.dim() != 2:
            raise ValueError("item_categories must be (n_items+1, C)")
        self.lambda_, self.alpha = float(lambda_), float(alpha)
        self.register_buffer("multi_hot", item_categories.bool(), persistent=False)

    def select(self, scores: Tensor, candidates: Tensor, valid: Tensor, k: int, context: RerankContext) -> Tensor:
        dtype = scores.dtype
        if self.lambda_ > 0 and context.histories is None:
            raise ValueError("Calibrated needs context.histories (B, L) when lambda_ > 0")
        m = self.multi_hot.to(candidates.device)[candidates.long()].to(dtype)  # (B, N, C)
        item_dist = m / m.sum(-1, keepdim=True).clamp_min(1)  # (B, N, C)
        if context.histories is None:
            p = torch.zeros(scores.shape[0], m.shape[2], dtype=dtype, device=scores.device)
        else:
            p, _ = category_distribution(context.histories.to(candidates.device), self.multi_hot, dtype)
        return calibrated_greedy(scores, item_dist, p, valid, k, self.lambda_, self.alpha)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}, alpha={self.alpha}"
