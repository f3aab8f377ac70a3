"""gBCE: generalised binary cross-entropy with k sampled negatives (``task=gbce``), usable with any model.

Petrov & Macdonald, "gSASRec: Reducing Overconfidence in Sequential Recommendation Trained with Negative Sampling",
RecSys 2023 (arXiv:2308.07192). BCE with negative sampling makes the model overconfident (the sampled negatives are
a small share of the catalogue); gBCE raises the positive's probability to the power β:

    α = k / (n_items - 1)                  the sampling rate
    β = α (t (1 - 1/α) + 1/α)              t ∈ [0, 1] the calibration: t = 0 → β = 1 (plain BCE), t = 1 → β = α
    loss = mean over positions and the 1 + k logits of  [β·softplus(-s⁺)]  and  [softplus(s⁻_j)]

(-log σ(s)^β = β·softplus(-s)), as in the authors' gSASRec-pytorch, whose loss is the same sum averaged over the
1 + k logits of every position. Negatives are drawn per position by ``sampler`` (uniform by default, with
replacement; a draw may hit the positive with probability k / n_items, as in the reference). ``positions``: all
(causal models) or last (any model, every prefix a window).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from divrec import names
from divrec.models import SequenceEncoder
from divrec.tasks.base import TaskConfigError
from divrec.tasks.next_item import SampledNegatives
from divrec.tasks.samplers import NegativeSampler


def gbce_beta(n_negatives: int, n_items: int, t: float) -> float:
    """β of gBCE for k = ``n_negatives`` negatives drawn from ``n_items`` items and calibration ``t``."""
    alpha = n_negatives / max(n_items - 1, 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


class GBCE(SampledNegatives):
    def __init__(
        self, n_negatives: int = 256, t: float = 0.75, sampler: NegativeSampler | None = None, positions: str = "all"
    ) -> None:
        super().__init__(n_negatives, sampler, positions)
        if not 0.0 <= t <= 1.0:
            raise TaskConfigError(f"task.t={t} must be in [0, 1] (0 = plain BCE, 1 = fully calibrated)")
        self.t = t

    def loss(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        hidden, targets = self.states(backbone, batch)  # (N, D), (N,)
        neg = self.sample((len(targets), self.n_negatives), backbone)  # (N, k)
        pos_logit = (hidden * backbone.embed_items(targets)).sum(-1)  # (N,)
        neg_logit = torch.einsum("nd,nkd->nk", hidden, backbone.embed_items(neg))  # (N, k)
        beta = gbce_beta(self.n_negatives, backbone.n_items, self.t)
        per_position = beta * F.softplus(-pos_logit) + F.softplus(neg_logit).sum(-1)  # (N,)
        return {names.LOSS: per_position.mean() / (1 + self.n_negatives)}
