"""Candidate–candidate similarity for re-ranking: from item categories (cosine of multi-hot vectors) or embeddings.

Both are Gram matrices of unit-norm feature rows, ``S = F Fᵀ``, hence positive semi-definite (a valid DPP kernel
factor). An item without features (no category, zero embedding) has a zero row; its diagonal entry is set to 1 (adding
``e_i e_iᵀ`` keeps ``S`` PSD), so every candidate has self-similarity exactly 1 and similarity 0 to featureless items.
Categories: :math:`S_{ij} = |C_i \\cap C_j| / \\sqrt{|C_i| |C_j|}`; embeddings: :math:`S_{ij} = \\cos(e_i, e_j)`
(may be negative); jaccard: :math:`S_{ij} = |C_i \\cap C_j| / |C_i \\cup C_j|` (the Tanimoto kernel, PSD; the
similarity that ``divrec.metrics.IntraListDiversity`` measures), computed from each item's category ids
(``divrec.metrics.category_slots``) without a ``(B, N, C)`` multi-hot.

Greedy re-rankers only need the rows of ``S`` for the items they pick, so ``SimilarityRows`` computes a row on demand
(``O(N·D)`` per row from features) instead of materialising the ``(B, N, N)`` matrix.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from divrec.metrics.diversity import category_slots

SimilarityKind = Literal["categories", "jaccard", "embeddings"]


class SimilarityRows:
    """Rows of a batch of ``(B, N, N)`` candidate similarity matrices, given either as the matrix or as features.

    ``SimilarityRows(matrix=S)`` wraps an explicit ``(B, N, N)`` ``S``; ``SimilarityRows(features=F)`` uses
    ``S = F Fᵀ`` with the diagonal set to 1 (``F``: ``(B, N, D)`` unit-norm or zero rows).
    """

    def __init__(
        self,
        matrix: Tensor | None = None,
        features: Tensor | None = None,
        slots: Tensor | None = None,
        n_categories: int = 0,
    ) -> None:
        if slots is not None:  # Jaccard from (B, N, S) category ids padded with the sentinel n_categories
            self.slots, self.n_categories, self.matrix, self.features = slots, n_categories, None, None
            self.batch, self.n = slots.shape[0], slots.shape[1]
            self.dtype, self.device = torch.float32, slots.device
            self.sizes = (slots < n_categories).sum(-1)  # (B, N)
            return
        self.slots = None
        if (matrix is None) == (features is None):
            raise ValueError("give exactly one of matrix (B, N, N) or features (B, N, D)")
        if matrix is not None and (matrix.dim() != 3 or matrix.shape[1] != matrix.shape[2]):
            raise ValueError(f"matrix must be (B, N, N), got {tuple(matrix.shape)}")
        if features is not None and features.dim() != 3:
            raise ValueError(f"features must be (B, N, D), got {tuple(features.shape)}")
        self.matrix, self.features = matrix, features
        ref = matrix if matrix is not None else features
        assert ref is not None
        self.batch, self.n = ref.shape[0], ref.shape[1]
        self.dtype, self.device = ref.dtype, ref.device

    def diag(self) -> Tensor:
        """``(B, N)`` self-similarities."""
        if self.matrix is not None:
            return self.matrix.diagonal(dim1=1, dim2=2)
        return torch.ones(self.batch, self.n, dtype=self.dtype, device=self.device)

    def row(self, pos: Tensor) -> Tensor:
        """``(B, N)`` row ``S[b, pos[b], :]`` for ``pos`` ``(B,)`` positions in ``0..N-1``."""
        idx = pos.long().clamp(0, self.n - 1)
        if self.slots is not None:
            return self._jaccard_row(idx)
        if self.matrix is not None:
            return self.matrix.gather(1, idx.view(-1, 1, 1).expand(-1, 1, self.n)).squeeze(1)
        f = self.features
        assert f is not None
        fj = f.gather(1, idx.view(-1, 1, 1).expand(-1, 1, f.shape[2]))  # (B, 1, D)
        row = torch.bmm(f, fj.transpose(1, 2)).squeeze(2)  # (B, N)
        return row.scatter(1, idx.view(-1, 1), 1.0)

    def _jaccard_row(self, idx: Tensor) -> Tensor:
        """``(B, N)`` Jaccard similarity to the candidate at ``idx`` ``(B,)``; featureless items: 1 to themselves,
        0 to everything else."""
        s, b = self.slots, self.batch
        assert s is not None
        sj = s.gather(1, idx.view(-1, 1, 1).expand(-1, 1, s.shape[2]))  # (B, 1, S)
        match = (s.unsqueeze(-1) == sj.unsqueeze(2)) & (s < self.n_categories).unsqueeze(-1)  # (B, N, S, S)
        inter = match.sum((2, 3)).float()  # (B, N)
        union = (self.sizes + self.sizes.gather(1, idx.view(-1, 1))).float() - inter
        row = torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))
        return row.scatter(1, idx.view(b, 1), 1.0)

    def full(self) -> Tensor:
        """The ``(B, N, N)`` matrix (materialised; for tests and small N)."""
        if self.slots is not None:
            pos = torch.arange(self.n, device=self.device)
            return torch.stack([self._jaccard_row(pos[j].expand(self.batch)) for j in range(self.n)], 1)
        if self.matrix is not None:
            return self.matrix
        f = self.features
        assert f is not None
        s = f @ f.transpose(1, 2)  # (B, N, N)
        s.diagonal(dim1=1, dim2=2).fill_(1.0)
        return s


class ItemSimilarity(nn.Module):
    """Item feature table for candidate similarity: ``kind="categories"`` (``item_categories``: ``(n_items+1, C)``
    multi-hot, e.g. ``divrec.metrics.categories_multi_hot``) or ``kind="embeddings"`` (``item_embeddings``:
    ``(n_items+1, D)``, or per call). Features are L2-normalised once and kept as a non-persistent buffer."""

    table: Tensor | None

    def __init__(
        self,
        kind: SimilarityKind = "categories",
        item_categories: Tensor | None = None,
        item_embeddings: Tensor | None = None,
    ) -> None:
        super().__init__()
        if kind not in ("categories", "jaccard", "embeddings"):
            raise ValueError(f"similarity must be 'categories', 'jaccard' or 'embeddings', got {kind!r}")
        source = item_categories if kind != "embeddings" else item_embeddings
        if kind != "embeddings" and source is None:
            raise ValueError(f"similarity={kind!r} needs item_categories (n_items+1, C)")
        self.kind = kind
        self.n_categories = 0
        if kind == "jaccard":
            assert source is not None
            self.n_categories = int(source.shape[1])
            table = category_slots(source.bool())
        else:
            table = None if source is None else nn.functional.normalize(source.detach().float(), dim=-1)
        self.register_buffer("table", table, persistent=False)

    def rows(
        self, candidates: Tensor, embeddings: Tensor | None = None, dtype: torch.dtype | None = None
    ) -> SimilarityRows:
        """``SimilarityRows`` of the ``(B, N)`` candidates; ``embeddings`` (``(n_items+1, D)``) overrides the stored
        table when ``kind="embeddings"``."""
        table = self.table
        if self.kind == "jaccard":
            assert table is not None
            return SimilarityRows(slots=table.to(candidates.device)[candidates.long()], n_categories=self.n_categories)
        if self.kind == "embeddings" and embeddings is not None:
            table = nn.functional.normalize(embeddings.detach().float(), dim=-1)
        if table is None:
            raise ValueError("similarity='embeddings' needs item embeddings, at construction or in the context")
        feats = table.to(candidates.device)[candidates.long()]  # (B, N, D)
        return SimilarityRows(features=feats if dtype is None else feats.to(dtype))


def candidate_similarity(
    candidates: Tensor, *, item_categories: Tensor | None = None, item_embeddings: Tensor | None = None
) -> Tensor:
    """``(B, N, N)`` similarity between the ``(B, N)`` candidates, from a multi-hot category table (cosine) or an
    embedding table (cosine); exactly one of the two. Diagonal = 1; PSD."""
    if (item_categories is None) == (item_embeddings is None):
        raise ValueError("give exactly one of item_categories or item_embeddings")
    kind: SimilarityKind = "categories" if item_categories is not None else "embeddings"
    return ItemSimilarity(kind, item_categories, item_embeddings).rows(candidates).full()
