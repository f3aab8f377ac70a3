"""Sequential item-kNN: items that followed the user's latest items in other users' sequences (``model=itemknn``).

Similarity from ordered co-occurrence within ``window`` steps of the training sequences (a follows b: b → a), an
asymmetric cosine, the ``neighbours`` strongest per item kept:

    C[b, a] = #{(s, p, d): s_p = b, s_{p+d} = a, 1 <= d <= window}        (both orders when directed=false)
    W[b, a] = C[b, a] / (n_b^alpha · n_a^(1 - alpha)),   n = item occurrence counts,  top-``neighbours`` per row b
    score(u, a) = Σ_t decay^(age_t) · W[h_t, a]        age 0 = the newest history item (recency decay)

A sequence-aware neighbourhood baseline in the spirit of SKNN / S-SKNN (Ludewig & Jannach, "Evaluation of
session-based recommendation algorithms", UMUAI 2018). Fitted in closed form, see ``closed_form.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from divrec.data.types import ProcessedData
from divrec.models.closed_form import ClosedFormConfig, ClosedFormModel, bag_of_items, check_dense_fits
from divrec.models.contract import ModelConfigError


@dataclass(frozen=True)
class ItemKNNConfig(ClosedFormConfig):
    window: int = 3  # co-occurrence: a within `window` steps after b
    directed: bool = True  # only "a follows b" (sequential); false = both orders
    alpha: float = 0.5  # asymmetric cosine exponent (0.5 = cosine)
    neighbours: int = 100  # strongest neighbours kept per item (0 = all)
    decay: float = 0.7  # weight of a history item per step of age (1 = no recency decay)

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = {
            "window": self.window >= 1, "neighbours": self.neighbours >= 0, "alpha": 0.0 <= self.alpha <= 1.0,
            "decay": 0.0 < self.decay <= 1.0,
        }
        ranges = {"window": ">= 1", "neighbours": ">= 0", "alpha": "in [0, 1]", "decay": "in (0, 1]"}
        for key, ok in checks.items():
            if not ok:
                raise ModelConfigError(f"invalid model config: model.{key}={getattr(self, key)} must be {ranges[key]}")


class ItemKNN(ClosedFormModel):
    Config = ItemKNNConfig
    cfg: ItemKNNConfig

    def __init__(self, n_items: int, **config: object) -> None:
        check_dense_fits("itemknn", n_items, 3, "set model.neighbours and use a smaller catalog (data.item_core)")
        super().__init__(n_items, **config)

    def fit(self, data: ProcessedData) -> Tensor:
        V = data.n_items + 1
        items = torch.from_numpy(data.train_items.astype(np.int64))  # (N,) all training sequences, concatenated
        lengths = torch.from_numpy(data.train_offsets).diff()
        seq = torch.repeat_interleave(torch.arange(len(lengths)), lengths)  # (N,) the sequence of each position
        pairs = []
        for d in range(1, self.cfg.window + 1):
            same = seq[d:] == seq[:-d]  # (N - d,) both ends in one sequence
            src, dst = items[:-d][same], items[d:][same]
            pairs.append(torch.stack([src, dst]))
            if not self.cfg.directed:
                pairs.append(torch.stack([dst, src]))
        index = torch.cat(pairs, dim=1) if pairs else torch.zeros(2, 0, dtype=torch.long)
        ones = torch.ones(index.shape[1])
        counts = torch.sparse_coo_tensor(index, ones, (V, V), check_invariants=False).coalesce().to_dense()  # (V, V)
        counts.fill_diagonal_(0.0)  # an item does not recommend itself
        n = torch.bincount(items, minlength=V).float().clamp_min(1.0)  # (V,)
        sim = counts / (n[:, None] ** self.cfg.alpha) / (n[None, :] ** (1.0 - self.cfg.alpha))  # (V, V)
        if 0 < self.cfg.neighbours < V:
            vals, cols = sim.topk(self.cfg.neighbours, dim=1)  # (V, k)
            sim = torch.zeros_like(sim).scatter_(1, cols, vals)
        sim[0] = 0.0
        return sim  # (V rows = history item b, V cols = candidate a)

    def query(self, items: Tensor) -> Tensor:
        age = torch.arange(items.shape[1] - 1, -1, -1, device=items.device, dtype=torch.float32)  # newest = 0
        return bag_of_items(items, self.n_items + 1, self.cfg.decay**age)  # (B, V)
