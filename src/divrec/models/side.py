"""Item side features in the input layer: each item's attributes (categories) pooled and fused with its embedding.

    a_i = mean_{c ∈ attrs(i)} A[c]            (0 for items without attributes, padding and [MASK])
    sum:     x_i = e_i + a_i
    concat:  x_i = W [e_i ; a_i] + b
    gate:    g_i = σ(W [e_i ; a_i] + b),  x_i = g_i ⊙ e_i + (1 − g_i) ⊙ a_i

The fused table replaces the item table everywhere the backbone uses it (inputs and tied output scores), so items
sharing attributes share evidence. Attribute ids are dataset-specific: a warm start leaves this module fresh.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

FUSIONS = ("sum", "concat", "gate")


class ItemAttributeFusion(nn.Module):
    """Fuses a (V, D) item table with mean-pooled attribute embeddings; attributes given as CSR over items 0..V-1."""

    def __init__(self, fusion: str, hidden_size: int, offsets: Tensor, attribute_ids: Tensor, n_attributes: int):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"model.item_attribute_fusion={fusion!r} is not one of {list(FUSIONS)}")
        self.fusion = fusion
        self.attributes = nn.EmbeddingBag(max(n_attributes, 1), hidden_size, mode="mean")
        nn.init.normal_(self.attributes.weight, std=0.02)
        self.mix = nn.Linear(2 * hidden_size, hidden_size) if fusion != "sum" else None
        if self.mix is not None:
            nn.init.normal_(self.mix.weight, std=0.02)
            nn.init.zeros_(self.mix.bias)
        self.register_buffer("offsets", offsets.long()[:-1].clone(), persistent=False)  # (V,) bag starts
        self.register_buffer("attribute_ids", attribute_ids.long().clone(), persistent=False)  # (nnz,)

    def pooled(self) -> Tensor:
        """(V, D) mean attribute embedding of every item (zeros for items without attributes)."""
        return self.attributes(self.attribute_ids, self.offsets)

    def forward(self, table: Tensor, items: Tensor | None = None) -> Tensor:
        """(V, D) item embeddings → (V, D) fused item representations; with ``items`` (any shape), ``table`` holds
        the embeddings of those ids, (…, D), and the result their fused rows."""
        pooled = self.pooled() if items is None else self.pooled()[items]  # (V, D) or (…, D)
        if self.mix is None:
            return table + pooled
        mixed = self.mix(torch.cat([table, pooled], dim=-1))  # (V, D)
        if self.fusion == "concat":
            return mixed
        gate = torch.sigmoid(mixed)
        return gate * table + (1.0 - gate) * pooled

