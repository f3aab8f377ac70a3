"""Pointwise (CTR-style) evaluation: AUC and log-loss of click probabilities on labelled (user, item) pairs.

AUC = P(score of a random positive pair > score of a random negative pair), ties counting 1/2 (torchmetrics'
exact ``BinaryAUROC``, no thresholds binning); log-loss = mean over pairs of -[y log p + (1 - y) log(1 - p)] with
p = σ(logit). Both keep exact sums / concatenated states, so multi-process results equal single-process ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import BinaryAUROC

from divrec import names


class LogLoss(Metric):
    """Mean binary cross-entropy of logits against 0/1 labels over every pair seen since ``reset``."""

    full_state_update = False
    higher_is_better = False
    total: Tensor
    count: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, labels: Tensor) -> None:
        losses = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="sum")
        self.total += losses.double()
        self.count += labels.numel()

    def compute(self) -> Tensor:
        return (self.total / self.count.clamp(min=1)).float()


class PointwiseEvaluator(torch.nn.Module):
    """AUC and log-loss of one stage, logged as ``<stage>/auc`` and ``<stage>/logloss``."""

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage
        self.auc = BinaryAUROC()
        self.logloss = LogLoss()

    def update(self, logits: Tensor, labels: Tensor) -> None:
        self.auc.update(logits.float().sigmoid(), labels.long())
        self.logloss.update(logits, labels)

    def compute(self) -> dict[str, Tensor]:
        return {
            names.metric_key(self.stage, names.AUC): self.auc.compute(),
            names.metric_key(self.stage, names.LOGLOSS): self.logloss.compute(),
        }

    def reset(self) -> None:
        self.auc.reset()
        self.logloss.reset()
