r"""Determinantal point process re-ranking: fast greedy MAP inference (Chen, Zhang & Zhou, NeurIPS 2018), batched.

Kernel :math:`L = \mathrm{diag}(q)\, S\, \mathrm{diag}(q)` with quality :math:`q_i = \exp(s_i / T)` (scores
:math:`s`, ``temperature`` :math:`T`) and :math:`S` a PSD similarity (``divrec.rerank.similarity``). Greedy MAP adds
:math:`\arg\max_i \log\det L_{Y \cup \{i\}}`. Because :math:`\log\det L_Y = \tfrac{2}{T} \sum_{i \in Y} s_i +
\log\det S_Y`, the paper's quality :math:`\exp(\tfrac{\theta}{2(1-\theta)} r)` is the case
:math:`T = 2(1-\theta)/\theta`.

Algorithm 1 of the paper (incremental Cholesky): with :math:`d_i^2` the conditional variance of item :math:`i`
given :math:`Y` and :math:`c_i` its Cholesky row, after picking :math:`j`:
:math:`e_i = (L_{ji} - \langle c_j, c_i \rangle) / d_j`, :math:`c_i \leftarrow [c_i, e_i]`,
:math:`d_i^2 \leftarrow d_i^2 - e_i^2`, and the next pick is :math:`\arg\max_i d_i^2`. It runs here on :math:`S`
rather than :math:`L` (the conditional variance under :math:`L` is :math:`q_i^2` times the one under :math:`S`), and
picks :math:`\arg\max_i 2 s_i / T + \log d_i^2`: the same choice, without overflowing :math:`\exp(s/T)`.

Kernel exhaustion: when no available candidate has :math:`d_i^2 > \varepsilon` (``eps``; :math:`S` has rank below
``k``, e.g. few categories), the remaining slots are filled by score, and those picks do not condition later ones.

Sliding window (``window = w``): each pick conditions only on the last :math:`w-1` selected items, i.e. it adds
:math:`\arg\max_i \log\det L_{W \cup \{i\}} - \log\det L_W`, :math:`W` = the :math:`w-1` most recent picks (so any
:math:`w` consecutive items are diverse), as in the paper's Section 5. Implemented by exact recomputation: the
Cholesky rows of the window items are rebuilt at every step from cached similarity rows (:math:`O(w^2 N)` per step)
instead of the paper's in-place downdate (Algorithm 2); the result is the same selection rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from divrec.rerank.base import Order, RerankContext, Reranker, greedy_loop, normalize_relevance, pick, take
from divrec.rerank.similarity import ItemSimilarity, SimilarityKind, SimilarityRows


def _condition(d2: Tensor, chol: list[Tensor], row: Tensor, pos: Tensor, eps: float) -> None:
    """One Cholesky step of Algorithm 1, in place: condition ``d2`` ``(B, N)`` on the picked ``pos`` ``(B,)`` with
    similarity ``row`` ``(B, N)``; appends the new Cholesky column ``e`` ``(B, N)`` to ``chol``. Users whose pick is
    -1 or has ``d2 <= eps`` (a dependent item) get ``e = 0``: conditioning on it changes nothing."""
    idx = pos.clamp_min(0).unsqueeze(1)  # (B, 1)
    dj2 = d2.gather(1, idx)  # (B, 1)
    good = (pos.unsqueeze(1) >= 0) & (dj2 > eps)  # (B, 1)
    e = row
    if chol:
        c = torch.stack(chol, 1)  # (B, t, N)
        cj = c.gather(2, idx.unsqueeze(1).expand(-1, c.shape[1], 1))  # (B, t, 1)
        e = row - (cj * c).sum(1)  # (B, N)
    e = torch.where(good, e / dj2.clamp_min(eps).sqrt(), torch.zeros_like(e))
    chol.append(e)
    d2.sub_(e * e)


def dpp_greedy(
    scores: Tensor,
    rows: SimilarityRows | Tensor,
    valid: Tensor,
    k: int,
    temperature: float = 1.0,
    window: int | None = None,
    eps: float = 1e-6,
    identity_mix: float = 0.0,
) -> Tensor:
    """``(B, k)`` positions (-1 = empty) of the greedy DPP MAP selection (see the module docstring).

    ``rows``: ``SimilarityRows`` or an explicit ``(B, N, N)`` PSD similarity ``S``. ``window``: None = condition on
    every earlier pick (Algorithm 1), else ``w >= 1``. ``identity_mix`` :math:`\beta \\in [0, 1)`: the kernel uses
    :math:`(1-\beta) S + \beta I` (still PSD, full rank for :math:`\beta > 0`), so near-duplicate items are
    penalised by a finite :math:`\\log \beta`-sized term instead of being excluded once the kernel's rank is spent.
    """
    if not 0.0 <= identity_mix < 1.0:
        raise ValueError(f"identity_mix must lie in [0, 1), got {identity_mix}")
    if isinstance(rows, Tensor):
        rows = SimilarityRows(matrix=rows)
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    dtype = rows.dtype
    log_q2 = torch.where(valid, scores, torch.zeros_like(scores)).to(dtype) * (2.0 / temperature)  # (B, N)
    diag = rows.diag().to(dtype) * (1.0 - identity_mix) + identity_mix  # (B, N)
    out, available = greedy_loop(k, valid)
    d2, chol = diag.clone(), []
    picked_rows: list[Tensor] = []  # similarity rows of the picks, for the window recomputation
    for t in range(k):
        if window is not None:
            d2, chol = diag.clone(), []
            for s in range(max(0, t - window + 1), t):
                _condition(d2, chol, picked_rows[s], out[:, s], eps)
        gain = torch.where(d2 > eps, log_q2 + d2.clamp_min(eps).log(), torch.full_like(d2, float("-inf")))
        pos = pick(gain, available, scores)  # (B,)
        out[:, t] = pos
        take(available, pos)
        if t + 1 < k:
            row = rows.row(pos).to(dtype)  # (B, N)
            if identity_mix > 0:
                row = (1.0 - identity_mix) * row + identity_mix * torch.zeros_like(row).scatter_(
                    1, pos.clamp_min(0).unsqueeze(1), 1.0
                )
            if window is None:
                _condition(d2, chol, row, pos, eps)
            else:
                picked_rows.append(row)
    return out


class DPP(Reranker):
    """DPP re-ranker (greedy MAP, optional sliding window) over category or embedding similarity.

    Args:
        temperature: ``T`` in ``q = exp(s / T)``; smaller = more weight on relevance. With ``normalize=True`` the
            scores are first min–max normalised per user to ``[0, 1]`` (``normalize_relevance``), making ``T``
            independent of the model's score scale.
        window: sliding-window size ``w`` (None = whole list).
        similarity, item_categories, item_embeddings: see ``ItemSimilarity``.
        eps: conditional-variance floor below which the kernel counts as exhausted.
        identity_mix: :math:`\beta` in the kernel :math:`(1-\beta) S + \beta I` (0 = plain ``S``).
    """

    def __init__(
        self,
        temperature: float = 1.0,
        window: int | None = None,
        similarity: SimilarityKind = "categories",
        item_categories: Tensor | None = None,
        item_embeddings: Tensor | None = None,
        normalize: bool = False,
        eps: float = 1e-6,
        identity_mix: float = 0.0,
        order: Order = "greedy",
    ) -> None:
        super().__init__(order)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.temperature, self.window, self.normalize, self.eps = float(temperature), window, normalize, float(eps)
        if not 0.0 <= identity_mix < 1.0:
            raise ValueError(f"identity_mix must lie in [0, 1), got {identity_mix}")
        self.identity_mix = float(identity_mix)
        self.similarity = ItemSimilarity(similarity, item_categories, item_embeddings)

    def select(self, scores: Tensor, candidates: Tensor, valid: Tensor, k: int, context: RerankContext) -> Tensor:
        rows = self.similarity.rows(candidates, context.item_embeddings)
        s = normalize_relevance(scores, valid) if self.normalize else scores
        s = torch.where(valid, s, scores)  # keep invalid entries at -inf/NaN for the fallback
        return dpp_greedy(s, rows, valid, k, self.temperature, self.window, self.eps, self.identity_mix)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, window={self.window}, similarity={self.similarity.kind!r}, "
            f"identity_mix={self.identity_mix}"
        )
