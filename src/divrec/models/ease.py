"""EASE: Embarrassingly Shallow Autoencoder, a closed-form item-item ridge regression (``model=ease``).

Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019 (arXiv:1905.03375):

    G = XᵀX + λI,   P = G⁻¹,   B_ij = -P_ij / P_jj (i ≠ j),   B_jj = 0,   score(u, ·) = x_u B

X is the binary user x item matrix of the training sequences (order is ignored: EASE is not sequential), x_u the
bag of the newest ``max_len`` history items. λ (``l2``) is chosen on validation (``experiments/reproductions``).
The Gram matrix and its inverse are dense (n_items + 1)² float32 matrices: their size is checked against the free
memory before fitting. Fitted in closed form, see ``closed_form.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from divrec.data.types import ProcessedData
from divrec.models.closed_form import (
    ClosedFormConfig,
    ClosedFormModel,
    bag_of_items,
    check_dense_fits,
    user_item_matrix,
)
from divrec.models.contract import ModelConfigError


@dataclass(frozen=True)
class EASEConfig(ClosedFormConfig):
    l2: float = 100.0  # λ, the ridge penalty on B (Steck 2019: 100s to 1000s; chosen on validation)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.l2 > 0:
            raise ModelConfigError(f"invalid model config: model.l2={self.l2} must be > 0 (the ridge lambda)")


class EASE(ClosedFormModel):
    Config = EASEConfig
    cfg: EASEConfig

    def __init__(self, n_items: int, **config: object) -> None:
        check_dense_fits("ease", n_items, 4, "use model=itemknn, or shrink the catalog (data.preprocessing.item_core)")
        super().__init__(n_items, **config)

    def fit(self, data: ProcessedData) -> Tensor:
        x = user_item_matrix(data)  # (U, V) sparse binary
        gram = torch.sparse.mm(x.t().coalesce(), x.to_dense())  # (V, V) XᵀX
        gram.diagonal().add_(self.cfg.l2)
        gram[0, 0] = 1.0  # the padding column is empty: keep G invertible (its row and column of B are zeroed)
        p = torch.cholesky_inverse(torch.linalg.cholesky(gram))  # (V, V)
        del gram
        b = p / (-p.diagonal())[None, :]  # B_ij = -P_ij / P_jj
        b.fill_diagonal_(0.0)
        b[0], b[:, 0] = 0.0, 0.0
        return b  # (V rows = history item i, V cols = candidate j)

    def query(self, items: Tensor) -> Tensor:
        return (bag_of_items(items, self.n_items + 1) > 0).float()  # (B, V) binary bag
