"""The item tower: the item table, item side-feature fusion and tied scoring, shared by every sequence model.

A backbone composes one ``ItemTower`` instead of owning an embedding table: its inputs are ``tower.embed(items)``
and its scores are dot products with ``tower.table()``, so side features (models/side.py), warm starts
(models/warmstart.py) and every objective work the same way for a Transformer, a GRU or a linear recurrence.

Rows: 0 = padding (zero, never ranked), 1..n_items = items, n_items + 1 = the [MASK] token. The [MASK] row is
always allocated, so that checkpoints move between objectives; only models that declare a mask token read it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from divrec.data.types import ProcessedData
from divrec.models.contract import ModelConfigError
from divrec.models.side import ItemAttributeFusion

ITEM_TABLE = "tower.item_emb.weight"  # the only tensor whose first dimension depends on the dataset


class ItemTowerError(ModelConfigError):
    """Item side features asked of a dataset that has none."""


class ItemTower(nn.Module):
    """Item ids → (…, D) item vectors; (N, D) states → (N, V) tied scores over item ids 0..n_items."""

    def __init__(self, n_items: int, hidden_size: int, fusion: str | None = None) -> None:
        super().__init__()
        self.n_items, self.fusion = n_items, fusion
        self.item_emb = nn.Embedding(n_items + 2, hidden_size, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.item_side: ItemAttributeFusion | None = None  # created by ``bind`` when ``fusion`` is set

    @property
    def mask_row(self) -> int:
        return self.n_items + 1

    def bind(self, data: ProcessedData) -> None:
        """Give items their attributes (``ProcessedData.item_category_*``); with ``fusion`` set they are fused into
        every item vector, else this does nothing."""
        self.use_attributes(
            torch.from_numpy(data.item_category_offsets), torch.from_numpy(data.item_category_ids),
            len(data.category_names),
        )

    def use_attributes(self, offsets: Tensor, attribute_ids: Tensor, n_attributes: int) -> None:
        """Attributes as CSR over items 0..n_items (offsets (n_items + 2,), ids (nnz,))."""
        if self.fusion is None:
            return
        if n_attributes == 0:
            raise ItemTowerError(
                "model.item_attribute_fusion is set but the dataset has no item attributes/categories; "
                "set model.item_attribute_fusion=null or choose a dataset with attributes"
            )
        offsets = torch.cat([offsets.long(), offsets.long()[-1:]])  # + an empty bag for the [MASK] row
        self.item_side = ItemAttributeFusion(
            self.fusion, self.item_emb.embedding_dim, offsets, attribute_ids, n_attributes
        ).to(self.item_emb.weight.device)

    def vectors(self) -> Tensor:
        """(n_items + 2, D) item representations: the embedding table, fused with attributes when configured."""
        table = self.item_emb.weight
        return table if self.item_side is None else self.item_side(table)

    def embed(self, items: Tensor) -> Tensor:
        """Item ids of any shape (…) → (…, D) item representations (the rows of ``vectors``)."""
        rows = self.item_emb(items)  # (…, D)
        return rows if self.item_side is None else self.item_side(rows, items)

    def table(self) -> Tensor:
        """(V, D) rankable vocabulary: padding (row 0, masked at ranking) and items 1..n_items."""
        return self.vectors()[: self.n_items + 1]

    def score(self, hidden: Tensor) -> Tensor:
        """(N, D) → (N, V) scores over item ids 0..n_items (column 0 = padding)."""
        return hidden @ self.table().T

    def logits(self, hidden: Tensor) -> Tensor:
        """(N, D) → (N, n_items) logits over real items 1..n_items (column j = item j + 1), for softmax losses."""
        return hidden @ self.vectors()[1 : self.n_items + 1].T
