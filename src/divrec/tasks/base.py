"""The objective interface: how a batch of training windows becomes a loss, and how a history becomes a query.

Objectives are swappable ``nn.Module``s chosen by Hydra (``task=...``); the LightningModule never inspects which
one it holds. Training windows are (B, max_len + 1) left-padded item ids; an objective reads what it needs.
Every batch also carries each row's internal user index (``names.USER_INDEX``), which an objective hands to the
backbone (``users=``) so that user side features (``model.user_features``) reach it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor, nn

from divrec import names
from divrec.data.types import ProcessedData
from divrec.errors import UserError
from divrec.models import ModelConfigError, TransformerBackbone

ParamGroups = list[dict[str, Any]]


class TaskConfigError(UserError):
    """An impossible objective configuration (bad weights, a part the dataset cannot serve)."""


class Objective(nn.Module, ABC):
    """Base class: ``loss`` for training, ``query`` for ranking (one vector per user, scored against all items)."""

    #: whether the backbone must be causal (next-item) or bidirectional (cloze); None = either works
    requires_causal: bool | None = None
    #: whether ``pointwise`` scores labelled (user, item) pairs, evaluated with AUC and log-loss
    scores_pairs: bool = False

    @abstractmethod
    def loss(self, backbone: TransformerBackbone, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Return a dict with at least ``names.LOSS`` (a scalar); other entries are logged as components."""

    def query(self, backbone: TransformerBackbone, history: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) left-padded histories (and (B,) user indices) → (B, D): the representation that predicts each
        user's next item."""
        return backbone(history, users)[:, -1]  # (B, D) state at the newest position

    def pointwise(self, backbone: TransformerBackbone, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Evaluation pairs of an objective with ``scores_pairs``: flat logits and 0/1 labels."""
        raise NotImplementedError(f"{type(self).__name__} does not score (user, item) pairs")

    def bind(self, backbone: TransformerBackbone, data: ProcessedData) -> None:
        """Called once the data is loaded and the backbone built, before training: objectives that need dataset
        facts (e.g. item attributes) or backbone-sized heads create them here. Default: nothing."""

    def parameter_groups(self, backbone: TransformerBackbone, module: nn.Module) -> ParamGroups:
        """Optimizer parameter groups over ``module``'s trainable parameters (``module`` holds the backbone and this
        objective). A group may carry ``names.LR_SCALE``, a factor on the optimizer's learning rate. Default: one
        group of every parameter with ``requires_grad``."""
        return [{"params": [p for p in module.parameters() if p.requires_grad]}]

    def check_backbone(self, causal: bool) -> None:
        """Raise ``ModelConfigError`` if the backbone's attention (``model.causal``) cannot serve this objective."""
        if self.requires_causal is not None and causal != self.requires_causal:
            kind = "causal (model.causal=true, e.g. model=sasrec)" if self.requires_causal else (
                "bidirectional (model.causal=false, e.g. model=bert4rec)"
            )
            raise ModelConfigError(f"task {type(self).__name__} needs a {kind} model; change model= or task=")


def next_item_pairs(
    backbone: TransformerBackbone, items: Tensor, users: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Run the causal backbone on windows and keep positions with a real input AND a real next item.

    (B, L+1) windows (and their (B,) user indices) → hidden (N, D) at those positions and their targets (N,).
    """
    inputs, targets = items[:, :-1], items[:, 1:]  # (B, L), (B, L)
    hidden = backbone(inputs, users)  # (B, L, D)
    keep = (inputs != 0) & (targets != 0)  # (B, L)
    return hidden[keep], targets[keep]  # (N, D), (N,)


def batch_items(batch: dict[str, Tensor]) -> Tensor:
    return batch[names.ITEMS]


def batch_users(batch: dict[str, Tensor]) -> Tensor | None:
    """(B,) internal user index of each row (None where a batch has none: then user features cannot be used)."""
    return batch.get(names.USER_INDEX)
