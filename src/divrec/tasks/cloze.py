"""Masked-item (cloze) objective for bidirectional (BERT4Rec-style) models."""

from __future__ import annotations

import torch
from torch import Tensor

from divrec import names
from divrec.models import SequenceEncoder
from divrec.tasks.base import Objective, batch_items, batch_users, require_mask
from divrec.tasks.next_item import softmax_ce


def mask_positions(items: Tensor, mask_prob: float) -> Tensor:
    """(B, L) left-padded ids → (B, L) bool: each real item masked with probability ``mask_prob``; a window
    without any mask gets its newest item masked."""
    real = items != 0
    masked = (torch.rand(items.shape, device=items.device) < mask_prob) & real  # (B, L)
    none = ~masked.any(dim=1)  # (B,)
    masked[:, -1] |= none & real[:, -1]
    return masked


class Cloze(Objective):
    """Mask a share of the items of each window and predict them with full-softmax cross-entropy.

    Each real item is replaced by [MASK] with probability ``mask_prob``; every window gets at least one mask (its
    newest item when the draw masks none), so that the objective also practises the evaluation situation.
    loss = mean over masked positions of -log softmax(h_t · E^T)[i_t]. At evaluation the history is shifted left
    by one and [MASK] is appended; its output ranks the next item. ``chunk_size`` (None = plain) computes the same
    loss and gradients ``chunk_size`` items at a time (memory O(masked positions x chunk_size)); ``fused`` (default)
    computes them in one pass over blocks of positions (``fused_cross_entropy``), false = one logit matrix;
    ``compile_output`` as in ``NextItemCE``.
    """

    requires_causal = False
    requires_mask_token = True

    def __init__(
        self, mask_prob: float = 0.2, chunk_size: int | None = None, fused: bool = True, compile_output: bool = False
    ) -> None:
        super().__init__()
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"task.mask_prob={mask_prob} must be in (0, 1)")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"task.chunk_size={chunk_size} must be >= 1 or null")
        self.mask_prob, self.chunk_size, self.fused, self.compile_output = mask_prob, chunk_size, fused, compile_output

    def loss(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        items = batch_items(batch)[:, 1:]  # (B, L): the model reads at most max_len items
        masked = mask_positions(items, self.mask_prob)  # (B, L)
        hidden = backbone(items.masked_fill(masked, require_mask(backbone)), batch_users(batch))[masked]  # (N, D)
        return {names.LOSS: softmax_ce(
            backbone, hidden, items[masked], 0.0, self.chunk_size, self.fused, self.compile_output
        )}

    def query(self, backbone: SequenceEncoder, history: Tensor, users: Tensor | None = None) -> Tensor:
        mask = torch.full_like(history[:, :1], require_mask(backbone))  # (B, 1)
        inputs = torch.cat([history[:, 1:], mask], dim=1)  # (B, L): oldest item dropped, [MASK] appended
        return backbone(inputs, users)[:, -1]  # (B, D)
