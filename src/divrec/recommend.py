"""``divrec recommend``: top-K lists from a checkpoint for some or all users, written to Parquet, CSV or JSON.

Each user's whole known sequence (training + held-out items) is the query, every item in it is excluded, and each
row carries the raw ids, rank, score and the item's title/categories where the dataset has them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from divrec import names
from divrec.data.types import ProcessedData
from divrec.data.windows import last_items, right_padded
from divrec.errors import UserError
from divrec.inspection.explain import explain_lists, with_explanations
from divrec.lit.module import SeqRecModule
from divrec.metrics.chunked import chunked_top_k
from divrec.metrics.ranking import mask_seen
from divrec.models import ModelConfigError, check_model_config
from divrec.rerank import RerankContext, rerank_candidates, rerank_lists

log = logging.getLogger(__name__)
WRITERS = {".parquet": "to_parquet", ".csv": "to_csv", ".json": "to_json"}
RANK, SCORE = "rank", "score"


def select_users(data: ProcessedData, wanted: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """Internal indices of the requested raw user ids (all users when None) and the raw ids that are unknown."""
    if wanted is None:
        return np.arange(data.n_users), []
    index = {raw: i for i, raw in enumerate(data.user_raw_ids.tolist())}
    wanted = [str(u) for u in wanted]
    unknown = [u for u in wanted if u not in index]
    return np.array([index[u] for u in wanted if u in index], dtype=np.int64), unknown


def user_sequences(data: ProcessedData, users: np.ndarray, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, L) the last ``max_len`` known items of ``users`` (left-padded: the model input) and (U, S) all of them
    (right-padded: what to exclude)."""
    offsets, items = data.known_sequences()
    sub_offsets = np.concatenate([[0], np.cumsum(np.diff(offsets)[users])]).astype(np.int64)
    sub_items = np.concatenate([items[offsets[u] : offsets[u + 1]] for u in users]) if len(users) else items[:0]
    history = torch.from_numpy(last_items(sub_offsets, sub_items, max_len))
    return history, torch.from_numpy(right_padded(sub_offsets, sub_items))


def batch_lists(
    module: SeqRecModule, history: torch.Tensor, seen: torch.Tensor, users: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, k) item ids and their scores for one batch of users, after the module's re-ranker (if any). With
    ``metrics.eval_chunk_size`` the catalog is scored that many items at a time (``chunked_top_k``: the same lists
    without a (B, V) score matrix), else all at once."""
    context = RerankContext(histories=seen, item_embeddings=module.backbone.item_table().detach())
    chunk = module.eval_chunk_size
    if chunk is None:
        masked = mask_seen(module.scores(history, users), seen, inplace=True)  # (B, V)
        best = rerank_lists(masked, k, module.reranker, module.rerank_candidates, context)  # (B, k)
        return best, masked.gather(1, best)
    table = module.backbone.item_table()
    n_top = k if module.reranker is None else min(max(module.rerank_candidates, k), table.shape[0])
    query = module.task.query(module.backbone, history, users)  # (B, D)
    vals, ids, lse = chunked_top_k(query, table, seen, n_top, chunk)  # (B, N), (B, N), (B,)
    context = replace(context, log_normalizer=lse.unsqueeze(1))  # softmax relevance over the whole catalog
    best = rerank_candidates(vals, ids, k, module.reranker, context)  # (B, k)
    match = best.unsqueeze(2) == ids.unsqueeze(1)  # (B, k, N): where each listed item sits among the candidates
    return best, torch.where(match, vals.unsqueeze(1), float("-inf")).amax(2)


@torch.no_grad()
def top_items(
    module: SeqRecModule, data: ProcessedData, users: np.ndarray, k: int, max_len: int, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(U, k) item ids and scores for ``users``, their whole known sequence excluded, after the module's re-ranker
    (if any) over its top ``rerank_candidates``."""
    history, seen = user_sequences(data, users, max_len)
    user_index = torch.from_numpy(np.asarray(users, dtype=np.int64))  # (U,) for user features
    module.eval()
    ids, scores = [], []
    for start in range(0, len(users), batch_size):
        rows = slice(start, start + batch_size)
        best, best_scores = batch_lists(module, history[rows], seen[rows], user_index[rows], k)
        ids.append(best)
        scores.append(best_scores)
    if not ids:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    return torch.cat(ids).numpy(), torch.cat(scores).numpy()


def as_frame(data: ProcessedData, users: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """One row per (user, rank) with raw ids, score and the item's metadata."""
    k = ids.shape[1]
    flat = ids.reshape(-1)
    frame = pd.DataFrame({
        names.USER: np.repeat(data.user_raw_ids[users], k),
        RANK: np.tile(np.arange(1, k + 1), len(users)),
        names.ITEM: data.item_raw_ids[flat],
        SCORE: scores.reshape(-1),
    })
    if data.item_titles is not None:
        frame[names.TITLE] = data.item_titles[flat]
    if len(data.category_names):
        offsets, cats = data.item_category_offsets, data.item_category_ids
        labels = ["|".join(data.category_names[cats[offsets[i] : offsets[i + 1]]]) for i in range(data.n_items + 1)]
        frame[names.CATEGORIES] = np.asarray(labels, dtype=object)[flat]
    return frame[flat != 0].reset_index(drop=True)  # catalogs smaller than k leave empty slots


def write(frame: pd.DataFrame, path: Path) -> Path:
    method = WRITERS.get(path.suffix)
    if method is None:
        raise UserError(f"recommend.output={path}: unknown format {path.suffix!r}; use one of {sorted(WRITERS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    kwargs = {"index": False} if method != "to_json" else {"orient": "records", "lines": True}
    getattr(frame, method)(tmp, **kwargs)
    tmp.replace(path)
    return path


def recommend(cfg: DictConfig, overrides: Sequence[str] = ()) -> Path:
    """Write the top-``cfg.k`` lists of ``cfg.users`` (None = all) to ``cfg.output``; unknown users are logged and
    listed in ``<output>.unknown_users.txt``."""
    from divrec.pipeline import build, checkpoint_config, load_checkpoint

    checkpoint = load_checkpoint(cfg.ckpt_path)
    cfg = checkpoint_config(cfg, checkpoint, overrides)
    if cfg.get("explain") and not check_model_config(cfg.model).trainable:  # before any data is loaded
        raise ModelConfigError(
            f"explain=true: the checkpoint's model ({cfg.model._target_}) has no learned item embeddings to attribute "
            "scores to; drop explain= or use a learned model's checkpoint (e.g. model=sasrec)"
        )
    datamodule, module = build(cfg)
    module.load_state_dict(checkpoint["state_dict"])
    data = datamodule.load()
    users, unknown = select_users(data, None if cfg.users is None else list(cfg.users))
    output = Path(cfg.output)
    if unknown:
        report = output.with_name(output.name + ".unknown_users.txt")
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text("\n".join(unknown) + "\n")
        log.warning("%d requested user(s) are unknown (e.g. %s); listed in %s", len(unknown), unknown[:5], report)
    ids, scores = top_items(module, data, users, int(cfg.k), datamodule.max_len, datamodule.eval_batch_size)
    frame = as_frame(data, users, ids, scores)
    if cfg.get("explain"):
        history, _ = user_sequences(data, users, datamodule.max_len)
        user_index = torch.from_numpy(np.asarray(users, dtype=np.int64))  # (U,) for user features
        why = explain_lists(module, history, ids, int(cfg.explain_top), datamodule.eval_batch_size, user_index)
        frame = with_explanations(frame, data, ids, why)
    path = write(frame, output)
    print(f"wrote {len(users)} users x top-{cfg.k} to {path}" + (f"; {len(unknown)} unknown" if unknown else ""))
    return path
