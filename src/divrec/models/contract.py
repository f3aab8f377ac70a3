"""The model contract: what every sequence model (``model=``) gives its consumers, and how a config is checked.

Consumers (objectives, the Lightning module, warm start, explanations, attention maps, ``recommend``, ``feedback``)
use only what ``SequenceEncoder`` lists, never a model's internals:

    n_items            catalogue size; item ids are 1..n_items, 0 = padding
    hidden_size        D, the width of ``forward``'s output and of the item table
    max_len            the longest history the model reads
    causal             True: position t sees only items <= t (next-item objectives); False: bidirectional (cloze)
    mask_token         the [MASK] item id, or None when the model cannot read one (cloze is then refused)
    trainable          False for closed-form baselines (fitted by ``bind``, no gradient epochs)
    forward(items, users=None) -> (B, L, D)     left-padded ids (B, L) → one state per position
    encode_last(items, users=None) -> (B, D)    the state that predicts each history's next item
    embed_items(ids) -> (…, D); item_vectors() -> (n_items + 2, D); item_table() -> (V, D)
    score(hidden) -> (N, V); item_logits(hidden) -> (N, n_items)   tied scores (models/tower.py)
    bind(data)         dataset facts (item attributes, user features, closed-form fits), before training
    layer_groups()     [embedding layer, block 1, …, block N] for freezing and layer-wise learning rates
    tower              the ``ItemTower`` (None for baselines without learned item embeddings)

Optional: ``attention_maps(items, users=None) -> [(B, H, L, L)] per layer`` (``AttentionMapper``).

Each model class names its own frozen ``Config`` dataclass (keys and ranges of its YAML) and a ``spec`` of what it
can serve, so ``check_model_config`` validates ``model=`` against *its* class before any data is loaded.
Adding a model: ``src/divrec/models/ADDING_A_MODEL.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from divrec.data.types import ProcessedData
from divrec.errors import UserError


class ModelConfigError(UserError):
    """An impossible model shape, raised before any data is loaded or any step is trained."""


@dataclass(frozen=True)
class ModelSpec:
    """What a configured model can serve, known from its class and config alone (no data, no weights)."""

    name: str  # the class name, for messages
    causal: bool
    mask_token: bool  # reads a [MASK] item (cloze, masked-attribute and contrastive-mask objectives)
    attention_maps: bool  # offers attention_maps (inspection)
    trainable: bool = True  # False: fitted in closed form by bind(data), no gradient epochs
    dot_scores: bool = True  # scores = query @ item_table().T (what chunked ranking, metrics.eval_chunk_size, needs)


@runtime_checkable
class SequenceEncoder(Protocol):
    n_items: int
    tower: Any

    @property
    def hidden_size(self) -> int: ...
    @property
    def max_len(self) -> int: ...
    @property
    def causal(self) -> bool: ...
    @property
    def mask_token(self) -> int | None: ...
    @property
    def trainable(self) -> bool: ...

    def forward(self, items: Tensor, users: Tensor | None = None) -> Tensor: ...
    def encode_last(self, items: Tensor, users: Tensor | None = None) -> Tensor: ...
    def embed_items(self, items: Tensor) -> Tensor: ...
    def item_vectors(self) -> Tensor: ...
    def item_table(self) -> Tensor: ...
    def score(self, hidden: Tensor) -> Tensor: ...
    def item_logits(self, hidden: Tensor) -> Tensor: ...
    def bind(self, data: ProcessedData) -> None: ...
    def layer_groups(self) -> list[list[nn.Module]]: ...
    def spec(self) -> ModelSpec: ...


@runtime_checkable
class AttentionMapper(Protocol):
    def attention_maps(self, items: Tensor, users: Tensor | None = None) -> list[Tensor]: ...


def check_n_items(n_items: int) -> None:
    if n_items < 1:
        raise ModelConfigError(f"invalid model config: n_items={n_items}; the dataset has no items")


def model_class(model_cfg: DictConfig) -> type:
    """The class a ``model=`` node instantiates (its ``_target_``), imported but not built."""
    target = model_cfg.get("_target_")
    if not target:
        raise ModelConfigError("invalid model config: no _target_; choose a model= option (see conf/model/)")
    try:
        cls = get_class(str(target))
    except Exception as err:
        raise ModelConfigError(f"invalid model config: model._target_={target} cannot be imported ({err})") from err
    if not hasattr(cls, "Config") or not hasattr(cls, "describe"):
        raise ModelConfigError(
            f"invalid model config: {target} does not follow the model contract (a Config dataclass and a "
            "describe(config) -> ModelSpec classmethod, divrec.models.contract)"
        )
    return cls


def check_model_config(model_cfg: DictConfig) -> ModelSpec:
    """Validate ``model=`` against its own class's ``Config`` (unknown keys, bad shapes) before any data is loaded;
    return what the model can serve."""
    cls = model_class(model_cfg)
    container = OmegaConf.to_container(model_cfg, resolve=True)
    assert isinstance(container, dict)
    given = {str(k): v for k, v in container.items() if not str(k).startswith("_")}
    valid = {f.name for f in fields(cls.Config)}
    unknown = set(given) - valid
    if unknown:
        raise ModelConfigError(
            f"invalid model config: unknown key(s) {sorted(unknown)} for {cls.__name__}; valid keys are "
            f"{sorted(valid)} (see conf/model/)"
        )
    spec: ModelSpec = cls.describe(cls.Config(**given))
    return spec


def device_of(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for an empty module)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")
