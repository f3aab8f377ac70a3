"""S3-Rec's attribute objectives (Zhou et al., CIKM 2020): item ↔ attribute and sequence ↔ attribute.

Attributes are the dataset's item categories (``ProcessedData.item_category_*``: the ``*_item2attributes.json`` of
Beauty / LastFM, the genres of MovieLens). Both objectives score a representation x against every attribute with
a bilinear head, s(x, a) = (W x) · e_a + b_a, and train it with multi-label BCE over the attribute vocabulary:

    AAP (associated attribute prediction):  x = the item's embedding E[i]          (item ↔ attribute)
    MAP (masked attribute prediction):      x = the hidden state at a masked position (sequence ↔ attribute)

Items without any attribute carry no label (unknown, not "none") and are left out of the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from divrec import names
from divrec.data.types import ProcessedData
from divrec.metrics import categories_multi_hot
from divrec.models import SequenceEncoder
from divrec.tasks.base import Objective, TaskConfigError, batch_items, batch_users, require_mask
from divrec.tasks.cloze import mask_positions


class AttributeHead(nn.Module):
    """Bilinear scores of (N, D) representations against A attribute embeddings: (N, D) → (N, A)."""

    def __init__(self, hidden_size: int, n_attributes: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.attributes = nn.Embedding(n_attributes, hidden_size)
        self.bias = nn.Parameter(torch.zeros(n_attributes))
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.normal_(self.attributes.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x) @ self.attributes.weight.T + self.bias  # (N, A)


class AttributeObjective(Objective):
    """Shared part: the item → attribute multi-hot table and the head, both created by ``bind``."""

    label = "attribute"

    def __init__(self) -> None:
        super().__init__()
        self.head: AttributeHead | None = None
        self.register_buffer("item_attributes", torch.zeros(0, 0, dtype=torch.bool), persistent=False)

    def bind(self, backbone: SequenceEncoder, data: ProcessedData) -> None:
        n_attributes = len(data.category_names)
        if n_attributes == 0:
            raise TaskConfigError(
                f"task part {self.label} needs item attributes, but this dataset has none; choose a dataset with "
                "attributes/categories (beauty, lastfm, ml-100k, synthetic) or set that part's weight to 0"
            )
        table = categories_multi_hot(data.item_category_offsets, data.item_category_ids, n_attributes)  # (n+1, A)
        self.item_attributes = torch.cat([table, torch.zeros(1, n_attributes, dtype=torch.bool)])  # + [MASK] row
        self.head = AttributeHead(backbone.hidden_size, n_attributes)

    def attribute_loss(self, x: Tensor, items: Tensor) -> Tensor:
        """BCE of (N, D) representations against the attributes of their (N,) items, over labelled items."""
        if self.head is None:
            raise RuntimeError(f"{type(self).__name__}.bind(backbone, data) must run before training")
        labels = self.item_attributes[items]  # (N, A) bool
        known = labels.any(dim=1)  # (N,)
        if not bool(known.any()):
            return x.sum() * 0.0  # no labelled item in this batch: a zero that keeps the graph
        logits = self.head(x[known])  # (N', A)
        return F.binary_cross_entropy_with_logits(logits, labels[known].to(logits.dtype))


class AssociatedAttributePrediction(AttributeObjective):
    """AAP: predict each item's attributes from its (input) embedding, for every real item of the windows."""

    label = "aap"

    def loss(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        items = batch_items(batch)
        items = items[items != 0]  # (N,)
        return {names.LOSS: self.attribute_loss(backbone.tower.item_emb(items), items)}


class MaskedAttributePrediction(AttributeObjective):
    """MAP: mask items as in cloze and predict the masked item's attributes from the hidden state there."""

    label = "map"
    requires_mask_token = True

    def __init__(self, mask_prob: float = 0.2) -> None:
        super().__init__()
        if not 0.0 < mask_prob < 1.0:
            raise TaskConfigError(f"task mask_prob={mask_prob} must be in (0, 1)")
        self.mask_prob = mask_prob

    def loss(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        items = batch_items(batch)[:, 1:]  # (B, L)
        masked = mask_positions(items, self.mask_prob)
        hidden = backbone(items.masked_fill(masked, require_mask(backbone)), batch_users(batch))[masked]  # (N, D)
        return {names.LOSS: self.attribute_loss(hidden, items[masked])}
