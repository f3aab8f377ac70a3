"""Pointwise CTR-style objective: score (user history, candidate item) pairs with a click probability, trained with
binary cross-entropy on labels from ratings plus sampled negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from divrec import names
from divrec.data.errors import DataError
from divrec.models import SequenceEncoder
from divrec.tasks.base import Objective, batch_items, batch_users
from divrec.tasks.next_item import sample_negatives


class PointwiseCTR(Objective):
    """P(click | history h_t, item c) = σ(h_t · e_c + b), with the item table tied to the ranking scores (so the
    full-ranking metrics rank by the same model; b is one learned bias).

    Training pairs at every position t with a real input and a real next interaction:
    - the next interaction (i_{t+1}, y = [rating_{t+1} >= positive_rating]): low ratings are explicit negatives;
    - ``n_negatives`` uniformly sampled items with y = 0 (implicit negatives).
    loss = mean over all pairs of BCE(σ(logit), y).

    Evaluation (``pointwise``): each held-out interaction labelled by its rating, plus ``eval_negatives`` sampled
    items the user has not interacted with (y = 0), drawn from a generator seeded by the batch's first user so that
    every evaluation sees the same pairs. Needs a source with ratings (ml-100k, Amazon reviews, CSV with a rating
    column) and ``data.preprocessing.rating_threshold=null`` so that low ratings stay in the data.
    """

    requires_causal = True
    scores_pairs = True

    def __init__(self, positive_rating: float = 4.0, n_negatives: int = 4, eval_negatives: int = 99) -> None:
        super().__init__()
        if n_negatives < 0 or eval_negatives < 0:
            raise ValueError(f"task.n_negatives={n_negatives} and task.eval_negatives={eval_negatives} must be >= 0")
        self.positive_rating, self.n_negatives, self.eval_negatives = positive_rating, n_negatives, eval_negatives
        self.bias = nn.Parameter(torch.zeros(()))

    def loss(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        items, ratings = batch_items(batch), _ratings(batch, names.RATINGS)  # (B, L+1) each
        inputs, targets = items[:, :-1], items[:, 1:]
        hidden = backbone(inputs, batch_users(batch))  # (B, L, D)
        keep = (inputs != 0) & (targets != 0)  # (B, L)
        h, t = hidden[keep], targets[keep]  # (N, D), (N,)
        labels = (ratings[:, 1:][keep] >= self.positive_rating).float()  # (N,)
        observed = (h * backbone.embed_items(t)).sum(-1) + self.bias  # (N,)
        loss_observed = F.binary_cross_entropy_with_logits(observed, labels, reduction="sum")
        loss_sampled = observed.new_zeros(())
        if self.n_negatives:
            neg = sample_negatives(len(t), self.n_negatives, backbone.n_items, h.device)  # (N, n)
            sampled = torch.einsum("nd,nkd->nk", h, backbone.embed_items(neg)) + self.bias  # (N, n)
            loss_sampled = F.softplus(sampled).sum()  # BCE with label 0
        pairs = len(t) * (1 + self.n_negatives)
        return {
            names.LOSS: (loss_observed + loss_sampled) / max(pairs, 1),
            "loss_observed": loss_observed / max(len(t), 1),
        }

    @torch.no_grad()
    def pointwise(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Logits and 0/1 labels of the held-out pairs and the sampled unseen negatives, flattened."""
        target, seen = batch[names.TARGET], batch[names.SEEN]  # (B,), (B, S)
        labels = (_ratings(batch, names.TARGET_RATING) >= self.positive_rating).float()  # (B,)
        query = self.query(backbone, batch[names.HISTORY], batch_users(batch))  # (B, D)
        logits = [(query * backbone.embed_items(target)).sum(-1) + self.bias]
        pair_labels = [labels]
        if self.eval_negatives:
            generator = torch.Generator().manual_seed(int(batch[names.USER_INDEX][0]))
            neg = torch.randint(1, backbone.n_items + 1, (len(target), self.eval_negatives), generator=generator)
            neg = neg.to(target.device)  # (B, n)
            valid = (neg != target[:, None]) & ~(neg[:, :, None] == seen[:, None, :]).any(-1)  # unseen only
            neg_logits = torch.einsum("bd,bkd->bk", query, backbone.embed_items(neg)) + self.bias  # (B, n)
            logits.append(neg_logits[valid])
            pair_labels.append(torch.zeros_like(neg_logits[valid]))
        return torch.cat(logits), torch.cat(pair_labels)


def _ratings(batch: dict[str, Tensor], key: str) -> Tensor:
    if key not in batch:
        raise DataError(
            "task=ctr needs ratings but this dataset has none; use a source with ratings (data=ml-100k, "
            "data=musical-instruments, or data=csv with data.source.rating_col) and keep "
            "data.preprocessing.rating_threshold=null"
        )
    return batch[key]
