"""The LightningModule: composes a backbone, an objective, optimizer/scheduler factories and ranking metrics.

It holds no model or loss logic of its own: training asks the objective for a loss, evaluation asks it for one
query vector per user and ranks the whole catalog with the backbone's tied item table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor

from divrec import names
from divrec.metrics import (
    DiversityEvaluator,
    RankingEvaluator,
    RankMetric,
    chunked_ranking,
    mask_scores,
    target_ranks,
    top_k,
)
from divrec.metrics.mixed import mixed_ranking
from divrec.metrics.pointwise import PointwiseEvaluator
from divrec.models import SequenceEncoder
from divrec.rerank import RerankContext, Reranker, list_ranks, rerank_candidates, rerank_lists
from divrec.tasks import Objective

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class TargetRank(RankMetric):
    """Each test user's 1-based target rank, the one every rank metric was computed from (full ranking; with a
    re-ranker, the position in the re-ranked list or ``k + 1``, see ``list_ranks``), saved as ``test/rank`` in
    ``per_user.parquet`` so that any rank metric can be recomputed from it."""

    name = names.RANK

    def _per_user(self, ranks: Tensor) -> Tensor:
        return ranks


class SeqRecModule(pl.LightningModule):
    def __init__(
        self,
        backbone: SequenceEncoder,
        task: Objective,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        ks: Sequence[int] = (5, 10, 20),
        reranker: Reranker | None = None,
        rerank_candidates: int = 200,
        diversity: Mapping[str, DiversityEvaluator] | None = None,
        diversity_during_fit: bool = False,
        eval_chunk_size: int | None = None,
        mixed_precision: bool = False,
    ) -> None:
        """``reranker`` (optional) reorders each user's top ``rerank_candidates`` items before val/test metrics;
        ``diversity`` maps a stage to the beyond-accuracy evaluator of its final lists, applied in ``validate`` and
        ``test`` (and in the per-epoch validations of ``fit`` only with ``diversity_during_fit``); ``eval_chunk_size``
        (None = one score matrix per batch) ranks the catalog that many items at a time with the same results
        (``divrec.metrics.chunked``), so evaluation memory does not grow with batch x catalog. ``mixed_precision``
        (``trainer.precision=bf16-mixed``): queries are encoded under bf16 autocast also outside the Trainer
        (recommend, serve) and the plain evaluation scores the catalog in bf16 with exact fp32 rescoring of every
        rank and top-K the bf16 scores cannot decide (``divrec.metrics.mixed``); item scores are never left in
        bf16, whose 8-bit mantissa would tie thousands of items."""
        super().__init__()
        task.check_backbone(backbone.spec())
        self.backbone, self.task = backbone, task
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.reranker, self.rerank_candidates = reranker, rerank_candidates
        self.list_len = max(ks)
        self.diversity = torch.nn.ModuleDict(dict(diversity or {}))
        self.diversity_during_fit = diversity_during_fit
        if eval_chunk_size is not None and eval_chunk_size < 1:
            raise ValueError(f"metrics.eval_chunk_size={eval_chunk_size} must be >= 1 or null")
        self.eval_chunk_size, self.mixed_precision = eval_chunk_size, mixed_precision
        self.run_config: dict[str, Any] | None = None  # the resolved run config, stored in every checkpoint
        self.test_per_user: dict[str, Tensor] = {}  # per-user values of the last test epoch (per_user.parquet)
        self.evaluators = torch.nn.ModuleDict(
            {s: RankingEvaluator(stage=s, n_items=backbone.n_items, ks=list(ks)) for s in (names.VAL, names.TEST)}
        )
        self.test_ranks = TargetRank(k=1)  # per-user ranks for per_user.parquet (k unused)
        self.pointwise = torch.nn.ModuleDict(  # AUC / log-loss for objectives that score (user, item) pairs
            {s: PointwiseEvaluator(s) for s in (names.VAL, names.TEST)} if task.scores_pairs else {}
        )

    # --- training ------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        losses = self.task.loss(self.backbone, batch)
        size = batch[names.ITEMS].shape[0]
        self.log(names.metric_key(names.TRAIN, names.LOSS), losses[names.LOSS], prog_bar=True, batch_size=size)
        for key, value in losses.items():
            if key != names.LOSS:
                self.log(names.metric_key(names.TRAIN, key), value, batch_size=size)
        return losses[names.LOSS]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.task.parameter_groups(self.backbone, self))
        for group in optimizer.param_groups:  # layer-wise learning rates (task=finetune), before any scheduler
            group["lr"] *= group.get(names.LR_SCALE, 1.0)
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint[names.CONFIG_KEY] = self.run_config

    # --- evaluation ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def query(self, history: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) histories (and (B,) user indices, for user features) → (B, D) query vectors (fp32 or wider),
        encoded under bf16 autocast with ``mixed_precision``, in fp32 without (whatever the caller's autocast)."""
        with torch.autocast(history.device.type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            query = self.task.query(self.backbone, history, users)  # (B, D)
        return query.to(torch.promote_types(query.dtype, torch.float32))  # bf16 → fp32; fp64 models stay fp64

    @torch.no_grad()
    def scores(self, history: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) histories (and (B,) user indices) → (B, V) fp32 scores over item ids 0..n_items (unmasked)."""
        query = self.query(history, users)
        with torch.autocast(history.device.type, enabled=False):  # exact fp32 scores, never bf16 ones
            return self.backbone.score(query)  # (B, V)

    def _eval_step(self, stage: str, batch: dict[str, Tensor]) -> None:
        with torch.autocast(batch[names.HISTORY].device.type, enabled=False):  # only ``query`` may run in bf16
            self._ranked_step(stage, batch)

    def _ranked_step(self, stage: str, batch: dict[str, Tensor]) -> None:
        target, seen, users = batch[names.TARGET], batch[names.SEEN], batch.get(names.USER_INDEX)
        if self.eval_chunk_size is not None:
            ranks, lists = self._chunked_ranks_and_lists(batch, self.eval_chunk_size)
        elif self.reranker is None and self.mixed_precision:
            ranks, _, lists = self._mixed_ranking(batch, self.list_len)
        elif self.reranker is None:
            masked = mask_scores(self.scores(batch[names.HISTORY], users), seen, target, inplace=True)  # (B, V)
            ranks, lists = target_ranks(masked, target), top_k(masked, self.list_len)
        else:
            masked = mask_scores(self.scores(batch[names.HISTORY], users), seen, target, inplace=True)  # (B, V)
            lists = rerank_lists(masked, self.list_len, self.reranker, self.rerank_candidates, self._context(seen))
            ranks = list_ranks(lists, target)  # positions in the re-ranked lists
        self.evaluators[stage].update_ranked(ranks, lists, users)
        if stage == names.TEST:
            self.test_ranks.update(ranks)
        if stage in self.pointwise:
            self.pointwise[stage].update(*self.task.pointwise(self.backbone, batch))
        if self._measures_diversity(stage):
            self.diversity[stage].update(lists, histories=seen)

    def _context(self, seen: Tensor) -> RerankContext:
        return RerankContext(histories=seen, item_embeddings=self.backbone.item_table().detach())

    @torch.no_grad()
    def _chunked_ranks_and_lists(self, batch: dict[str, Tensor], chunk_size: int) -> tuple[Tensor, Tensor]:
        """What the plain path computes, ``eval_chunk_size`` items at a time (``chunked_ranking``)."""
        target, seen = batch[names.TARGET], batch[names.SEEN]
        table = self.backbone.item_table()
        n_top = self.list_len
        if self.reranker is not None:
            n_top = min(max(self.rerank_candidates, self.list_len), table.shape[0])
        query = self.query(batch[names.HISTORY], batch.get(names.USER_INDEX))  # (B, D)
        ranks, vals, ids, lse = chunked_ranking(query, table, seen, target, n_top, chunk_size)
        if self.reranker is None:
            return ranks, ids
        context = replace(self._context(seen), log_normalizer=lse.unsqueeze(1))  # softmax over the whole catalog
        lists = rerank_candidates(vals, ids, self.list_len, self.reranker, context)
        return list_ranks(lists, target), lists

    @torch.no_grad()
    def _mixed_ranking(self, batch: dict[str, Tensor], k: int) -> tuple[Tensor, Tensor, Tensor]:
        """(B,) ranks, (B, k) scores and ids from bf16 scores, exact after fp32 rescoring (``mixed_ranking``)."""
        query = self.query(batch[names.HISTORY], batch.get(names.USER_INDEX))  # (B, D) fp32
        table = self.backbone.item_table()
        return mixed_ranking(query, table, batch[names.SEEN], batch[names.TARGET], k)

    def _measures_diversity(self, stage: str) -> bool:
        fitting = self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        return stage in self.diversity and (self.diversity_during_fit or not fitting)

    def _eval_epoch_end(self, stage: str) -> None:
        evaluators = [self.evaluators[stage], *([self.diversity[stage]] if self._measures_diversity(stage) else [])]
        if stage == names.TEST:  # same users in the same order in every evaluator of the stage
            self.test_per_user = {k: v.detach().cpu() for e in evaluators for k, v in e.per_user().items()}
            self.test_per_user[names.metric_key(names.TEST, names.RANK)] = self.test_ranks.per_user().cpu()
            self.test_ranks.reset()
        evaluators += [self.pointwise[stage]] if stage in self.pointwise else []  # pairs, not users: no per-user
        for evaluator in evaluators:
            self.log_dict(evaluator.compute(), prog_bar=False, sync_dist=False)
            evaluator.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(names.VAL, batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end(names.VAL)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(names.TEST, batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end(names.TEST)
