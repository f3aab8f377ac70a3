"""Next-item prediction objectives for causal (SASRec-style) models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from divrec import names
from divrec.models import TransformerBackbone
from divrec.tasks.base import Objective, batch_items, next_item_pairs


class NextItemCE(Objective):
    """Full-softmax cross-entropy over the whole catalog at every non-padding position.

    loss = mean over positions t of  -log softmax(h_t · E^T)[i_{t+1}], logits computed only where both the input
    and the next item are real (never at padding). Column 0 (padding) is excluded from the softmax.
    """

    requires_causal = True

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def loss(self, backbone: TransformerBackbone, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        hidden, targets = next_item_pairs(backbone, batch_items(batch))  # (N, D), (N,)
        logits = backbone.item_logits(hidden)  # (N, n_items): column j = item j + 1
        loss = F.cross_entropy(logits, targets - 1, label_smoothing=self.label_smoothing)
        return {names.LOSS: loss}


def sample_negatives(n: int, n_neg: int, n_items: int, device: torch.device) -> Tensor:
    """(n, n_neg) item ids drawn uniformly from 1..n_items (a sampled id may equal the positive; its effect on
    the loss is O(1/n_items) and the original SASRec accepts the same)."""
    return torch.randint(1, n_items + 1, (n, n_neg), device=device)


class SampledNegatives(Objective):
    """Base of the next-item objectives that score each positive against ``n_negatives`` sampled items."""

    requires_causal = True

    def __init__(self, n_negatives: int = 1) -> None:
        super().__init__()
        if n_negatives < 1:
            raise ValueError(f"task.n_negatives={n_negatives} must be >= 1")
        self.n_negatives = n_negatives


class NextItemBCE(SampledNegatives):
    """Original SASRec loss: binary cross-entropy of each positive against ``n_negatives`` uniform negatives.

    loss = mean_t [ -log σ(h_t·e_pos) - (1/n_neg) Σ_j log(1 - σ(h_t·e_neg_j)) ]
    """


    def loss(self, backbone: TransformerBackbone, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        hidden, targets = next_item_pairs(backbone, batch_items(batch))  # (N, D), (N,)
        neg = sample_negatives(len(targets), self.n_negatives, backbone.n_items, hidden.device)  # (N, n)
        emb = backbone.embed_items
        pos_logit = (hidden * emb(targets)).sum(-1)  # (N,)
        neg_logit = torch.einsum("nd,nkd->nk", hidden, emb(neg))  # (N, n)
        loss = F.softplus(-pos_logit).mean() + F.softplus(neg_logit).mean()
        return {names.LOSS: loss}


class NextItemSampledSoftmax(SampledNegatives):
    """Softmax over the positive and ``n_negatives`` uniform negatives (shared within the batch).

    loss = mean_t -log( exp(s_pos) / (exp(s_pos) + Σ_j exp(s_neg_j)) ). With uniform sampling the log-Q
    correction is a constant and cancels; negatives equal to the positive are masked out.
    """

    def __init__(self, n_negatives: int = 256) -> None:
        super().__init__(n_negatives)

    def loss(self, backbone: TransformerBackbone, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        hidden, targets = next_item_pairs(backbone, batch_items(batch))  # (N, D), (N,)
        neg = sample_negatives(1, self.n_negatives, backbone.n_items, hidden.device)[0]  # (n,)
        pos_logit = (hidden * backbone.embed_items(targets)).sum(-1, keepdim=True)  # (N, 1)
        neg_logit = hidden @ backbone.embed_items(neg).T  # (N, n)
        neg_logit = neg_logit.masked_fill(neg[None, :] == targets[:, None], float("-inf"))
        logits = torch.cat([pos_logit, neg_logit], dim=1)  # (N, 1 + n)
        loss = F.cross_entropy(logits, torch.zeros_like(targets))
        return {names.LOSS: loss}
