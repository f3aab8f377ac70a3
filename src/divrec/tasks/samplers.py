"""Negative samplers for the sampled objectives: which items are drawn, and with what probability q(i).

A sampler draws item ids in ``1..n_items`` independently (with replacement) from a distribution ``q``; ``log_q``
returns ``log q(i)``, which sampled softmax subtracts (log-Q correction) so that its gradient is an unbiased-in-the-
limit estimate of full softmax's. Chosen by Hydra (``task.sampler._target_``); a sampler that needs training
statistics gets them through ``bind`` (from the objective's ``bind``) before training.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from divrec.data.types import ProcessedData
from divrec.errors import UserError


class SamplerError(UserError):
    """A negative sampler used before it has what it needs."""


class NegativeSampler(nn.Module):
    """Base class: ``sample(shape, n_items, device)`` ids in ``1..n_items``; ``log_q(ids, n_items)`` per id."""

    def bind(self, data: ProcessedData) -> None:
        """Receive the training data (popularity counts); a no-op for samplers that need none."""

    def sample(self, shape: tuple[int, ...], n_items: int, device: torch.device) -> Tensor:
        raise NotImplementedError

    def log_q(self, ids: Tensor, n_items: int) -> Tensor:
        """float64 log q(i) of each id (callers cast to their logits' dtype)."""
        raise NotImplementedError


class UniformSampler(NegativeSampler):
    """q(i) = 1 / n_items for every item."""

    def sample(self, shape: tuple[int, ...], n_items: int, device: torch.device) -> Tensor:
        return torch.randint(1, n_items + 1, shape, device=device)

    def log_q(self, ids: Tensor, n_items: int) -> Tensor:
        return torch.full(ids.shape, -math.log(n_items), dtype=torch.float64, device=ids.device)


class PopularitySampler(NegativeSampler):
    """Unigram^alpha: q(i) ∝ count(i)^alpha, count = the item's occurrences in the training sequences.

    alpha = 1 samples by popularity, 0 uniformly over the items seen in training, 0.75 is word2vec's compromise.
    Items never seen in training are never drawn (q = 0). The table is a non-persistent buffer: it follows the
    module's device but is not stored in checkpoints (it is rebuilt from the data).
    """

    cdf: Tensor
    logq: Tensor

    def __init__(self, alpha: float = 0.75) -> None:
        super().__init__()
        if not alpha >= 0.0:
            raise ValueError(f"task.sampler.alpha={alpha} must be >= 0")
        self.alpha = float(alpha)
        self.register_buffer("cdf", torch.zeros(0, dtype=torch.float64), persistent=False)
        self.register_buffer("logq", torch.zeros(0, dtype=torch.float64), persistent=False)

    def bind(self, data: ProcessedData) -> None:
        counts = np.bincount(data.train_items, minlength=data.n_items + 1).astype(np.float64)
        counts[0] = 0.0  # padding is never a negative
        self.set_counts(torch.from_numpy(counts))

    def set_counts(self, counts: Tensor) -> None:
        """``counts``: ``(n_items + 1,)`` training occurrences per item id (entry 0 ignored)."""
        weights = counts.double().clone()
        weights[0] = 0.0
        weights = torch.where(weights > 0, weights.pow(self.alpha), torch.zeros_like(weights))
        if not weights.sum() > 0:
            raise SamplerError("PopularitySampler: no item occurs in the training data; use task.sampler=uniform")
        q = weights / weights.sum()
        self.cdf = torch.cumsum(q, 0).to(self.cdf.device)
        self.logq = torch.log(q).to(self.logq.device)  # -inf for never-drawn items

    def sample(self, shape: tuple[int, ...], n_items: int, device: torch.device) -> Tensor:
        if self.cdf.numel() == 0:
            raise SamplerError("PopularitySampler has no item counts; the pipeline calls task.bind(backbone, data)")
        u = torch.rand(shape, dtype=torch.float64, device=self.cdf.device) * self.cdf[-1]
        ids = torch.searchsorted(self.cdf, u, right=True).clamp_(1, self.cdf.numel() - 1)
        return ids.to(device)

    def log_q(self, ids: Tensor, n_items: int) -> Tensor:
        return self.logq.to(ids.device)[ids]
