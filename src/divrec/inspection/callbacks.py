"""Callbacks that write inspection data to the run's TensorBoard events (enabled in ``conf/callbacks/default.yaml``).

Both act when the model the run reports is evaluated: ``trainer.validate`` outside fitting (``divrec train`` then
validates its best checkpoint; ``divrec eval`` its checkpoint). ``AttentionMaps`` can also log during fit.
"""

from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn
from torch.utils.tensorboard import SummaryWriter

from divrec import names
from divrec.data.types import EvalSplit, ProcessedData
from divrec.data.windows import last_items
from divrec.inspection.explain import explain
from divrec.inspection.figures import attention_image, explanation_markdown
from divrec.lit.module import SeqRecModule
from divrec.metrics.ranking import mask_seen, top_k
from divrec.models import AttentionMapper

log = logging.getLogger(__name__)
ATTENTION, EXPLAIN, EMBEDDINGS = "attention", "explain", "item_embeddings"  # TensorBoard tag prefixes


def tensorboard(trainer: pl.Trainer) -> SummaryWriter | None:
    """The run's TensorBoard writer, or None without a TensorBoard logger."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def item_labels(data: ProcessedData) -> np.ndarray:
    """(n_items + 2,) a readable label per id: the title where the dataset has one, else the raw id; [MASK] last."""
    labels = data.item_titles if data.item_titles is not None else data.item_raw_ids
    labels = np.where(labels == "", data.item_raw_ids, labels).astype(object)
    return np.append(labels, "[MASK]")


def spread_user_rows(split: EvalSplit, n: int) -> np.ndarray:
    """Up to ``n`` rows of distinct users, evenly spread over the users: each user's latest row (a user has several
    validation rows with ``data.split.val_items > 1``; images and tables are keyed by user)."""
    _, from_end = np.unique(split.users[::-1], return_index=True)
    latest = np.sort(len(split) - 1 - from_end)  # (distinct users,) row indices
    if n <= 0 or not len(latest):
        return latest[:0]
    return latest[np.linspace(0, len(latest) - 1, min(n, len(latest))).round().astype(np.int64)]


def _reporting(trainer: pl.Trainer, every_n_epochs: int = 0) -> bool:
    """Validation of the reported model (outside fit), or every n-th epoch of fit when n > 0."""
    if trainer.sanity_checking or not trainer.is_global_zero:
        return False
    if trainer.state.fn != TrainerFn.FITTING:
        return True
    return every_n_epochs > 0 and (trainer.current_epoch + 1) % every_n_epochs == 0


class AttentionMaps(pl.Callback):
    """For ``users`` fixed validation users (evenly spread over the validation users, each one's latest row; 0 = off):
    each layer's attention weights over their history as one image per layer (a heatmap per head), and a text table
    of their top-``k`` recommendations with the ``because`` history items that weighted each most
    (``divrec.inspection.explain``)."""

    AUTO_USERS = 4  # users: auto → this many for models with attention maps; explanations only for the others

    def __init__(self, users: int | str = "auto", k: int = 10, because: int = 3, every_n_epochs: int = 0) -> None:
        if users != "auto" and (not isinstance(users, int) or users < 0):
            raise ValueError(f"callbacks.attention_maps.users={users!r} must be auto or an integer >= 0")
        self.users, self.k, self.because, self.every_n_epochs = users, k, because, every_n_epochs
        self.skipped = False  # the one log line for a model without attention maps / item embeddings

    def n_users(self, backbone: object) -> int:
        """How many users to inspect for this model: ``auto`` = 4, 0 for models with nothing to show."""
        n = self.AUTO_USERS if self.users == "auto" else int(self.users)
        if n and backbone.tower is None:  # closed-form baseline: no embeddings to attribute
            if not self.skipped:
                log.info("%s has no learned item embeddings: attention maps and explanations skipped",
                         type(backbone).__name__)
            self.skipped = True
            return 0
        return n

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = tensorboard(trainer)
        if writer is None or not _reporting(trainer, self.every_n_epochs):
            return
        assert isinstance(pl_module, SeqRecModule)
        n_users = self.n_users(pl_module.backbone)
        if n_users <= 0:
            return
        data = trainer.datamodule.load()  # type: ignore[attr-defined]
        rows = spread_user_rows(data.val, n_users)
        mapper = pl_module.backbone if isinstance(pl_module.backbone, AttentionMapper) else None
        history = self.histories(data, rows, trainer.datamodule.max_len).to(pl_module.device)  # type: ignore[attr-defined]
        labels, step = item_labels(data), trainer.global_step
        users = torch.from_numpy(data.val.users[rows].astype(np.int64)).to(pl_module.device)  # (U,)
        model_inputs = self.model_inputs(pl_module, history, users)
        for row, user_history, inputs, index in zip(rows, history, model_inputs, users[:, None], strict=True):
            user = data.user_raw_ids[data.val.users[row]]
            real = inputs != 0  # left padding → a suffix of real positions
            maps = [  # models without attention (recurrent, filters): explanations only
                m[0][:, real][:, :, real].float().cpu().numpy()
                for m in (mapper.attention_maps(inputs[None], index) if mapper is not None else [])
            ]
            shown = labels[inputs[real].cpu().numpy()]
            for layer, weights in enumerate(maps):
                image = attention_image(weights, shown, f"user {user}, layer {layer}")
                writer.add_image(f"{ATTENTION}/user_{user}/layer_{layer}", image, step, dataformats="HWC")
            seen = torch.from_numpy(data.val.history(row).astype(np.int64)).to(pl_module.device)
            writer.add_text(f"{EXPLAIN}/user_{user}", self.table(pl_module, user_history, seen, labels, index), step)
        writer.flush()

    @staticmethod
    def histories(data: ProcessedData, rows: np.ndarray, max_len: int) -> torch.Tensor:
        """(U, L) the last ``max_len`` history items of validation rows ``rows``, left-padded."""
        lengths = np.diff(data.val.history_offsets)[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = np.concatenate([data.val.history(r) for r in rows]).astype(np.int64)
        return torch.from_numpy(last_items(offsets, items, max_len))

    @staticmethod
    def model_inputs(module: SeqRecModule, history: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """What the backbone reads when the objective builds its query (e.g. BERT4Rec's appended [MASK])."""
        seen: list[torch.Tensor] = []
        hook = module.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
        try:
            module.eval()
            module.scores(history, users)
        finally:
            hook.remove()
        return seen[0]

    def table(
        self,
        module: SeqRecModule,
        history: torch.Tensor,
        seen: torch.Tensor,
        labels: np.ndarray,
        user: torch.Tensor | None = None,
    ) -> str:
        """Markdown: the user's top-k (every ``seen`` item excluded) and, per item, its most-weighting history
        items; ``history`` (L,) is what the model reads, ``user`` (1,) the user's index (for user features)."""
        history = history[None]  # (1, L)
        masked = mask_seen(module.scores(history, user), seen[None])
        recommended = top_k(masked, min(self.k, module.backbone.n_items))  # (1, k)
        why = explain(module, history, recommended, self.because, user)
        rows = [
            (labels[item], [(labels[i], w) for i, w in zip(ids.tolist(), ws.tolist(), strict=True) if i])
            for item, ids, ws in zip(recommended[0].tolist(), why.items[0], why.weights[0], strict=True)
        ]
        return explanation_markdown(rows, [labels[i] for i in history[0].tolist() if i])


class EmbeddingProjector(pl.Callback):
    """The item embedding table in TensorBoard's PROJECTOR with metadata columns (raw id, title, categories,
    training count), for the ``max_items`` most frequent training items; written once, for the reported model."""

    def __init__(self, max_items: int = 5000) -> None:
        self.max_items = max_items
        self.done = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = tensorboard(trainer)
        if self.done or self.max_items <= 0 or writer is None or not _reporting(trainer):
            return
        assert isinstance(pl_module, SeqRecModule)
        if pl_module.backbone.tower is None:  # a closed-form baseline: no learned item embeddings
            self.done = True
            return
        data = trainer.datamodule.load()  # type: ignore[attr-defined]
        counts = np.bincount(data.train_items, minlength=data.n_items + 1)[1:]  # items 1..n_items
        ids = np.argsort(-counts, kind="stable")[: self.max_items] + 1
        table = pl_module.backbone.item_table().detach()[torch.from_numpy(ids)].float().cpu()
        header = [names.ITEM, names.TITLE, names.CATEGORIES, "train_count"]
        titles = data.item_titles if data.item_titles is not None else np.full(data.n_items + 1, "")
        offsets, cats = data.item_category_offsets, data.item_category_ids
        metadata = [
            [
                clean(data.item_raw_ids[i]),
                clean(titles[i]),
                clean("|".join(data.category_names[cats[offsets[i] : offsets[i + 1]]]) if len(cats) else ""),
                str(counts[i - 1]),
            ]
            for i in ids.tolist()
        ]
        writer.add_embedding(
            table, metadata=metadata, metadata_header=header, tag=EMBEDDINGS, global_step=trainer.global_step
        )
        writer.flush()
        self.done = True


def clean(value: object) -> str:
    """A metadata cell: no tabs/newlines (the projector's TSV), never empty."""
    text = " ".join(str(value).split())
    return text or "-"
