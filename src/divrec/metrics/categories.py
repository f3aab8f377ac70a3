"""Item-side helpers of the beyond-accuracy metrics and the re-rankers: category multi-hot and compact category ids,
training popularity, Steck's category distributions and their KL. Shared by ``divrec.metrics.diversity`` and
``divrec.rerank``."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def categories_multi_hot(offsets: ArrayLike, ids: ArrayLike, n_categories: int | None = None) -> Tensor:
    """``(n_items+1, C)`` bool multi-hot from CSR item categories (``ProcessedData.item_category_offsets/ids``).

    Row ``i`` marks the categories of item ``i``; row 0 (padding) is always empty. ``C = n_categories`` or, when
    None, ``max(ids) + 1`` (0 when there are no categories).
    """
    off = torch.as_tensor(offsets).long().reshape(-1)
    cat = torch.as_tensor(ids).long().reshape(-1)
    n_rows = off.numel() - 1
    n_cat = int(n_categories) if n_categories is not None else (int(cat.max()) + 1 if cat.numel() else 0)
    if cat.numel() and (int(cat.min()) < 0 or int(cat.max()) >= n_cat):
        raise ValueError(f"category ids must lie in 0..{n_cat - 1}")
    rows = torch.repeat_interleave(torch.arange(n_rows), off.diff())  # (nnz,)
    out = torch.zeros(n_rows, n_cat, dtype=torch.bool)
    out[rows, cat] = True
    out[0] = False
    return out


def item_popularity(train_items: ArrayLike, n_items: int) -> Tensor:
    """``(n_items+1,)`` int64 training interaction counts per item (entry 0, padding, is 0)."""
    counts = torch.bincount(torch.as_tensor(train_items).long().reshape(-1), minlength=int(n_items) + 1)
    if counts.numel() != int(n_items) + 1:
        raise ValueError(f"train item ids must lie in 0..{n_items}")
    counts[0] = 0
    return counts


def category_slots(multi_hot: Tensor) -> Tensor:
    """``(n_items+1, S)`` int64 category ids of each item (S = the most categories of any item, at least 1), padded
    with the sentinel ``C`` (= number of categories): a compact form of the ``(n_items+1, C)`` multi-hot."""
    counts = multi_hot.sum(1)
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    # stable sort puts each row's categories (True) first, in increasing id order
    order = torch.sort((~multi_hot).to(torch.uint8), dim=1, stable=True).indices[:, :width]  # (n_items+1, S)
    filled = torch.arange(width, device=multi_hot.device).unsqueeze(0) < counts.unsqueeze(1)
    return torch.where(filled, order, torch.full_like(order, multi_hot.shape[1]))


SLOT_BUDGET = 1 << 22  # elements of the (rows, L, S) slot tensors built at once by category_distribution


def category_distribution(
    items: Tensor, multi_hot: Tensor, dtype: torch.dtype = torch.float64, slots: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""Category distribution of item lists (Steck 2018, uniform item weights).

    :math:`p(c \mid \text{list}) = \frac{1}{n} \sum_{i \in \text{list}} \mathbb{1}[c \in C_i] / |C_i|` over the
    :math:`n` items of the list that have at least one category (id 0 and uncategorised items are skipped).
    Computed with one ``scatter_add`` over each item's category ids (``category_slots``), never materialising a
    ``(B, L, C)`` multi-hot.

    Args:
        items: ``(B, L)`` item ids, 0 = empty slot.
        multi_hot: ``(n_items+1, C)`` from ``categories_multi_hot``.
        slots: ``category_slots(multi_hot)``, when the caller keeps it (saves recomputing it).
    Returns:
        ``(B, C)`` distributions (all zeros where ``n = 0``) and ``(B,)`` int64 ``n``.
    """
    n_cat = multi_hot.shape[1]
    slots = category_slots(multi_hot) if slots is None else slots
    rows = max(1, SLOT_BUDGET // max(1, items.shape[1] * slots.shape[1]))
    if items.shape[0] > rows:  # long histories x many categories per item (Last.fm: 899 x 300+): bound the memory
        blocks = [items[i : i + rows] for i in range(0, len(items), rows)]
        parts = [category_distribution(block, multi_hot, dtype, slots) for block in blocks]
        return torch.cat([d for d, _ in parts]), torch.cat([c for _, c in parts])
    s = slots.to(items.device)[items.long()]  # (B, L, S)
    sizes = (s < n_cat).sum(-1)  # (B, L)
    n = (sizes > 0).sum(1)  # (B,)
    weight = (1.0 / sizes.clamp_min(1).to(dtype)).unsqueeze(-1).expand(s.shape)  # (B, L, S)
    total = torch.zeros(items.shape[0], n_cat + 1, dtype=dtype, device=items.device)
    total.scatter_add_(1, s.reshape(items.shape[0], -1), weight.reshape(items.shape[0], -1))
    dist = total[:, :n_cat] / n.clamp_min(1).unsqueeze(1).to(dtype)  # (B, C)
    return dist, n


def calibration_kl(p: Tensor, q: Tensor, alpha: float) -> Tensor:
    r"""``(...)`` :math:`\mathrm{KL}(p \| \tilde q) = \sum_{c: p_c > 0} p_c \ln(p_c / \tilde q_c)`,
    :math:`\tilde q = (1-\alpha) q + \alpha p` (natural log; +inf where :math:`\alpha = 0` and :math:`q` misses a
    category of :math:`p`)."""
    q_mix = (1.0 - alpha) * q + alpha * p  # (..., C)
    return (torch.xlogy(p, p) - torch.xlogy(p, q_mix)).sum(-1)  # xlogy(0, .) = 0
