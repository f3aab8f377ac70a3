"""MostPopular: every user gets the items seen most often in training (``model=pop``).

    score(u, j) = count_train(j)

The floor every personalised model must clear; with ``exclude seen`` it is the classic "most popular unseen item"
baseline of RecBole / RecTools. Fitted in closed form (no gradient epochs), see ``closed_form.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from divrec.data.types import ProcessedData
from divrec.models.closed_form import ClosedFormModel


class MostPopular(ClosedFormModel):
    def query_width(self) -> int:
        return 1  # D = 1: one "popularity" direction

    def fit(self, data: ProcessedData) -> Tensor:
        counts = np.bincount(data.train_items.astype(np.int64), minlength=data.n_items + 1).astype(np.float32)
        counts[0] = 0.0  # padding is never an item
        return torch.from_numpy(counts)[None, :]  # (1, V)

    def query(self, items: Tensor) -> Tensor:
        return torch.ones(items.shape[0], 1, device=items.device)  # (B, 1): the same list for everyone
