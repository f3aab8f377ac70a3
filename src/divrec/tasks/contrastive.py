"""CL4SRec-style contrastive sequence objective (Xie et al., ICDE 2022): two augmented views of each sequence, one
InfoNCE (NT-Xent) loss with in-batch negatives.

Augmentations of a left-padded (B, L) batch, vectorised over rows (n = a row's number of real items):
    crop:    keep a random contiguous run of max(1, ⌊crop_ratio · n⌋) items
    mask:    replace ⌊mask_ratio · n⌋ random items with [MASK]
    reorder: shuffle a random contiguous run of ⌊reorder_ratio · n⌋ items
Each view of each row applies one augmentation drawn uniformly from those with a positive ratio.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from divrec import names
from divrec.models import SequenceEncoder
from divrec.tasks.base import Objective, TaskConfigError, batch_items, batch_users, require_mask

POOLING = ("last", "mean")


def _lengths_and_span(items: Tensor, ratio: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per row: real length n (B,), span length k = ⌊ratio · n⌋ (B,) and a uniform span start in [0, n - k] (B,),
    counted from the row's oldest real item."""
    n = (items != 0).sum(dim=1)
    k = torch.floor(ratio * n.to(torch.float32)).long()
    start = (torch.rand(n.shape, device=items.device) * (n - k + 1).to(torch.float32)).long()
    return n, k, torch.minimum(start, n - k)


def crop(items: Tensor, ratio: float) -> Tensor:
    """(B, L) → (B, L): a contiguous run of max(1, ⌊ratio · n⌋) items per row, left-padded."""
    L = items.shape[1]
    n, k, start = _lengths_and_span(items, ratio)
    k = torch.clamp(k, min=1)
    start = torch.minimum(start, n - k)
    cols = torch.arange(L, device=items.device)  # output column j holds input column j + (start + k - n)
    src = cols[None, :] + (start + k - n)[:, None]  # (B, L)
    keep = cols[None, :] >= (L - k)[:, None]
    return torch.where(keep, items.gather(1, src.clamp(0, L - 1)), torch.zeros_like(items))


def mask(items: Tensor, ratio: float, mask_token: int) -> Tensor:
    """(B, L) → (B, L): ⌊ratio · n⌋ random real items of each row replaced by ``mask_token``."""
    real = items != 0
    k = torch.floor(ratio * real.sum(dim=1).to(torch.float32)).long()  # (B,)
    noise = torch.rand(items.shape, device=items.device).masked_fill(~real, 2.0)  # padding sorts last
    rank = noise.argsort(dim=1).argsort(dim=1)  # (B, L) rank of each position's noise within its row
    return items.masked_fill(rank < k[:, None], mask_token)


def reorder(items: Tensor, ratio: float) -> Tensor:
    """(B, L) → (B, L): a random contiguous run of ⌊ratio · n⌋ items per row shuffled in place."""
    L = items.shape[1]
    n, k, start = _lengths_and_span(items, ratio)
    cols = torch.arange(L, device=items.device, dtype=torch.float32)[None, :].expand(items.shape[0], L)
    lo = (L - n + start).to(torch.float32)[:, None]  # (B, 1) first column of the run
    inside = (cols >= lo) & (cols < lo + k[:, None])
    keys = torch.where(inside, lo + torch.rand(items.shape, device=items.device) * k[:, None], cols)
    return items.gather(1, keys.argsort(dim=1))  # keys inside the run stay within [lo, lo + k): only it moves


class ContrastiveSequence(Objective):
    """NT-Xent over 2B views: view 2b and 2b+1 of sequence b are positives, the other 2B - 2 views negatives.

    loss = mean over views v of  -log exp(s(v, v+) / τ) / Σ_{u ≠ v} exp(s(v, u) / τ),  s = cosine similarity of
    the sequence representations (the hidden state at the newest position, or the mean over real positions).
    """

    def __init__(
        self,
        crop_ratio: float = 0.6,
        mask_ratio: float = 0.3,
        reorder_ratio: float = 0.3,
        temperature: float = 1.0,
        pooling: str = "last",
    ) -> None:
        super().__init__()
        ratios = {"crop_ratio": crop_ratio, "mask_ratio": mask_ratio, "reorder_ratio": reorder_ratio}
        for key, value in ratios.items():
            if not 0.0 <= value <= 1.0:
                raise TaskConfigError(f"contrastive {key}={value} must be in [0, 1] (0 disables that augmentation)")
        if not any(ratios.values()):
            raise TaskConfigError("contrastive: every augmentation ratio is 0; give crop/mask/reorder_ratio > 0")
        if temperature <= 0:
            raise TaskConfigError(f"contrastive temperature={temperature} must be > 0")
        if pooling not in POOLING:
            raise TaskConfigError(f"contrastive pooling={pooling!r} is not one of {list(POOLING)}")
        self.crop_ratio, self.mask_ratio, self.reorder_ratio = crop_ratio, mask_ratio, reorder_ratio
        self.requires_mask_token = mask_ratio > 0  # the mask augmentation writes [MASK] items
        self.temperature, self.pooling = temperature, pooling

    def augment(self, items: Tensor, mask_token: int) -> Tensor:
        """One view: per row, one augmentation drawn uniformly from the enabled ones."""
        views = []
        if self.crop_ratio > 0:
            views.append(crop(items, self.crop_ratio))
        if self.mask_ratio > 0:
            views.append(mask(items, self.mask_ratio, mask_token))
        if self.reorder_ratio > 0:
            views.append(reorder(items, self.reorder_ratio))
        pick = torch.randint(0, len(views), (items.shape[0], 1, 1), device=items.device)
        return torch.stack(views, dim=1).gather(1, pick.expand(-1, 1, items.shape[1])).squeeze(1)  # (B, L)

    def represent(self, backbone: SequenceEncoder, items: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) (and (B,) user indices) → (B, D) sequence representations."""
        hidden = backbone(items, users)  # (B, L, D)
        if self.pooling == "last":
            return hidden[:, -1]
        real = (items != 0).unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        return (hidden * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)

    def loss(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        items = batch_items(batch)[:, 1:]  # (B, L)
        token = require_mask(backbone) if self.mask_ratio > 0 else 0  # the mask augmentation writes [MASK]
        views = torch.stack([self.augment(items, token) for _ in range(2)], dim=1)  # (B, 2, L)
        users = batch_users(batch)  # both views of a sequence keep its user (and user features)
        users = None if users is None else users.repeat_interleave(2)  # (2B,)
        z = self.represent(backbone, views.flatten(0, 1), users)  # (2B, D): rows 2b, 2b+1 = sequence b
        return {names.LOSS: info_nce(z, self.temperature)}


def info_nce(z: Tensor, temperature: float) -> Tensor:
    """NT-Xent of (2B, D) representations whose rows 2b and 2b+1 are positives of each other."""
    z = F.normalize(z, dim=-1)
    logits = z @ z.T / temperature  # (2B, 2B)
    logits = logits.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.arange(len(z), device=z.device) ^ 1  # 0↔1, 2↔3, …
    return F.cross_entropy(logits, partner)
