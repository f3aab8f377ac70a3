"""``ClosedFormModel``: the base of the classical baselines (``model=pop|itemknn|ease``), on the same contract.

A baseline scores like every divrec model, ``scores = query(history) @ table.T`` over item ids 0..n_items, so the
same evaluator, re-rankers, diversity metrics, ``recommend`` and ``compare`` serve it. What differs:

- it has no gradient epochs: ``bind(data)`` fits it in closed form on the training sequences (``fit_seconds``
  records how long), and ``divrec train`` then validates and tests it (``trainable = False``);
- its "hidden size" D is its query width (1 for popularity, n_items + 1 for item-item models): the query is a
  weighted bag of history items and ``table`` an item-item matrix; scoring multiplies a sparse query;
- its table is a buffer stored in every checkpoint (the feedback loop serves restored checkpoints): a 12k-item
  EASE or item-kNN writes a 0.6 GB ``best.ckpt``; ``divrec eval`` / ``recommend`` load it (after ``bind`` refits
  the same deterministic table from the same training data).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from divrec.data.types import ProcessedData
from divrec.models.contract import ModelConfigError, ModelSpec, check_n_items


@dataclass(frozen=True)
class ClosedFormConfig:
    max_len: int = 50  # how many of the newest history items the query reads (data.max_len)

    def __post_init__(self) -> None:
        if int(self.max_len) < 1:
            raise ModelConfigError(f"invalid model config: model.max_len={self.max_len} must be >= 1")


def available_memory_bytes() -> int:
    """MemAvailable of /proc/meminfo (Linux), else the physical memory size."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_dense_fits(name: str, n_items: int, copies: int, fix: str) -> None:
    """Refuse, before any fitting, an (n_items + 1)² float32 model whose ``copies`` matrices exceed free memory."""
    need = copies * (n_items + 1) ** 2 * 4
    free = available_memory_bytes()
    if need > 0.8 * free:
        raise ModelConfigError(
            f"model={name} needs about {need / 2**30:.1f} GiB for {copies} dense {n_items + 1:,} x {n_items + 1:,} "
            f"float32 matrices, but this machine has {free / 2**30:.1f} GiB available; {fix}"
        )


class ClosedFormModel(nn.Module):
    """Base class: subclasses set ``Config`` and implement ``fit(data) -> (D, V) weights`` and ``query``; scores are
    ``query @ weights`` (so ``item_table()`` is ``weights.T``)."""

    Config: ClassVar[type[ClosedFormConfig]] = ClosedFormConfig
    trainable: ClassVar[bool] = False
    tower = None  # no learned item embeddings (explanations and the projector skip the model)
    weights: Tensor

    def __init__(self, n_items: int, **config: object) -> None:
        super().__init__()
        self.cfg = self.Config(**config)  # type: ignore[arg-type]
        check_n_items(n_items)
        self.n_items = n_items
        self.register_buffer("weights", torch.zeros(self.query_width(), n_items + 1))  # (D, V), in checkpoints
        self.fit_seconds = 0.0
        self._table: Tensor | None = None
        self._table_key: tuple = ()

    # --- what the model serves ---------------------------------------------------------------------------------
    @classmethod
    def describe(cls, cfg: ClosedFormConfig) -> ModelSpec:
        return ModelSpec(cls.__name__, causal=True, mask_token=False, attention_maps=False, trainable=False)

    def spec(self) -> ModelSpec:
        return self.describe(self.cfg)

    @property
    def hidden_size(self) -> int:
        return self.query_width()

    @property
    def max_len(self) -> int:
        return self.cfg.max_len

    causal = True
    mask_token = None

    def query_width(self) -> int:
        """D: the width of a query (n_items + 1 unless a subclass needs less)."""
        return self.n_items + 1

    # --- fitting ---------------------------------------------------------------------------------------------
    def bind(self, data: ProcessedData) -> None:
        """Fit on the training sequences of ``data`` (CSR ``train_offsets`` / ``train_items``)."""
        start = time.perf_counter()
        weights = self.fit(data).to(torch.float32)  # (D, V)
        self.weights = weights.to(self.weights.device)
        self.fit_seconds = time.perf_counter() - start

    def fit(self, data: ProcessedData) -> Tensor:
        raise NotImplementedError

    def query(self, items: Tensor) -> Tensor:
        """(B, L) left-padded histories → (B, D) queries."""
        raise NotImplementedError

    # --- the SequenceEncoder contract ------------------------------------------------------------------------
    def encode_last(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        return self.query(items[:, -self.cfg.max_len :])

    def forward(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) → (B, L, D): position t holds the query of the prefix ending at t (causal by construction)."""
        return torch.stack([self.encode_last(items[:, : t + 1]) for t in range(items.shape[1])], dim=1)

    def score(self, hidden: Tensor) -> Tensor:
        """(N, D) queries → (N, V) = hidden @ weights, a sparse query multiplied as such."""
        if hidden.shape[1] == 1:
            return hidden @ self.weights
        return torch.sparse.mm(hidden.to_sparse(), self.weights)

    def item_table(self) -> Tensor:
        """(V, D) = weights.T, made contiguous once per fit: per-item rows are gathered (re-rankers, embedding ILD),
        and gathering rows of a transposed view reads one element per cache line."""
        key = (self.weights.data_ptr(), self.weights._version, self.weights.device)  # refit, loaded or moved
        if self._table is None or self._table_key != key:
            self._table, self._table_key = self.weights.T.contiguous(), key
        return self._table

    def item_vectors(self) -> Tensor:
        return torch.cat([self.item_table(), self.weights.new_zeros(1, self.weights.shape[0])])  # + the [MASK] row

    def embed_items(self, items: Tensor) -> Tensor:
        return self.item_table()[items]

    def item_logits(self, hidden: Tensor) -> Tensor:
        return self.score(hidden)[:, 1:]

    def layer_groups(self) -> list[list[nn.Module]]:
        return [[]]


def bag_of_items(items: Tensor, width: int, weights: Tensor | None = None) -> Tensor:
    """(B, L) ids (0 = padding) → (B, width) summed per-position ``weights`` (L,) (default 1) per item id; the
    padding column 0 stays 0."""
    w = torch.ones(items.shape[1], device=items.device) if weights is None else weights
    bag = torch.zeros(items.shape[0], width, device=items.device)
    bag.scatter_add_(1, items, w.expand_as(items).to(bag.dtype) * (items != 0))
    return bag


def user_item_matrix(data: ProcessedData) -> Tensor:
    """(n_users, n_items + 1) sparse binary user x item matrix of the training sequences (column 0 empty)."""
    lengths = torch.from_numpy(data.train_offsets).diff()
    rows = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    cols = torch.from_numpy(data.train_items.astype("int64"))
    x = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), torch.ones(len(cols)), (len(lengths), data.n_items + 1), check_invariants=False
    )
    x = x.coalesce()  # repeated (user, item) pairs summed...
    ones = torch.ones_like(x.values())  # ...then set to 1: a binary matrix
    return torch.sparse_coo_tensor(x.indices(), ones, x.shape, check_invariants=False).coalesce()
