"""Beyond-accuracy metrics over top-K recommendation lists: exposure, popularity, diversity and calibration
(item-side helpers in ``divrec.metrics.categories``).

Every metric takes ``(B, >=K)`` item ids (only the first K columns are used), best first, with id 0 an empty slot
(``top_k`` pads with 0 when fewer than K items are rankable) that every metric ignores. Two state kinds, both exact
under a multi-process sync (the same convention as ``divrec.metrics.ranking``):

* exposure metrics (``Gini``, ``ShannonEntropy``) keep per-item recommendation counts ``(n_items+1,)`` with
  ``dist_reduce_fx="sum"``;
* per-user metrics (``Novelty``, ``AveragePopularity``, ``TailShare``, ``IntraListDiversity``,
  ``EmbeddingIntraListDiversity``, ``CategoryCoverage``, ``Miscalibration``) keep one float64 value per user with
  ``dist_reduce_fx="cat"``, so ``per_user()`` can export them. A user whose value is undefined (e.g. ILD of a list
  with fewer than 2 items) stores NaN; ``compute()`` is the mean over the defined values (0.0 when there are none).

Item-side data (training popularity, the category multi-hot matrix, embeddings) is held as non-persistent buffers,
so ``.to(device)`` moves it and checkpoints do not carry it. ``DiversityEvaluator`` bundles them for one stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection

from divrec import names
from divrec.metrics.categories import (
    ArrayLike,
    calibration_kl,
    categories_multi_hot,
    category_distribution,
    category_slots,
    item_popularity,
)
from divrec.metrics.ranking import ItemCoverage, PerUserMetric, _acc_dtype


def _valid_mean(values: Tensor, valid: Tensor) -> Tensor:
    """``(B,)`` mean of ``values`` over the ``valid`` slots per row; NaN for rows with no valid slot."""
    n = valid.sum(1)
    total = torch.where(valid, values, torch.zeros_like(values)).sum(1)
    return torch.where(n > 0, total / n.clamp_min(1), torch.full_like(total, math.nan))


def _pairwise_mean(dist: Tensor, valid: Tensor) -> Tensor:
    """``(B,)`` mean of ``dist`` ``(B, K, K)`` over unordered pairs i<j of valid slots; NaN with fewer than 2."""
    k = dist.shape[-1]
    upper = torch.ones(k, k, dtype=torch.bool, device=dist.device).triu(1)  # (K, K)
    pairs = valid.unsqueeze(2) & valid.unsqueeze(1) & upper  # (B, K, K)
    n = pairs.sum((1, 2))
    total = torch.where(pairs, dist, torch.zeros_like(dist)).sum((1, 2))
    return torch.where(n > 0, total / n.clamp_min(1), torch.full_like(total, math.nan))


# --- exposure metrics (per-item count state, "sum") ------------------------------------------------------------------


class Gini(ItemCoverage):
    r"""Gini@K of item exposure: inequality of how often each catalog item is recommended (0 = uniform, →1 = one item).

    With :math:`c_{(1)} \le \dots \le c_{(n)}` the recommendation counts of all :math:`n = n_{items}` catalog items
    (never-recommended items count 0) sorted ascending:
    :math:`\mathrm{Gini@K} = \sum_{j=1}^{n} (2j - n - 1)\, c_{(j)} / (n \sum_j c_{(j)})` (0.0 with no
    recommendations). Same formula as RecBole's ``GiniIndex``, except that RecBole divides by ``#users * K`` where
    this divides by the number of non-empty slots (identical when every list is full).
    """

    higher_is_better = False
    name: ClassVar[str] = names.GINI

    def compute(self) -> Tensor:
        c = self.counts[1:].to(_acc_dtype(self.counts.device)).sort().values  # (n,)
        total = c.sum()
        if total == 0:
            return torch.zeros((), dtype=c.dtype, device=c.device)
        n = c.numel()
        j = torch.arange(1, n + 1, dtype=c.dtype, device=c.device)
        return ((2 * j - n - 1) * c).sum() / (n * total)


class ShannonEntropy(ItemCoverage):
    r"""Entropy@K of item exposure, in bits.

    :math:`p_i = c_i / \sum_j c_j` with :math:`c_i` the number of top-K slots holding item :math:`i`;
    :math:`H@K = -\sum_{i: p_i > 0} p_i \log_2 p_i` (0.0 with no recommendations; at most
    :math:`\log_2 \min(n_{items}, \#\text{slots})`).
    RecBole's ``ShannonEntropy`` differs: natural log, :math:`p_i = c_i / (\#users \cdot K)`, and the sum is further
    divided by the number of distinct recommended items; so RecBole's value is
    :math:`H@K \cdot \ln 2 / |\{i : c_i > 0\}|` when every list is full.
    """

    name: ClassVar[str] = names.ENTROPY

    def compute(self) -> Tensor:
        c = self.counts[1:].to(_acc_dtype(self.counts.device))
        total = c.sum()
        if total == 0:
            return torch.zeros((), dtype=c.dtype, device=c.device)
        p = c[c > 0] / total
        return -(p * p.log2()).sum()


# --- per-user metrics ("cat" state) ----------------------------------------------------------------------------------


class PerUserListMetric(PerUserMetric):
    """Base for metrics with one value per user's top-K list; ``dist_reduce_fx="cat"`` (exact sync, exportable).

    Subclasses implement ``_per_user(items, **kwargs) -> (B,)`` on the ``(B, K)`` list (0 = empty slot), returning
    NaN where the value is undefined. ``compute()`` = mean over non-NaN users (0.0 if none); ``per_user()`` returns
    all values (NaN included), synced across processes, in process-major update order.
    """

    def _per_user(self, items: Tensor, **kwargs: Any) -> Tensor:
        raise NotImplementedError

    def update(self, topk_items: Tensor, **kwargs: Any) -> None:
        items = torch.as_tensor(topk_items)[:, : self.k].long().to(self.device)  # (B, K)
        if items.numel() and int(items.min()) < 0:
            raise ValueError("item ids must be >= 0")
        self.values.append(self._per_user(items, **kwargs).to(_acc_dtype(self.device)))


class _PopularityMetric(PerUserListMetric):
    """Holds the ``(n_items+1,)`` training popularity counts as the buffer ``popularity`` (float64)."""

    popularity: Tensor

    def __init__(self, k: int, popularity: ArrayLike, **kwargs: Any) -> None:
        super().__init__(k, **kwargs)
        pop = torch.as_tensor(popularity).reshape(-1).to(torch.float64)
        if pop.numel() < 2 or bool((pop < 0).any()):
            raise ValueError("popularity must be non-negative counts of shape (n_items+1,)")
        pop[0] = 0.0
        self.n_items = pop.numel() - 1
        self.register_buffer("popularity", pop, persistent=False)

    def _lookup(self, table: Tensor, items: Tensor) -> Tensor:
        if items.numel() and int(items.max()) > self.n_items:
            raise ValueError(f"item ids must lie in 0..{self.n_items}")
        return table[items]


class Novelty(_PopularityMetric):
    r"""Novelty@K: mean self-information of the recommended items, in bits.

    :math:`p_i = (c_i + s) / (\sum_{j=1}^{n} c_j + s\,n)` with :math:`c_i` the item's training count, :math:`n =
    n_{items}` and additive (Laplace) smoothing :math:`s` (``smoothing``, default 1), so an item never seen in
    training gets the finite :math:`-\log_2(s / (\sum_j c_j + s n))`. Per user
    :math:`\mathrm{Nov}(u) = \frac{1}{|R_u|} \sum_{i \in R_u} -\log_2 p_i` over the non-empty slots
    :math:`R_u` (NaN if none); the metric is the mean over users.
    """

    name: ClassVar[str] = names.NOVELTY
    self_info: Tensor

    def __init__(self, k: int, popularity: ArrayLike, smoothing: float = 1.0, **kwargs: Any) -> None:
        super().__init__(k, popularity, **kwargs)
        if smoothing <= 0:
            raise ValueError(f"smoothing must be > 0, got {smoothing}")
        self.smoothing = float(smoothing)
        c = self.popularity[1:]
        p = (c + smoothing) / (c.sum() + smoothing * self.n_items)
        self.register_buffer("self_info", torch.cat([p.new_zeros(1), -p.log2()]), persistent=False)

    def _per_user(self, items: Tensor, **kwargs: Any) -> Tensor:
        return _valid_mean(self._lookup(self.self_info, items), items > 0)


class AveragePopularity(_PopularityMetric):
    r"""AveragePopularity@K: :math:`\frac{1}{|R_u|} \sum_{i \in R_u} c_i` with :math:`c_i` the item's training
    count, over the non-empty slots :math:`R_u` (NaN if none), averaged over users (as RecBole's
    ``AveragePopularity``)."""

    higher_is_better = False
    name: ClassVar[str] = names.AVG_POPULARITY

    def _per_user(self, items: Tensor, **kwargs: Any) -> Tensor:
        return _valid_mean(self._lookup(self.popularity, items), items > 0)


class TailShare(_PopularityMetric):
    r"""TailShare@K: share of the recommended items that are in the long tail.

    Head :math:`H` = the :math:`\lceil h \cdot n_{items} \rceil` items with the largest training counts (``head_share``
    :math:`h`, default 0.2; ties broken towards the smaller item id); tail = every other catalog item (so all items
    unseen in training are tail unless the head is larger than the seen set). Per user
    :math:`\frac{1}{|R_u|} \sum_{i \in R_u} \mathbb{1}[i \notin H]` over the non-empty slots (NaN if none), averaged
    over users. (RecBole's ``TailPercentage`` instead takes the *least* popular ``tail_ratio`` share as the tail and
    divides by K.)
    """

    name: ClassVar[str] = names.TAIL_SHARE
    is_tail: Tensor

    def __init__(self, k: int, popularity: ArrayLike, head_share: float = 0.2, **kwargs: Any) -> None:
        super().__init__(k, popularity, **kwargs)
        if not 0.0 <= head_share <= 1.0:
            raise ValueError(f"head_share must lie in [0, 1], got {head_share}")
        self.head_share = float(head_share)
        n_head = math.ceil(round(head_share * self.n_items, 9))
        order = torch.sort(-self.popularity[1:], stable=True).indices + 1  # item ids, most popular first
        is_tail = torch.ones(self.n_items + 1, dtype=torch.bool)
        is_tail[order[:n_head]] = False
        is_tail[0] = False
        self.register_buffer("is_tail", is_tail, persistent=False)

    def _per_user(self, items: Tensor, **kwargs: Any) -> Tensor:
        return _valid_mean(self._lookup(self.is_tail, items).to(torch.float64), items > 0)


class _CategoryMetric(PerUserListMetric):
    """Holds the ``(n_items+1, C)`` bool category multi-hot as the buffer ``multi_hot``."""

    multi_hot: Tensor
    slots: Tensor

    def __init__(self, k: int, multi_hot: Tensor, **kwargs: Any) -> None:
        super().__init__(k, **kwargs)
        if multi_hot.dim() != 2 or multi_hot.shape[1] == 0:
            raise ValueError(f"multi_hot must be (n_items+1, C) with C >= 1, got {tuple(multi_hot.shape)}")
        self.n_items = multi_hot.shape[0] - 1
        self.register_buffer("multi_hot", multi_hot.bool(), persistent=False)
        self.register_buffer("slots", category_slots(self.multi_hot), persistent=False)  # (n_items+1, S)

    def _slots(self, items: Tensor) -> Tensor:
        """``(B, K, S)`` category ids of the list items, padded with ``C`` (no ``(B, K, C)`` multi-hot)."""
        self._gather_check(items)
        return self.slots[items]

    def _gather_check(self, items: Tensor) -> None:
        if items.numel() and int(items.max()) > self.n_items:
            raise ValueError(f"item ids must lie in 0..{self.n_items}")



class IntraListDiversity(_CategoryMetric):
    r"""ILD@K by categories: mean pairwise Jaccard distance between the category sets of a list's items.

    :math:`\mathrm{ILD}(u) = \binom{|R_u|}{2}^{-1} \sum_{i<j \in R_u} \bigl(1 - |C_i \cap C_j| / |C_i \cup C_j|\bigr)`
    over the non-empty slots :math:`R_u` (NaN with fewer than 2); two items without categories have distance 0, an
    uncategorised item and a categorised one distance 1. The metric is the mean over users.
    """

    name: ClassVar[str] = names.ILD

    def _per_user(self, items: Tensor, **kwargs: Any) -> Tensor:
        s = self._slots(items)  # (B, K, S)
        n_cat = self.multi_hot.shape[1]
        if s.shape[1] * s.shape[2] ** 2 <= n_cat:  # few categories per item (genres): compare category ids
            real = s < n_cat  # (B, K, S)
            same = (s[:, :, None, :, None] == s[:, None, :, None, :]) & real[:, :, None, :, None]  # (B, K, K, S, S)
            inter = same.sum((3, 4)).to(torch.float64)  # (B, K, K) shared categories
            sizes = real.sum(-1).to(torch.float64)  # (B, K)
        else:  # many per item (Last.fm tags): a (B, K, C) multi-hot product is far smaller than (B, K, K, S, S)
            hot = self.multi_hot.to(items.device)[items.long()].to(torch.float32)  # (B, K, C); counts exact < 2^24
            inter = (hot @ hot.transpose(1, 2)).to(torch.float64)  # (B, K, K)
            sizes = hot.sum(-1).to(torch.float64)  # (B, K)
        union = sizes.unsqueeze(2) + sizes.unsqueeze(1) - inter  # (B, K, K)
        sim = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))
        return _pairwise_mean(1.0 - sim, items > 0)


class EmbeddingIntraListDiversity(PerUserListMetric):
    r"""ILD@K by embeddings: mean pairwise cosine distance of a list's item embeddings.

    :math:`\mathrm{ILD}_{emb}(u) = \binom{|R_u|}{2}^{-1} \sum_{i<j \in R_u} (1 - \cos(e_i, e_j))` over the
    non-empty slots (NaN with fewer than 2; a zero embedding has cosine 0 with everything). The ``(n_items+1, D)``
    embedding matrix is given at construction (``embeddings``) or per call (``update(items, embeddings=E)``,
    e.g. the model's current item table), the latter taking precedence.
    """

    name: ClassVar[str] = names.ILD_EMBEDDING
    embeddings: Tensor | None

    def __init__(self, k: int, embeddings: Tensor | None = None, **kwargs: Any) -> None:
        super().__init__(k, **kwargs)
        self.register_buffer("embeddings", None if embeddings is None else embeddings.detach(), persistent=False)

    def _per_user(self, items: Tensor, embeddings: Tensor | None = None, **kwargs: Any) -> Tensor:
        table = embeddings if embeddings is not None else self.embeddings
        if table is None:
            raise ValueError("EmbeddingIntraListDiversity needs embeddings, at construction or in update()")
        e = nn.functional.normalize(table.detach().to(items.device)[items].to(torch.float64), dim=-1)  # (B, K, D)
        return _pairwise_mean(1.0 - e @ e.transpose(1, 2), items > 0)


class CategoryCoverage(_CategoryMetric):
    r"""CategoryCoverage@K, per user: :math:`|\bigcup_{i \in R_u} C_i| / C` (C = number of categories), averaged over
    users (an empty list covers 0). A per-user choice, so it measures each list's breadth, not the catalog's."""

    name: ClassVar[str] = names.CATEGORY_COVERAGE

    def _per_user(self, items: Tensor, **kwargs: Any) -> Tensor:
        n_cat = self.multi_hot.shape[1]
        s = self._slots(items).flatten(1).sort(1).values  # (B, K*S), sentinel C last
        first = (s[:, :1] < n_cat).sum(1)
        new = ((s[:, 1:] != s[:, :-1]) & (s[:, 1:] < n_cat)).sum(1)  # distinct categories after the first
        return (first + new).to(torch.float64) / n_cat


class Miscalibration(_CategoryMetric):
    r"""Miscalibration@K (Steck 2018): :math:`\mathrm{KL}(p_u \| \tilde q_u)`, per user then averaged.

    :math:`p_u` = category distribution of the user's history, :math:`q_u` = that of the top-K list (both from
    ``category_distribution``: uniform item weights, each item spreads mass :math:`1/|C_i|` over its categories),
    :math:`\tilde q_u = (1-\alpha) q_u + \alpha p_u` (``alpha``, default 0.01),
    :math:`\mathrm{KL} = \sum_{c: p_c > 0} p_c \ln(p_c / \tilde q_c)` in nats. NaN where the history has no
    categorised item. Lower is better. ``update(topk_items, histories)`` with ``histories`` ``(B, L)`` item ids,
    0 = padding.
    """

    higher_is_better = False
    name: ClassVar[str] = names.MISCALIBRATION

    def __init__(self, k: int, multi_hot: Tensor, alpha: float = 0.01, **kwargs: Any) -> None:
        super().__init__(k, multi_hot, **kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        self.alpha = float(alpha)

    def history_distribution(self, histories: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, C)`` history category distributions :math:`p_u` and ``(B,)`` categorised-item counts; compute once
        per batch and pass as ``update(items, history_dist=...)`` to share it between several K."""
        return category_distribution(histories.to(self.device), self.multi_hot, slots=self.slots)

    def _per_user(
        self,
        items: Tensor,
        histories: Tensor | None = None,
        history_dist: tuple[Tensor, Tensor] | None = None,
        **kwargs: Any,
    ) -> Tensor:
        if history_dist is None:
            if histories is None:
                raise ValueError("Miscalibration.update needs histories (B, L) or history_dist")
            history_dist = self.history_distribution(histories)
        p, n_hist = history_dist  # (B, C), (B,)
        if p.shape[0] != items.shape[0]:
            raise ValueError("Miscalibration.update needs histories (B, L) matching the (B, K) lists")
        self._gather_check(items)
        q, _ = category_distribution(items, self.multi_hot, slots=self.slots)  # (B, C)
        kl = calibration_kl(p, q, self.alpha)
        return torch.where(n_hist > 0, kl, torch.full_like(kl, math.nan))


# --- evaluator -------------------------------------------------------------------------------------------------------

EXPOSURE_METRICS: tuple[str, ...] = (names.GINI, names.ENTROPY)
POPULARITY_METRICS: tuple[str, ...] = (names.NOVELTY, names.AVG_POPULARITY, names.TAIL_SHARE)
CATEGORY_METRICS: tuple[str, ...] = (names.ILD, names.CATEGORY_COVERAGE, names.MISCALIBRATION)
DIVERSITY_METRICS: tuple[str, ...] = (*EXPOSURE_METRICS, *POPULARITY_METRICS, *CATEGORY_METRICS, names.ILD_EMBEDDING)

EmbeddingSource = Tensor | Callable[[], Tensor]


class DiversityEvaluator(nn.Module):
    """All beyond-accuracy metrics of one stage, keyed ``metric_key(stage, name, k)`` (e.g. ``"test/ild@10"``).

    Usage (next to a ``RankingEvaluator``; ``top_k`` of the masked scores gives the lists)::

        div = DiversityEvaluator.from_data(data, names.TEST, (10, 20), embeddings=lambda: model.item_table())
        div.update(top_k(masked_scores, 20), histories=batch[names.HISTORY])
        metrics = div.compute(); div.reset()

    Which metrics are available depends on the inputs: Gini and entropy always; novelty, average popularity and tail
    share with ``popularity``; ILD, category coverage and miscalibration with categories (non-empty); embedding ILD
    with ``embeddings``. ``metrics`` picks a subset (default: every available one; asking for one whose input is
    missing raises).

    Args:
        stage: key prefix.
        n_items: catalog size (items ``1..n_items``).
        ks: cut-offs; ``update`` needs lists of at least ``max(ks)`` columns.
        item_category_offsets, item_category_ids: CSR item categories (``ProcessedData``), or None.
        n_categories: number of categories (default ``max(id) + 1``).
        popularity: ``(n_items+1,)`` training counts (``item_popularity``), or None.
        embeddings: ``(n_items+1, D)`` tensor, or a zero-argument getter called at every ``update`` (a live model
            table), or None.
        head_share: ``TailShare`` head size. alpha: ``Miscalibration`` mixing weight. novelty_smoothing: ``Novelty``.
        **metric_kwargs: forwarded to every torchmetrics ``Metric``.
    """

    def __init__(
        self,
        stage: str,
        n_items: int,
        ks: Sequence[int] = (5, 10, 20),
        *,
        item_category_offsets: ArrayLike | None = None,
        item_category_ids: ArrayLike | None = None,
        n_categories: int | None = None,
        popularity: ArrayLike | None = None,
        embeddings: EmbeddingSource | None = None,
        metrics: Sequence[str] | None = None,
        head_share: float = 0.2,
        alpha: float = 0.01,
        novelty_smoothing: float = 1.0,
        **metric_kwargs: Any,
    ) -> None:
        super().__init__()
        self.stage, self.n_items = stage, int(n_items)
        self.ks = sorted({int(k) for k in ks})
        if not self.ks or self.ks[0] < 1:
            raise ValueError(f"ks must be non-empty positive integers, got {ks}")
        multi_hot = None
        if item_category_offsets is not None and item_category_ids is not None:
            multi_hot = categories_multi_hot(item_category_offsets, item_category_ids, n_categories)
            if multi_hot.shape[1] == 0:
                multi_hot = None
        self._embedding_getter = embeddings if callable(embeddings) and not isinstance(embeddings, Tensor) else None
        static_emb = embeddings if isinstance(embeddings, Tensor) else None
        available = list(EXPOSURE_METRICS)
        available += list(POPULARITY_METRICS) if popularity is not None else []
        available += list(CATEGORY_METRICS) if multi_hot is not None else []
        available += [names.ILD_EMBEDDING] if embeddings is not None else []
        chosen = available if metrics is None else list(dict.fromkeys(metrics))
        missing = [m for m in chosen if m not in available]
        if missing:
            raise ValueError(f"metrics {missing} are unknown or lack their inputs; available: {available}")
        options = {"head_share": head_share, "alpha": alpha, "smoothing": novelty_smoothing}
        modules: dict[str, Metric] = {}
        self._keys: list[tuple[str, str]] = []  # (key, metric name)
        for name in chosen:
            for k in self.ks:
                key = names.metric_key(stage, name, k)
                modules[key] = _build(name, k, self.n_items, popularity, multi_hot, static_emb, options, metric_kwargs)
                self._keys.append((key, name))
        self.metrics = MetricCollection(modules, compute_groups=False)

    @classmethod
    def from_data(cls, data: Any, stage: str, ks: Sequence[int] = (5, 10, 20), **kwargs: Any) -> DiversityEvaluator:
        """Built from a ``ProcessedData``: training popularity and CSR categories taken from it."""
        has_cats = len(data.item_category_ids) > 0
        return cls(
            stage,
            data.n_items,
            ks,
            item_category_offsets=data.item_category_offsets if has_cats else None,
            item_category_ids=data.item_category_ids if has_cats else None,
            n_categories=len(data.category_names) if has_cats and len(data.category_names) else None,
            popularity=item_popularity(data.train_items, data.n_items),
            **kwargs,
        )

    def metric_keys(self) -> list[str]:
        """Metric keys in output order: by metric name, then K."""
        return [key for key, _ in self._keys]

    @torch.no_grad()
    def update(self, topk_items: Tensor, histories: Tensor | None = None) -> None:
        """``topk_items``: ``(B, >=max(ks))`` item ids best first, 0 = empty; ``histories``: ``(B, L)`` item ids
        (0 = padding), required when miscalibration is tracked."""
        if topk_items.dim() != 2 or topk_items.shape[1] < self.ks[-1]:
            raise ValueError(f"topk_items must be (B, >={self.ks[-1]}), got shape {tuple(topk_items.shape)}")
        emb = self._embedding_getter() if self._embedding_getter is not None else None
        history_dist = None  # the history's category distribution, computed once and shared by every K
        for key, name in self._keys:
            if name == names.MISCALIBRATION:
                if histories is None:
                    raise ValueError("histories are required to update miscalibration")
                metric = self.metrics[key]
                history_dist = history_dist or metric.history_distribution(histories)
                metric.update(topk_items, history_dist=history_dist)
            elif name == names.ILD_EMBEDDING:
                self.metrics[key].update(topk_items, embeddings=emb)
            else:
                self.metrics[key].update(topk_items)

    def compute(self) -> dict[str, float]:
        """Every metric as a Python float (synced across processes)."""
        return {key: float(self.metrics[key].compute()) for key, _ in self._keys}

    def per_user(self) -> dict[str, Tensor]:
        """Per-user values ``(N,)`` of every per-user metric (NaN where undefined)."""
        return {key: m.per_user() for key, m in self.metrics.items(keep_base=True) if isinstance(m, PerUserListMetric)}

    def reset(self) -> None:
        self.metrics.reset()


def _build(
    name: str,
    k: int,
    n_items: int,
    popularity: ArrayLike | None,
    multi_hot: Tensor | None,
    embeddings: Tensor | None,
    options: dict[str, float],
    kwargs: dict[str, Any],
) -> Metric:
    """One metric instance for ``DiversityEvaluator`` (inputs already checked for availability)."""
    if name == names.GINI:
        return Gini(n_items, k, **kwargs)
    if name == names.ENTROPY:
        return ShannonEntropy(n_items, k, **kwargs)
    if name == names.NOVELTY:
        return Novelty(k, popularity, smoothing=options["smoothing"], **kwargs)  # type: ignore[arg-type]
    if name == names.AVG_POPULARITY:
        return AveragePopularity(k, popularity, **kwargs)  # type: ignore[arg-type]
    if name == names.TAIL_SHARE:
        return TailShare(k, popularity, head_share=options["head_share"], **kwargs)  # type: ignore[arg-type]
    if name == names.ILD:
        return IntraListDiversity(k, multi_hot, **kwargs)  # type: ignore[arg-type]
    if name == names.CATEGORY_COVERAGE:
        return CategoryCoverage(k, multi_hot, **kwargs)  # type: ignore[arg-type]
    if name == names.MISCALIBRATION:
        return Miscalibration(k, multi_hot, alpha=options["alpha"], **kwargs)  # type: ignore[arg-type]
    return EmbeddingIntraListDiversity(k, embeddings, **kwargs)
