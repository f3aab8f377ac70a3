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
from divrec.models import ModelConfigError, ModelSpec, SequenceEncoder

ParamGroups = list[dict[str, Any]]


class TaskConfigError(UserError):
    """An impossible objective configuration (bad weights, a part the dataset cannot serve)."""


class Objective(nn.Module, ABC):
    """Base class: ``loss`` for training, ``query`` for ranking (one vector per user, scored against all items)."""

    #: whether the backbone must be causal (next-item) or bidirectional (cloze); None = either works
    requires_causal: bool | None = None
    #: whether the model must read a [MASK] item (``SequenceEncoder.mask_token`` not None)
    requires_mask_token: bool = False
    #: whether the objective trains by gradient epochs (False: closed-form baselines, ``task=fitted``)
    trains: bool = True
    #: whether training windows must end at every position (each prefix of each sequence one window), what
    #: last-position objectives train on (``positions=last``); False = the data config's windows (``data.stride``)
    prefix_windows: bool = False
    #: whether ``pointwise`` scores labelled (user, item) pairs, evaluated with AUC and log-loss
    scores_pairs: bool = False

    @abstractmethod
    def loss(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Return a dict with at least ``names.LOSS`` (a scalar); other entries are logged as components."""

    def query(self, backbone: SequenceEncoder, history: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) left-padded histories (and (B,) user indices) → (B, D): the representation that predicts each
        user's next item."""
        return backbone.encode_last(history, users)  # (B, D) state at the newest position

    def pointwise(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Evaluation pairs of an objective with ``scores_pairs``: flat logits and 0/1 labels."""
        raise NotImplementedError(f"{type(self).__name__} does not score (user, item) pairs")

    def bind(self, backbone: SequenceEncoder, data: ProcessedData) -> None:
        """Called once the data is loaded and the backbone built, before training: objectives that need dataset
        facts (e.g. item attributes) or backbone-sized heads create them here. Default: nothing."""

    def parameter_groups(self, backbone: SequenceEncoder, module: nn.Module) -> ParamGroups:
        """Optimizer parameter groups over ``module``'s trainable parameters (``module`` holds the backbone and this
        objective). A group may carry ``names.LR_SCALE``, a factor on the optimizer's learning rate. Default: one
        group of every parameter with ``requires_grad``."""
        return [{"params": [p for p in module.parameters() if p.requires_grad]}]

    def check_backbone(self, spec: ModelSpec) -> None:
        """Raise ``ModelConfigError`` if the model (what ``check_model_config`` says it serves) cannot serve this
        objective: its direction, its [MASK] token, or closed-form fitting versus gradient training."""
        name = type(self).__name__
        if self.trains != spec.trainable:
            if spec.trainable:
                raise ModelConfigError(f"task {name} fits closed-form baselines only (model=pop|itemknn|ease); "
                                       f"{spec.name} trains by gradient: choose another task= (e.g. next_item_ce)")
            raise ModelConfigError(f"model {spec.name} is fitted in closed form and takes task=fitted (its YAML's "
                                   f"default), not task {name}; drop the task= override")
        if self.requires_causal is not None and spec.causal != self.requires_causal:
            kind = "causal (model.causal=true, e.g. model=sasrec)" if self.requires_causal else (
                "bidirectional (model.causal=false, e.g. model=bert4rec)"
            )
            raise ModelConfigError(f"task {name} needs a {kind} model, but {spec.name} is not; change model= or task=")
        if self.requires_mask_token and not spec.mask_token:
            raise ModelConfigError(f"task {name} needs a model with a [MASK] token, but {spec.name} has none; "
                                   "use model=bert4rec (or sasrec), or a next-item task= (next_item_ce, gbce)")


def next_item_pairs(
    backbone: SequenceEncoder, items: Tensor, users: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Run the causal backbone on windows and keep positions with a real input AND a real next item.

    (B, L+1) windows (and their (B,) user indices) → hidden (N, D) at those positions and their targets (N,).
    """
    inputs, targets = items[:, :-1], items[:, 1:]  # (B, L), (B, L)
    hidden = backbone(inputs, users)  # (B, L, D)
    keep = (inputs != 0) & (targets != 0)  # (B, L)
    return hidden[keep], targets[keep]  # (N, D), (N,)


POSITIONS = ("all", "last")


class NextItemPositions:
    """Mixin of the next-item objectives: which positions of a training window predict their next item.

    all:  every position with a real input and a real next item (needs a causal model; one window per
          ``data.stride``); the SASRec / GRU4Rec recipe.
    last: only the window's newest position predicts the window's final item, so the model may be bidirectional
          (its states are never asked about a position whose future it saw); trained over every prefix
          (``prefix_windows``), the FMLP-Rec / BSARec recipe.
    """

    positions: str = "all"

    def set_positions(self, positions: str) -> None:
        if positions not in POSITIONS:
            raise TaskConfigError(f"task.positions={positions!r} is not one of {list(POSITIONS)}")
        self.positions = positions
        if positions == "last":
            self.requires_causal = None  # type: ignore[misc]
            self.prefix_windows = True  # type: ignore[misc]

    def states(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Hidden states (N, D) at the predicting positions and their next items (N,)."""
        items, users = batch_items(batch), batch_users(batch)
        if self.positions == "all":
            return next_item_pairs(backbone, items, users)
        return last_item_pairs(backbone, items, users)


def last_item_pairs(
    backbone: SequenceEncoder, items: Tensor, users: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(B, L+1) windows → the state at each window's newest input (N, D) and the window's final item (N,), for
    windows with a real input and a real target."""
    inputs, targets = items[:, :-1], items[:, -1]  # (B, L), (B,)
    keep = (inputs[:, -1] != 0) & (targets != 0)  # (B,)
    users = None if users is None else users[keep]
    return backbone.encode_last(inputs[keep], users), targets[keep]  # (N, D), (N,)


def require_mask(backbone: SequenceEncoder) -> int:
    """The model's [MASK] item id; a ``ModelConfigError`` (not an ``AttributeError``) for a model without one."""
    token = backbone.mask_token
    if token is None:
        raise ModelConfigError(f"{type(backbone).__name__} has no [MASK] token; masked objectives need "
                               "model=bert4rec or sasrec")
    return token


def batch_items(batch: dict[str, Tensor]) -> Tensor:
    return batch[names.ITEMS]


def batch_users(batch: dict[str, Tensor]) -> Tensor | None:
    """(B,) internal user index of each row (None where a batch has none: then user features cannot be used)."""
    return batch.get(names.USER_INDEX)
