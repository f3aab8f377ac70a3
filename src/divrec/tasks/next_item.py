"""Next-item prediction objectives for causal (SASRec-style) models."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from divrec import names
from divrec.data.types import ProcessedData
from divrec.models import SequenceEncoder, device_of
from divrec.tasks.base import NextItemPositions, Objective, TaskConfigError
from divrec.tasks.chunked_ce import chunked_cross_entropy
from divrec.tasks.fused_ce import fused_cross_entropy
from divrec.tasks.samplers import NegativeSampler, UniformSampler


class NextItemCE(NextItemPositions, Objective):
    """Full-softmax cross-entropy over the whole catalog at every non-padding position.

    loss = mean over positions t of  -log softmax(h_t · E^T)[i_{t+1}], logits computed only where both the input
    and the next item are real (never at padding). Column 0 (padding) is excluded from the softmax.
    ``chunk_size`` (None = plain): compute the same loss and gradients ``chunk_size`` items at a time
    (``chunked_cross_entropy``), so memory is O(positions x chunk_size) instead of O(positions x n_items).
    ``fused`` (default): the loss and its gradients in one pass over blocks of positions (``fused_cross_entropy``,
    the same values up to float rounding, ~2x faster in fp32 and ~3x under ``trainer.precision=bf16-mixed``);
    false = ``F.cross_entropy`` on one ``(positions, n_items)`` logit matrix. ``compile_output``: the fused
    layer's per-block softmax and gradient through torch.compile (measured in experiments/speed; a few seconds of
    compilation at the first step, cached across runs).
    """

    requires_causal = True

    def __init__(
        self, label_smoothing: float = 0.0, chunk_size: int | None = None, positions: str = "all",
        fused: bool = True, compile_output: bool = False,
    ) -> None:
        super().__init__()
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"task.chunk_size={chunk_size} must be >= 1 or null")
        self.label_smoothing, self.chunk_size, self.fused = label_smoothing, chunk_size, fused
        self.compile_output = compile_output
        self.set_positions(positions)

    def loss(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        hidden, targets = self.states(backbone, batch)  # (N, D), (N,)
        loss = softmax_ce(
            backbone, hidden, targets, self.label_smoothing, self.chunk_size, self.fused, self.compile_output
        )
        return {names.LOSS: loss}


def softmax_ce(
    backbone: SequenceEncoder, hidden: Tensor, targets: Tensor, label_smoothing: float, chunk_size: int | None,
    fused: bool = True, compiled: bool = False,
) -> Tensor:
    """Full-softmax CE of (N, D) states against items 1..n_items for (N,) target ids: in item chunks when
    ``chunk_size``, else fused over blocks of positions when ``fused``, else on one (N, n_items) logit matrix.
    The fused path runs its matrix products in bf16 under bf16 autocast, its sums in fp32."""
    if chunk_size is None and not fused:
        logits = backbone.item_logits(hidden)  # (N, n_items): column j = item j + 1
        return F.cross_entropy(logits, targets - 1, label_smoothing=label_smoothing)
    table = backbone.item_vectors()[1 : backbone.n_items + 1]  # (n_items, D), the rows item_logits uses
    if chunk_size is None:
        return fused_cross_entropy(hidden, table, targets - 1, label_smoothing, compiled=compiled)
    return chunked_cross_entropy(hidden, table, targets - 1, chunk_size, label_smoothing)


SHARES = ("batch", "position")  # NextItemSampledSoftmax.share: one negative set per batch, or one per position
POSITION_LOGITS = ("auto", "gather", "table")  # how per-position negatives' logits are computed (same values)
TABLE_RATIO = 64  # auto: the table path when n_items <= TABLE_RATIO * n_negatives (measured, experiments/speed)
TABLE_MAX_BYTES = 2**30  # ...and its (N, n_items) fp32 logits stay under 1 GiB
TABLE_BLOCK_ROWS = 1024  # rows of the full logit matrix per product on the table path


def table_logits(hidden: Tensor, table: Tensor, ids: Tensor) -> Tensor:
    """(N, D) states, (V, D) item table and (N, n) item ids → (N, n) logits h_t · e_{ids[t, j]}, read from blocks of
    the full (rows, V) logit matrix (one matrix product per block) instead of an (N, n, D) gather of embeddings:
    the same values, faster when V is small next to n x the gather's cost (its backward is a scatter-add of N·n
    rows into the table)."""
    blocks = zip(hidden.split(TABLE_BLOCK_ROWS), ids.split(TABLE_BLOCK_ROWS), strict=True)
    parts = [(h @ table.T).gather(1, i) for h, i in blocks]  # (rows, V) logits → (rows, n)
    return torch.cat(parts)  # (N, n)


def sample_negatives(n: int, n_neg: int, n_items: int, device: torch.device) -> Tensor:
    """(n, n_neg) item ids drawn uniformly from 1..n_items (a sampled id may equal the positive; its effect on
    the loss is O(1/n_items) and the original SASRec accepts the same)."""
    return UniformSampler().sample((n, n_neg), n_items, device)


class SampledNegatives(NextItemPositions, Objective):
    """Base of the next-item objectives that score each positive against ``n_negatives`` items drawn by
    ``sampler`` (default: uniform over 1..n_items, with replacement)."""

    requires_causal = True

    def __init__(self, n_negatives: int = 1, sampler: NegativeSampler | None = None, positions: str = "all") -> None:
        super().__init__()
        if n_negatives < 1:
            raise ValueError(f"task.n_negatives={n_negatives} must be >= 1")
        self.n_negatives = n_negatives
        self.sampler = sampler if sampler is not None else UniformSampler()
        self.set_positions(positions)

    def bind(self, backbone: SequenceEncoder, data: ProcessedData) -> None:
        self.sampler.bind(data)  # e.g. popularity counts

    def sample(self, shape: tuple[int, ...], backbone: SequenceEncoder) -> Tensor:
        """Negative item ids of ``shape`` (a sampled id may equal the positive; see each objective)."""
        return self.sampler.sample(shape, backbone.n_items, device_of(backbone))


class NextItemBCE(SampledNegatives):
    """Original SASRec loss: binary cross-entropy of each positive against ``n_negatives`` uniform negatives.

    loss = mean_t [ -log σ(h_t·e_pos) - (1/n_neg) Σ_j log(1 - σ(h_t·e_neg_j)) ]
    """


    def loss(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        hidden, targets = self.states(backbone, batch)  # (N, D), (N,)
        neg = self.sample((len(targets), self.n_negatives), backbone)  # (N, n); a hit on the positive: O(1/n_items)
        emb = backbone.embed_items
        pos_logit = (hidden * emb(targets)).sum(-1)  # (N,)
        neg_logit = torch.einsum("nd,nkd->nk", hidden, emb(neg))  # (N, n)
        loss = F.softplus(-pos_logit).mean() + F.softplus(neg_logit).mean()
        return {names.LOSS: loss}


class NextItemSampledSoftmax(SampledNegatives):
    """Softmax over the positive and ``n_negatives`` negatives, with log-Q correction. ``share="batch"`` draws one
    set of negatives for the whole batch (one (N, D) x (D, n) product); ``share="position"`` draws a set per
    position, as RecTools' SASRec does: n times more distinct negatives per step. ``position_logits`` says how
    those (N, n) logits are computed, with the same values: ``gather`` the (N, n, D) negative embeddings, or
    ``table`` read them from blocks of the full (N, V) logit matrix (``table_logits``: matrix products; on Beauty's
    12k items and 256 negatives 1.4x faster at width 64, 2.3x at 256, experiments/speed); ``auto`` takes ``table``
    when n_items <= 64 x n_negatives and the (N, n_items) fp32 logits fit in 1 GiB.

    With ``n`` negatives drawn from ``q`` and the expected count ``Q(i) = n q(i)``, every logit is corrected to
    ``s'_i = s_i - log Q(i)`` (the positive's too) and
    loss = mean_t -log( exp(s'_pos) / (exp(s'_pos) + Σ_j exp(s'_neg_j)) ), as in TensorFlow's
    ``sampled_softmax_loss`` (Jean et al., 2015; Yi et al., RecSys 2019). Negatives equal to the position's
    positive (accidental hits) are removed. With a uniform sampler the correction is a constant and cancels;
    ``logq_correction=false`` turns it off (biased towards popular items under a popularity sampler).
    """

    def __init__(
        self, n_negatives: int = 256, sampler: NegativeSampler | None = None, logq_correction: bool = True,
        positions: str = "all", share: str = "batch", position_logits: str = "auto",
    ) -> None:
        super().__init__(n_negatives, sampler, positions)
        if share not in SHARES:
            raise TaskConfigError(f"task.share={share!r} is not one of {list(SHARES)}")
        if position_logits not in POSITION_LOGITS:
            raise TaskConfigError(f"task.position_logits={position_logits!r} is not one of {list(POSITION_LOGITS)}")
        self.logq_correction = logq_correction
        self.share, self.position_logits = share, position_logits

    def through_table(self, n_positions: int, n_items: int) -> bool:
        """Whether per-position negative logits come from the full logit matrix (``table_logits``)."""
        if self.share != "position" or self.position_logits == "gather":
            return False
        fits = n_positions * n_items * 4 <= TABLE_MAX_BYTES
        return self.position_logits == "table" or (n_items <= TABLE_RATIO * self.n_negatives and fits)

    def loss(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        hidden, targets = self.states(backbone, batch)  # (N, D), (N,)
        shape = (self.n_negatives,) if self.share == "batch" else (len(targets), self.n_negatives)
        neg = self.sample(shape, backbone)  # (n,) shared by every position, or (N, n): a set per position
        embed = backbone.embed_items
        if self.through_table(len(targets), backbone.n_items):
            neg_logit = table_logits(hidden, backbone.item_table(), neg)  # (N, n), no (N, n, D) gather
            loss = self.logit_loss(hidden, targets, neg, embed(targets), neg_logit, backbone.n_items)
        else:
            loss = self.sampled_loss(hidden, targets, neg, embed(targets), embed(neg), backbone.n_items)
        return {names.LOSS: loss}

    def sampled_loss(
        self, hidden: Tensor, targets: Tensor, neg: Tensor, pos_emb: Tensor, neg_emb: Tensor, n_items: int
    ) -> Tensor:
        """The loss for (N, D) states, (N,) positive ids with their (N, D) embeddings and the negative ids with
        their embeddings: (n,) and (n, D) shared by every position, or (N, n) and (N, n, D) per position."""
        per_position = neg.dim() == 2
        neg_logit = torch.einsum("nd,nkd->nk", hidden, neg_emb) if per_position else hidden @ neg_emb.T  # (N, n)
        return self.logit_loss(hidden, targets, neg, pos_emb, neg_logit, n_items)

    def logit_loss(
        self, hidden: Tensor, targets: Tensor, neg: Tensor, pos_emb: Tensor, neg_logit: Tensor, n_items: int
    ) -> Tensor:
        """``sampled_loss`` from the negatives' logits: (1, n) or (N, n) for (n,) or (N, n) negative ids."""
        pos_logit = (hidden * pos_emb).sum(-1, keepdim=True)  # (N, 1)
        per_position = neg.dim() == 2
        neg_rows = neg if per_position else neg[None, :]  # (N, n) or (1, n)
        if self.logq_correction:
            log_count = math.log(self.n_negatives)  # log Q(i) = log n + log q(i)
            pos_logit = pos_logit - (log_count + self.sampler.log_q(targets, n_items)).to(pos_logit.dtype)[:, None]
            neg_logit = neg_logit - (log_count + self.sampler.log_q(neg_rows, n_items)).to(neg_logit.dtype)
        neg_logit = neg_logit.masked_fill(neg_rows == targets[:, None], float("-inf"))
        logits = torch.cat([pos_logit, neg_logit], dim=1)  # (N, 1 + n)
        return F.cross_entropy(logits, torch.zeros_like(targets))
