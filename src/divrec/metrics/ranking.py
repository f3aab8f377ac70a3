"""Exact full-ranking metrics for leave-one-out sequential recommendation.

Every evaluated user has scores over the whole catalog, ``(B, V+1)`` with column 0 the padding item, one held-out
target item and a set of seen items (the history) that must not be ranked. The pipeline per batch is

    ``mask_scores`` (padding + seen → -inf, target kept) → ``target_ranks`` (one comparison pass) →
    ``top_k`` (one ``torch.topk`` for the largest K, for coverage) → every metric's ``update``.

Rank-based metrics store one value per user (``dist_reduce_fx="cat"``), so a multi-process sync is exact (a
concatenation, not an average of averages) and per-user values can be exported. ``ItemCoverage`` stores per-item
counts (``dist_reduce_fx="sum"``), also exact. ``RankingEvaluator`` bundles all of them for one stage.

Exactness under DDP assumes each user is evaluated once: a sampler that pads the last batch with repeated users
(``DistributedSampler`` with ``drop_last=False``) counts those users twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.utilities.data import dim_zero_cat

from divrec import names

_NEG_INF = float("-inf")


# --- functional core -------------------------------------------------------------------------------------------------


def _check_batch(scores: Tensor, target: Tensor) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be (B, V+1), got shape {tuple(scores.shape)}")
    if target.shape != (scores.shape[0],):
        raise ValueError(f"target must be (B,) with B={scores.shape[0]}, got shape {tuple(target.shape)}")


def mask_scores(scores: Tensor, seen: Tensor, target: Tensor, *, inplace: bool = False) -> Tensor:
    """Set the padding column and every seen item to ``-inf``; the target always keeps its original score.

    Args:
        scores: ``(B, V+1)`` floating scores, column 0 = padding item.
        seen: ``(B, S)`` item ids to exclude, right-padded with 0 (padding is harmless: column 0 is masked anyway).
            ``S`` may be 0.
        target: ``(B,)`` target item ids in ``1..V``. The target is never excluded, even when it is in ``seen``
            (a re-consumed item is a legitimate target).
        inplace: when True, ``scores`` itself is modified and returned (saves one ``(B, V+1)`` copy on the hot
            path); otherwise a masked copy is returned and ``scores`` is untouched.

    Vectorised: two ``scatter_`` calls and one ``gather``, no loop over users.
    """
    _check_batch(scores, target)
    if not scores.is_floating_point():
        raise TypeError(f"scores must be floating point to hold -inf, got {scores.dtype}")
    if seen.dim() != 2 or seen.shape[0] != scores.shape[0]:
        raise ValueError(f"seen must be (B, S) with B={scores.shape[0]}, got shape {tuple(seen.shape)}")
    tgt = target.long().unsqueeze(1)
    kept = scores.gather(1, tgt)  # a new tensor: survives the in-place masking below
    out = mask_seen(scores, seen, inplace=inplace)
    out.scatter_(1, tgt, kept)
    return out


def mask_seen(scores: Tensor, seen: Tensor, *, inplace: bool = False) -> Tensor:
    """Set the padding column and every item of ``seen`` ((B, S), 0-padded) to ``-inf``, with no target to keep
    (recommendation rather than evaluation)."""
    out = scores if inplace else scores.clone()
    out[:, 0] = _NEG_INF
    if seen.numel():
        out.scatter_(1, seen.long(), _NEG_INF)
    return out


def target_ranks(scores: Tensor, target: Tensor) -> Tensor:
    """``(B,)`` int64 1-based rank of each target among the rankable (non ``-inf``) items, PESSIMISTIC on ties.

    ``rank = 1 + #{j != target : s_j >= s_target}``, i.e. every other item tied with the target is ranked ahead
    of it. Why pessimistic: (1) a degenerate model that gives every item the same score gets the worst rank, not
    the best (optimistic ties would make a constant model perfect, and "average" ties still reward it); (2) the
    result depends only on the scores, never on the order ``sort``/``topk`` happen to return tied items in, so it is
    deterministic across devices and runs.

    ``scores`` is expected to be masked (``mask_scores``): items at ``-inf`` are never counted. Implementation is
    one comparison pass, ``(scores >= s_target).sum(1)``, which counts the target itself (hence no ``+1``).
    Edge cases: a target whose own score is ``-inf`` or NaN is ranked last among the rankable items
    (``1 + #{j : s_j > -inf}``); other items with NaN scores never count as ahead of the target.
    """
    _check_batch(scores, target)
    ts = scores.gather(1, target.long().unsqueeze(1))  # (B, 1)
    ok = ts > _NEG_INF  # False for -inf and NaN
    # for a bad target, threshold at the lowest finite value: counts every rankable item, the target excluded
    lowest = torch.finfo(scores.dtype).min
    thr = torch.where(ok, ts, torch.full_like(ts, lowest))
    # int32 accumulation is ~1.6x faster than the default int64 on CPU and exact below 2**31 columns
    count = (scores >= thr).sum(1, dtype=torch.int32).long()
    return count + (~ok).squeeze(1).long()


def top_k(scores: Tensor, k: int) -> Tensor:
    """``(B, k)`` item ids of the ``k`` highest scores, best first; ties go to the lower item id (column).

    Positions that would hold a non-rankable item (score ``-inf`` or NaN, i.e. fewer than ``k`` rankable items),
    or lie beyond the number of columns, are filled with 0 (the padding id), which ``ItemCoverage`` ignores.
    """
    return top_k_scored(scores, k)[1]


def top_k_scored(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``(B, k)`` scores and ids of the ``k`` best columns, ordered by (score descending, id ascending).

    Deterministic: among items tied at the k-th score, the lowest ids are taken, so a chunked ranking
    (``divrec.metrics.chunked``) gives the very same lists. Slots without a rankable item (``-inf``/NaN scores, or
    ``k`` beyond the number of columns) hold score ``-inf`` and id 0. Cost over ``torch.topk``: one comparison pass
    (rows with more ties at the boundary than slots are redone exactly) and two small sorts of the ``(B, k)`` result.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = min(k, scores.shape[-1])
    vals, idx = torch.topk(scores, n, dim=-1, largest=True, sorted=True)
    if n:
        boundary = vals[:, -1:]  # (B, 1) the k-th best score
        ambiguous = (boundary > _NEG_INF).squeeze(1) & (
            (scores == boundary).sum(1, dtype=torch.int32) > (vals == boundary).sum(1, dtype=torch.int32)
        )
        rows = ambiguous.nonzero().squeeze(1)
        if len(rows):
            vals[rows], idx[rows] = _lowest_ids_at_boundary(scores[rows], boundary[rows], n)
    ok = vals > _NEG_INF  # False for -inf and NaN
    vals = torch.where(ok, vals, torch.full_like(vals, _NEG_INF))
    idx = idx.masked_fill(~ok, 0)
    vals, idx = order_by_score_then_id(vals, idx)
    if n < k:
        vals = nn.functional.pad(vals, (0, k - n), value=_NEG_INF)
        idx = nn.functional.pad(idx, (0, k - n), value=0)
    return vals, idx


def _lowest_ids_at_boundary(scores: Tensor, boundary: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """For (R, V) rows whose k-th score ``boundary`` (R, 1) is shared by more items than fit: every item above it
    plus the lowest-id tied items, ``n`` per row, as (scores, ids)."""
    above = scores > boundary
    tied = scores == boundary
    room = n - above.sum(1, keepdim=True)  # (R, 1) slots left for tied items
    chosen = above | (tied & (tied.cumsum(1) <= room))  # exactly n per row
    ids = chosen.nonzero()[:, 1].view(len(scores), n)  # ascending ids per row
    return scores.gather(1, ids), ids


def order_by_score_then_id(vals: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder (B, n) candidates by score descending, ties by id ascending (two stable sorts)."""
    by_id = ids.argsort(dim=1, stable=True)
    vals, ids = vals.gather(1, by_id), ids.gather(1, by_id)
    by_score = vals.argsort(dim=1, descending=True, stable=True)
    return vals.gather(1, by_score), ids.gather(1, by_score)


def _acc_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device supports it (everywhere but Apple MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


# --- rank-based metrics ----------------------------------------------------------------------------------------------


class PerUserMetric(Metric):
    """Base for metrics with one value per evaluated user in a ``dist_reduce_fx="cat"`` list state: multi-process
    sync is exact and the per-user values can be exported.

    ``compute()`` is the mean over the users seen since the last ``reset`` whose value is defined (not NaN); with
    none it returns 0.0 (not NaN, so monitors and loggers never see NaN; torchmetrics warns that ``update`` was
    never called). ``per_user()`` returns every value (synced across processes, in process-major update order).
    Values are accumulated in float64 (float32 on MPS).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    name: ClassVar[str] = ""
    values: list[Tensor]

    def __init__(self, k: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = int(k)
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def _gathered(self) -> Tensor:
        values: list[Tensor] | Tensor = self.values
        if isinstance(values, list) and not values:
            return torch.zeros(0, dtype=_acc_dtype(self.device), device=self.device)
        return dim_zero_cat(values)

    def compute(self) -> Tensor:
        values = self._gathered()
        defined = values[~values.isnan()]
        if defined.numel() == 0:
            return torch.zeros((), dtype=values.dtype, device=values.device)
        return defined.mean()

    def per_user(self) -> Tensor:
        """All per-user values, ``(N,)``; synced across processes when running distributed (like ``compute``)."""
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            process_group=self.process_group,
            should_sync=self._to_sync and not self._is_synced,
            should_unsync=True,
        ):
            return self._gathered().clone()

    def extra_repr(self) -> str:
        return f"k={self.k}"


class RankMetric(PerUserMetric):
    """Base for metrics that are a function of the target's rank: ``update(ranks)`` takes the ``(B,)`` 1-based
    ranks from ``target_ranks``."""

    def _per_user(self, ranks: Tensor) -> Tensor:
        """Per-user metric values from float ranks (>= 1); implemented by subclasses."""
        raise NotImplementedError

    def _hit(self, ranks: Tensor) -> Tensor:
        return (ranks <= self.k).to(ranks.dtype)

    def update(self, ranks: Tensor) -> None:
        ranks = torch.as_tensor(ranks).reshape(-1)
        self.values.append(self._per_user(ranks.to(_acc_dtype(ranks.device))))


class HitRate(RankMetric):
    r"""HR@K: whether any relevant item is in the top K.

    General: :math:`\mathrm{HR@K} = \mathbb{1}[|R \cap \mathrm{top}_K| > 0]`.
    Single target at rank :math:`r`: :math:`\mathbb{1}[r \le K]`.
    """

    name = names.HR

    def _per_user(self, ranks: Tensor) -> Tensor:
        return self._hit(ranks)


class Recall(RankMetric):
    r"""Recall@K: share of the relevant items that are in the top K.

    General: :math:`\mathrm{Recall@K} = |R \cap \mathrm{top}_K| / |R|`.
    Single target at rank :math:`r` (:math:`|R| = 1`): :math:`\mathbb{1}[r \le K]`, identical to HR@K.
    """

    name = names.RECALL

    def _per_user(self, ranks: Tensor) -> Tensor:
        return self._hit(ranks)


class Precision(RankMetric):
    r"""Precision@K: share of the top K that is relevant.

    General: :math:`\mathrm{P@K} = |R \cap \mathrm{top}_K| / K`.
    Single target at rank :math:`r`: :math:`\mathbb{1}[r \le K] / K`.
    """

    name = names.PRECISION

    def _per_user(self, ranks: Tensor) -> Tensor:
        return self._hit(ranks) / self.k


class NDCG(RankMetric):
    r"""NDCG@K with binary relevance and the :math:`\log_2(i+1)` discount.

    General: :math:`\mathrm{DCG@K} = \sum_{i=1}^{K} \mathrm{rel}_i / \log_2(i+1)`,
    :math:`\mathrm{IDCG@K} = \sum_{i=1}^{\min(|R|,K)} 1 / \log_2(i+1)`, :math:`\mathrm{NDCG@K} = \mathrm{DCG@K} /
    \mathrm{IDCG@K}`.
    Single target at rank :math:`r` (IDCG = 1): :math:`\mathbb{1}[r \le K] / \log_2(r+1)`.
    """

    name = names.NDCG

    def _per_user(self, ranks: Tensor) -> Tensor:
        return self._hit(ranks) / torch.log2(ranks + 1)


class MRR(RankMetric):
    r"""MRR@K: reciprocal rank of the first relevant item, 0 if it is not in the top K.

    General: :math:`\mathrm{RR@K} = \max_{i \le K} \mathrm{rel}_i / i`.
    Single target at rank :math:`r`: :math:`\mathbb{1}[r \le K] / r`.
    """

    name = names.MRR

    def _per_user(self, ranks: Tensor) -> Tensor:
        return self._hit(ranks) / ranks


class MAP(RankMetric):
    r"""MAP@K: mean over users of the average precision at K.

    General: :math:`\mathrm{AP@K} = \frac{1}{\min(|R|, K)} \sum_{i=1}^{K} \mathrm{P@i} \cdot \mathrm{rel}_i`.
    Single target at rank :math:`r` (:math:`|R| = 1`, only :math:`i = r` contributes with
    :math:`\mathrm{P@r} = 1/r`): :math:`\mathbb{1}[r \le K] / r` — numerically equal to MRR@K in leave-one-out.
    """

    name = names.MAP

    def _per_user(self, ranks: Tensor) -> Tensor:
        return self._hit(ranks) / ranks


RANK_METRICS: dict[str, type[RankMetric]] = {cls.name: cls for cls in (HitRate, NDCG, MRR, MAP, Precision, Recall)}


# --- catalog coverage ------------------------------------------------------------------------------------------------


class ItemCoverage(Metric):
    r"""Item coverage@K: share of the catalog (items ``1..n_items``) in at least one user's top-K list.

    :math:`\mathrm{Cov@K} = |\bigcup_u \mathrm{top}_K(u) \setminus \{0\}| / n_{items}`.
    State: per-item counts ``(n_items+1,)`` with ``dist_reduce_fx="sum"``, so a multi-process sync is exact.
    ``update(topk_items)`` takes ``(B, >=K)`` item ids (only the first K columns are used); id 0 (padding / fewer
    rankable items than K, see ``top_k``) is ignored.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    name: ClassVar[str] = names.ITEM_COVERAGE
    counts: Tensor

    def __init__(self, n_items: int, k: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(n_items) < 1 or int(k) < 1:
            raise ValueError(f"n_items and k must be >= 1, got n_items={n_items}, k={k}")
        self.n_items = int(n_items)
        self.k = int(k)
        self.add_state("counts", default=torch.zeros(self.n_items + 1, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, topk_items: Tensor) -> None:
        ids = topk_items[..., : self.k].reshape(-1).long().to(self.counts.device)
        counts = torch.bincount(ids, minlength=self.n_items + 1)
        if counts.numel() != self.n_items + 1 or (ids.numel() and int(ids.min()) < 0):
            raise ValueError(f"item ids must lie in 0..{self.n_items}")
        self.counts += counts

    def compute(self) -> Tensor:
        covered = (self.counts[1:] > 0).sum()
        return covered.to(_acc_dtype(self.counts.device)) / self.n_items

    def extra_repr(self) -> str:
        return f"n_items={self.n_items}, k={self.k}"


class _UserIndex(Metric):
    """Concatenates the user indices passed alongside the scores, to label per-user metric values."""

    full_state_update = False
    index: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def update(self, index: Tensor) -> None:
        self.index.append(torch.as_tensor(index).reshape(-1).long())

    def compute(self) -> Tensor:
        index: list[Tensor] | Tensor = self.index
        if isinstance(index, list) and not index:
            return torch.zeros(0, dtype=torch.long, device=self.device)
        return dim_zero_cat(index).long()


# --- evaluator -------------------------------------------------------------------------------------------------------


class RankingEvaluator(nn.Module):
    """All ranking metrics of one stage, keyed ``metric_key(stage, name, k)`` (e.g. ``"val/ndcg@10"``).

    Usage in a LightningModule::

        self.val_metrics = RankingEvaluator(stage=names.VAL, n_items=n_items, ks=(5, 10, 20))
        # validation_step:
        self.val_metrics.update(scores, batch[names.TARGET], batch[names.SEEN])
        # on_validation_epoch_end:
        self.log_dict(self.val_metrics.compute())
        self.val_metrics.reset()

    Args:
        stage: key prefix (``names.VAL`` / ``names.TEST``).
        n_items: catalog size (items ``1..n_items``; score matrices are ``(B, n_items+1)``).
        ks: cut-offs; duplicates are dropped.
        metrics: rank-based metric names (keys of ``RANK_METRICS``); all of them by default.
        coverage: also track ``ItemCoverage`` for every K (costs one ``topk`` for the largest K per batch).
        **metric_kwargs: forwarded to every torchmetrics ``Metric`` (e.g. ``compute_on_cpu=True`` to keep the
            per-user lists off the accelerator, ``sync_on_compute=False``).
    """

    def __init__(
        self,
        stage: str,
        n_items: int,
        ks: Sequence[int] = (5, 10, 20),
        metrics: Sequence[str] | None = None,
        coverage: bool = True,
        **metric_kwargs: Any,
    ) -> None:
        super().__init__()
        self.stage = stage
        self.n_items = int(n_items)
        self.ks = sorted({int(k) for k in ks})
        if not self.ks or self.ks[0] < 1:
            raise ValueError(f"ks must be non-empty positive integers, got {ks}")
        chosen = list(RANK_METRICS) if metrics is None else list(dict.fromkeys(metrics))
        unknown = [m for m in chosen if m not in RANK_METRICS]
        if unknown:
            raise ValueError(f"unknown rank metrics {unknown}; choose from {list(RANK_METRICS)}")
        modules: dict[str, Metric] = {}
        self._rank_keys: list[str] = []
        self._coverage_keys: list[tuple[str, int]] = []
        for name in chosen:
            for k in self.ks:
                key = names.metric_key(stage, name, k)
                modules[key] = RANK_METRICS[name](k, **metric_kwargs)
                self._rank_keys.append(key)
        if coverage:
            for k in self.ks:
                key = names.metric_key(stage, names.ITEM_COVERAGE, k)
                modules[key] = ItemCoverage(self.n_items, k, **metric_kwargs)
                self._coverage_keys.append((key, k))
        # compute_groups=False: metrics with equal states on the first batch (e.g. all zeros) must not be merged
        self.metrics = MetricCollection(modules, compute_groups=False)
        self.users = _UserIndex(**metric_kwargs)

    def metric_keys(self) -> list[str]:
        """Metric keys in output order: rank metrics by name then K, then coverage by K."""
        return [*self._rank_keys, *(key for key, _ in self._coverage_keys)]

    @torch.no_grad()
    def update(
        self,
        scores: Tensor,
        target: Tensor,
        seen: Tensor,
        user_index: Tensor | None = None,
        *,
        inplace: bool = False,
    ) -> Tensor:
        """Mask, rank, take the top max(K) once, update every metric; returns the ``(B,)`` target ranks.

        ``scores``: ``(B, n_items+1)``; ``target``: ``(B,)``; ``seen``: ``(B, S)`` right-padded with 0.
        ``user_index`` (optional, ``(B,)``): recorded so that ``per_user()`` can label its rows; pass it on every
        batch or on none. ``inplace=True`` masks ``scores`` in place (no ``(B, V+1)`` copy; the caller's tensor is
        modified).
        """
        if scores.shape[-1] != self.n_items + 1:
            raise ValueError(f"scores must have n_items+1={self.n_items + 1} columns, got {scores.shape[-1]}")
        masked = mask_scores(scores.detach(), seen, target, inplace=inplace)
        ranks = target_ranks(masked, target)
        self.update_ranked(ranks, top_k(masked, self.ks[-1]) if self._coverage_keys else None, user_index)
        return ranks

    @torch.no_grad()
    def update_ranked(self, ranks: Tensor, lists: Tensor | None, user_index: Tensor | None = None) -> None:
        """Update from precomputed ``(B,)`` target ranks and ``(B, >= max K)`` top lists (e.g. after re-ranking;
        ``lists`` may be None when coverage is off)."""
        for key in self._rank_keys:
            self.metrics[key].update(ranks)
        if self._coverage_keys:
            if lists is None:
                raise ValueError("lists are required to update ItemCoverage")
            for key, k in self._coverage_keys:
                self.metrics[key].update(lists[:, :k])
        if user_index is not None:
            self.users.update(user_index)

    def compute(self) -> dict[str, float]:
        """Every metric as a Python float (synced across processes), ready for ``LightningModule.log_dict``."""
        return {key: float(self.metrics[key].compute()) for key in self.metric_keys()}

    def per_user(self) -> dict[str, Tensor]:
        """Per-user values ``(N,)`` of every rank-based metric, plus ``names.USER_INDEX`` when it was recorded."""
        out: dict[str, Tensor] = {key: self.metrics[key].per_user() for key in self._rank_keys}
        if self.users.update_called:
            index = self.users.compute()
            n = next(iter(out.values())).numel() if out else index.numel()
            if index.numel() != n:
                raise ValueError(f"user_index was recorded for {index.numel()} of {n} users; pass it on every batch")
            out[names.USER_INDEX] = index
        return out

    def reset(self) -> None:
        self.metrics.reset()
        self.users.reset()
