"""``Encoder``: the base of divrec's learned sequence models, implementing ``SequenceEncoder`` around an
``ItemTower`` so that a new backbone writes only its sequence body (``forward``) and its ``Config``.

It gives: the item tower (item table, attribute fusion, tied scores), user features added to every real position
(``model.user_features=add``), the position index convention (newest item = position 0, so a history gets the same
codes whatever the batch's padded length), weight initialisation, ``bind(data)``, ``encode_last`` and
``layer_groups``. Sequences are LEFT-padded with item id 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from divrec.data.types import ProcessedData
from divrec.models.contract import ModelConfigError, ModelSpec, check_n_items
from divrec.models.side import FUSIONS
from divrec.models.tower import ItemTower
from divrec.models.user_side import USER_FEATURE_MODES, UserFeatureEmbedding, select_features

log = logging.getLogger(__name__)

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}
LEGACY_PREFIXES = ("item_emb.", "item_side.")  # before the item tower (divrec <= 2026-11): moved under tower.


def fail(msg: str) -> None:
    raise ModelConfigError(f"invalid model config: {msg}")


@dataclass(frozen=True)
class EncoderConfig:
    """The keys every learned sequence model shares; a model's ``Config`` subclasses this."""

    max_len: int = 50  # longest history the model reads
    hidden_size: int = 64  # D: embedding and state width
    dropout: float = 0.2
    item_attribute_fusion: str | None = None  # item side features: null (off) | sum | concat | gate (models/side.py)
    user_features: str | None = None  # user side features: null (off) | add | token (models/user_side.py)
    user_feature_names: Sequence[str] | None = None  # which user features; null = every one the dataset has

    #: user feature modes this model implements (a Transformer also has ``token``)
    USER_MODES: ClassVar[tuple[str, ...]] = ("add",)

    def __post_init__(self) -> None:
        for name in ("max_len", "hidden_size"):
            if int(getattr(self, name)) < 1:
                fail(f"model.{name}={getattr(self, name)} must be >= 1")
        if not 0.0 <= float(self.dropout) < 1.0:
            fail(f"model.dropout={self.dropout} must be in [0, 1)")
        if self.item_attribute_fusion is not None and self.item_attribute_fusion not in FUSIONS:
            fail(f"model.item_attribute_fusion={self.item_attribute_fusion!r} is not null or one of {list(FUSIONS)}")
        if self.user_features is not None and self.user_features not in self.USER_MODES:
            known = "" if self.user_features in USER_FEATURE_MODES else " (unknown mode)"
            fail(f"model.user_features={self.user_features!r}{known}: this model supports null or "
                 f"{list(self.USER_MODES)}")
        if self.user_feature_names is not None:  # a Hydra ListConfig → a plain tuple (checkpoint-safe, hashable)
            object.__setattr__(self, "user_feature_names", tuple(str(n) for n in self.user_feature_names))
            if not self.user_feature_names:
                fail("model.user_feature_names=[] selects no feature; list some or set it to null (all features)")


class Encoder(nn.Module):
    """Base class of learned sequence models. Subclasses set ``Config``, build their body in ``__init__`` after
    ``super().__init__``, and implement ``forward``; class flags say what they serve."""

    Config: ClassVar[type[EncoderConfig]] = EncoderConfig
    CAUSAL: ClassVar[bool] = True  # fixed attention direction (a Transformer reads it from its config)
    MASK_TOKEN: ClassVar[bool] = False  # whether the model can read [MASK] (bidirectional models)
    trainable: ClassVar[bool] = True

    def __init__(self, n_items: int, **config: object) -> None:
        super().__init__()
        self.cfg = self.Config(**config)  # type: ignore[arg-type]
        check_n_items(n_items)
        self.n_items = n_items
        self._spec = self.describe(self.cfg)  # read per step (mask token, direction): computed once
        self.tower = ItemTower(n_items, self.cfg.hidden_size, self.cfg.item_attribute_fusion)
        self.user_side: UserFeatureEmbedding | None = None  # created by bind when model.user_features is set
        self._register_load_state_dict_pre_hook(_legacy_keys)

    # --- what the model serves ---------------------------------------------------------------------------------
    @classmethod
    def describe(cls, cfg: EncoderConfig) -> ModelSpec:
        causal = bool(getattr(cfg, "causal", cls.CAUSAL))
        has_maps = callable(getattr(cls, "attention_maps", None))
        return ModelSpec(cls.__name__, causal=causal, mask_token=cls.MASK_TOKEN or not causal,
                         attention_maps=has_maps, trainable=cls.trainable)

    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def hidden_size(self) -> int:
        return self.cfg.hidden_size

    @property
    def max_len(self) -> int:
        return self.cfg.max_len

    @property
    def causal(self) -> bool:
        return self.spec().causal

    @property
    def mask_token(self) -> int | None:
        return self.tower.mask_row if self.spec().mask_token else None

    # --- data ----------------------------------------------------------------------------------------------
    def bind(self, data: ProcessedData) -> None:
        """Dataset facts, once the data is loaded: item attributes (tower) and user features."""
        self.tower.bind(data)
        self.use_user_features(data.user_features, data.user_feature_vocab)

    def use_item_attributes(self, offsets: Tensor, attribute_ids: Tensor, n_attributes: int) -> None:
        """Item attributes as CSR over items 0..n_items (what ``bind`` passes the tower)."""
        self.tower.use_attributes(offsets, attribute_ids, n_attributes)

    def use_user_features(self, codes: dict, vocab: dict) -> None:
        mode = self.cfg.user_features
        if mode is None:
            if self.cfg.user_feature_names is not None:  # a warning, not an error: sweeps switch the mode on and off
                log.warning("model.user_feature_names=%s is ignored while model.user_features is null; set "
                            "model.user_features=%s to use them", list(self.cfg.user_feature_names),
                            "|".join(self.Config.USER_MODES))
            return
        chosen = select_features(codes, vocab, self.cfg.user_feature_names, mode)
        self.user_side = UserFeatureEmbedding.from_data(codes, vocab, chosen, self.cfg.hidden_size)
        self.user_side.to(self.tower.item_emb.weight.device)

    def user_vectors(self, users: Tensor | None) -> Tensor | None:
        """(B,) user indices → (B, D) user vectors, or None without user features."""
        if self.user_side is None:
            return None
        if users is None:
            raise ValueError(
                f"model.user_features={self.cfg.user_features} needs each sequence's user index: pass users= "
                "(batches carry names.USER_INDEX)"
            )
        return self.user_side(users)

    def add_users(self, x: Tensor, items: Tensor, users: Tensor | None) -> Tensor:
        """(B, L, D) inputs + the user vector at every real position (``user_features=add``; no-op when off)."""
        u = self.user_vectors(users)  # (B, D) or None
        return x if u is None else x + u[:, None, :] * (items != 0)[..., None].to(x.dtype)

    # --- items (the tower) ---------------------------------------------------------------------------------
    def embed_items(self, items: Tensor) -> Tensor:
        return self.tower.embed(items)

    def item_vectors(self) -> Tensor:
        return self.tower.vectors()

    def item_table(self) -> Tensor:
        return self.tower.table()

    def score(self, hidden: Tensor) -> Tensor:
        return self.tower.score(hidden)

    def item_logits(self, hidden: Tensor) -> Tensor:
        return self.tower.logits(hidden)

    # --- sequence ------------------------------------------------------------------------------------------
    def check_length(self, items: Tensor) -> None:
        if items.shape[1] > self.cfg.max_len:
            raise ValueError(f"sequence length {items.shape[1]} exceeds model.max_len={self.cfg.max_len}")

    @staticmethod
    def positions(length: int, device: torch.device) -> Tensor:
        """(L,) position index of each column of a left-padded batch: the newest item is position 0."""
        return torch.arange(length - 1, -1, -1, device=device)

    def forward(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def encode_last(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) histories → (B, D): the state at the newest position."""
        return self(items, users)[:, -1]

    def embedding_modules(self) -> list[nn.Module]:
        """The embedding layer (layer 0 of ``layer_groups``): the item table and the model's input modules."""
        return [self.tower.item_emb]

    def layer_groups(self) -> list[list[nn.Module]]:
        """[embedding layer, block 1, …, block N]; parameters in none of them are the top (norms, heads)."""
        blocks = getattr(self, "blocks", None)
        return [self.embedding_modules(), *([[b] for b in blocks] if blocks is not None else [])]

    @staticmethod
    def init_weights(module: nn.Module) -> None:
        """N(0, 0.02) linears and embeddings, zero biases and padding rows (apply over the body)."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()


def _legacy_keys(state: dict, prefix: str, *args: object) -> None:
    """Checkpoints written before the item tower held ``item_emb.*`` / ``item_side.*`` at the backbone's top."""
    for key in [k for k in state if k.startswith(tuple(prefix + p for p in LEGACY_PREFIXES))]:
        state[prefix + "tower." + key[len(prefix):]] = state.pop(key)
