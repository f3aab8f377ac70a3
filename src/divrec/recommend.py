"""``divrec recommend``: top-K lists from a checkpoint for some or all users, written to Parquet, CSV or JSON.

Each user's whole known sequence (training + held-out items) is the query, every item in it is excluded, and each
row carries the raw ids, rank, score and the item's title/categories where the dataset has them. With
``input=<file>.jsonl`` the queries are the file's histories instead (``divrec.serving.recommender``), and each row
also says the fallback used and how many unknown history items were dropped.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, ListConfig

from divrec import names
from divrec.data.types import ProcessedData
from divrec.data.windows import last_items, right_padded
from divrec.errors import UserError
from divrec.inspection.explain import explain_lists, with_explanations
from divrec.lit.module import SeqRecModule
from divrec.metrics.chunked import chunked_top_k
from divrec.metrics.ranking import mask_seen
from divrec.models import ModelConfigError, check_model_config
from divrec.rerank import RerankContext, Reranker, rerank_candidates, rerank_lists

if TYPE_CHECKING:
    from divrec.serving.ann import AnnIndex

log = logging.getLogger(__name__)
WRITERS = {".parquet": "to_parquet", ".csv": "to_csv", ".json": "to_json"}
RANK, SCORE = "rank", "score"
FALLBACK, N_UNKNOWN = "fallback", "unknown_items"  # input= rows: the fallback used, unknown history items dropped


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
    module: SeqRecModule, history: torch.Tensor, seen: torch.Tensor, users: torch.Tensor, k: int,
    ann: AnnIndex | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, k) item ids and their scores for one batch of users, after the module's re-ranker (if any)."""
    return reranked_lists(module, module.reranker, history, seen, users, k, ann)


def reranked_lists(
    module: SeqRecModule, reranker: Reranker | None, history: torch.Tensor, seen: torch.Tensor, users: torch.Tensor,
    k: int, ann: AnnIndex | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, k) item ids and their scores (empty slots: id 0, score -inf) after ``reranker`` (None = plain top-k) over
    the module's top ``rerank_candidates``. With ``metrics.eval_chunk_size`` the catalog is scored that many items
    at a time (``chunked_top_k``: the same lists without a (B, V) score matrix), else all at once. With ``ann`` (an
    index over the item table, big catalogs) the candidates come from it and are re-scored exactly; a re-ranker's
    softmax relevance is then normalised over those candidates, not the whole catalog."""
    context = RerankContext(histories=seen, item_embeddings=module.backbone.item_table().detach())
    if ann is not None:
        n_top = k if reranker is None else max(module.rerank_candidates, k)
        ids, vals = ann.retrieve(module.query(history, users), n_top, seen)  # (B, N) each
        best = rerank_candidates(vals, ids, k, reranker, context)  # (B, k)
        match = best.unsqueeze(2) == ids.unsqueeze(1)  # (B, k, N)
        return best, torch.where(match, vals.unsqueeze(1), float("-inf")).amax(2)
    chunk = module.eval_chunk_size
    if chunk is None:
        masked = mask_seen(module.scores(history, users), seen, inplace=True)  # (B, V)
        best = rerank_lists(masked, k, reranker, module.rerank_candidates, context)  # (B, k)
        return best, masked.gather(1, best)
    table = module.backbone.item_table()
    n_top = k if reranker is None else min(max(module.rerank_candidates, k), table.shape[0])
    query = module.query(history, users)  # (B, D) fp32
    vals, ids, lse = chunked_top_k(query, table, seen, n_top, chunk)  # (B, N), (B, N), (B,)
    context = replace(context, log_normalizer=lse.unsqueeze(1))  # softmax relevance over the whole catalog
    best = rerank_candidates(vals, ids, k, reranker, context)  # (B, k)
    match = best.unsqueeze(2) == ids.unsqueeze(1)  # (B, k, N): where each listed item sits among the candidates
    return best, torch.where(match, vals.unsqueeze(1), float("-inf")).amax(2)


@torch.no_grad()
def top_items(
    module: SeqRecModule, data: ProcessedData, users: np.ndarray, k: int, max_len: int, batch_size: int = 1024,
    ann: AnnIndex | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(U, k) item ids and scores for ``users``, their whole known sequence excluded, after the module's re-ranker
    (if any) over its top ``rerank_candidates``; candidates from ``ann`` when given (big catalogs)."""
    history, seen = user_sequences(data, users, max_len)
    user_index = torch.from_numpy(np.asarray(users, dtype=np.int64))  # (U,) for user features
    module.eval()
    ids, scores = [], []
    for start in range(0, len(users), batch_size):
        rows = slice(start, start + batch_size)
        best, best_scores = batch_lists(module, history[rows], seen[rows], user_index[rows], k, ann)
        ids.append(best)
        scores.append(best_scores)
    if not ids:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    return torch.cat(ids).numpy(), torch.cat(scores).numpy()


def as_frame(data: ProcessedData, users: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """One row per (user, rank) with raw ids, score and the item's metadata."""
    return items_frame(data, data.user_raw_ids[users], ids, scores)


def items_frame(
    data: ProcessedData, labels: np.ndarray, ids: np.ndarray, scores: np.ndarray, **per_list: np.ndarray
) -> pd.DataFrame:
    """One row per (list, rank): the list's label (``names.USER``), raw item id, score, the item's metadata and
    ``per_list`` columns (one value per list); empty slots (id 0) are left out."""
    k = ids.shape[1]
    flat = ids.reshape(-1)
    frame = pd.DataFrame({
        names.USER: np.repeat(np.asarray(labels), k),
        RANK: np.tile(np.arange(1, k + 1), len(ids)),
        names.ITEM: data.item_raw_ids[flat],
        SCORE: scores.reshape(-1),
    })
    if data.item_titles is not None:
        frame[names.TITLE] = data.item_titles[flat]
    if len(data.category_names):
        offsets, cats = data.item_category_offsets, data.item_category_ids
        joined = ["|".join(data.category_names[cats[offsets[i] : offsets[i + 1]]]) for i in range(data.n_items + 1)]
        frame[names.CATEGORIES] = np.asarray(joined, dtype=object)[flat]
    for column, values in per_list.items():
        frame[column] = np.repeat(np.asarray(values, dtype=object), k)
    return frame[flat != 0].reset_index(drop=True)  # catalogs smaller than k leave empty slots


def check_k(value: object, where: str = "k") -> int:
    """``value`` as a list length, or a ``UserError`` naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"{where}={value!r}: must be a positive integer (the list length), e.g. k=10")
    return int(value)


def check_output(path: Path) -> Path:
    """Refuse, before anything is scored, an ``output=`` that cannot be written: an unknown suffix, a directory,
    a folder that cannot be created or written to."""
    if path.is_dir():
        raise UserError(f"output={path} is a folder; name a file, e.g. output={path / 'recommendations.parquet'}")
    if WRITERS.get(path.suffix) is None:
        raise UserError(f"output={path}: unknown format {path.suffix!r}; use one of {sorted(WRITERS)}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the nearest existing ancestor: where the missing folders would be created
    if not folder.is_dir():
        raise UserError(f"output={path}: cannot create folder {path.parent}, {folder} is a file; "
                        "choose another output= path")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"output={path}: {path if path.exists() else folder} is not writable; "
                        "choose another output= path")
    return path


def requested_users(value: object) -> list[str] | None:
    """``users=`` as raw ids, duplicates dropped (logged once); None = every user."""
    if value is None:
        return None
    ids = [str(v) for v in (value if isinstance(value, (ListConfig, list, tuple)) else [value])]
    if not ids:
        raise UserError("users=[] names no user; list raw user ids (users=[1,2]) or drop users= for every user")
    unique = list(dict.fromkeys(ids))
    if len(unique) < len(ids):
        repeated = [u for u, n in Counter(ids).items() if n > 1]
        log.warning("users=: %d duplicate id(s) dropped (e.g. %s); each user is written once",
                    len(ids) - len(unique), repeated[:5])
    return unique


def unknown_users_error(unknown: Sequence[str], requested: int, data: ProcessedData) -> UserError:
    """The error of a request whose users are unknown: the first few ids, their count, what known ids look like."""
    shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
    examples = ", ".join(str(u) for u in data.user_raw_ids[:3].tolist())
    return UserError(f"users=: {len(unknown)} of {requested} requested user id(s) are not in the dataset ({shown}); "
                     f"its user ids look like {examples}")


def write(frame: pd.DataFrame, path: Path) -> Path:
    method = WRITERS.get(path.suffix)
    if method is None:
        raise UserError(f"output={path}: unknown format {path.suffix!r}; use one of {sorted(WRITERS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    kwargs = {"index": False} if method != "to_json" else {"orient": "records", "lines": True}
    getattr(frame, method)(tmp, **kwargs)
    tmp.replace(path)
    return path


def recommend(cfg: DictConfig, overrides: Sequence[str] = ()) -> Path:
    """Write the top-``cfg.k`` lists of ``cfg.users`` (None = all), or of the histories of ``cfg.input`` (a
    JSON-lines file), to ``cfg.output``. k, output, users and the input file are checked before the checkpoint is
    read; unknown users are logged and listed in ``<output>.unknown_users.txt`` (all unknown: an error)."""
    from divrec.pipeline import checkpoint_config, load_checkpoint

    k, output = check_k(cfg.k), check_output(Path(str(cfg.output)))
    wanted = requested_users(cfg.users)
    requests = None
    if cfg.get("input"):
        from divrec.serving.recommender import read_requests

        if wanted is not None or cfg.get("explain"):
            raise UserError("input= takes its users from the file; drop users= and explain= (dataset users only)")
        requests = read_requests(Path(str(cfg.input)), k)
    checkpoint = load_checkpoint(cfg.ckpt_path)
    cfg = checkpoint_config(cfg, checkpoint, overrides)
    if requests is not None:
        return recommend_histories(cfg, checkpoint, requests, output)
    return recommend_dataset_users(cfg, checkpoint, wanted, k, output)


def _ann_index(cfg: DictConfig, module: SeqRecModule) -> AnnIndex | None:
    """The ANN index of ``cfg.ann`` over the model's item table, or None (small catalog, ``ann=none``)."""
    if not cfg.get("ann"):
        return None
    from divrec.serving.ann import maybe_index
    from divrec.serving.recommender import ann_config

    return maybe_index(module.backbone.item_table().detach().float().cpu(), ann_config(cfg.ann))


def recommend_dataset_users(
    cfg: DictConfig, checkpoint: dict, wanted: list[str] | None, k: int, output: Path
) -> Path:
    """The dataset-user path: each user's whole known sequence is the query."""
    from divrec.checkpointing import load_weights
    from divrec.pipeline import build

    if cfg.get("explain") and not check_model_config(cfg.model).trainable:  # before any data is loaded
        raise ModelConfigError(
            f"explain=true: the checkpoint's model ({cfg.model._target_}) has no learned item embeddings to attribute "
            "scores to; drop explain= or use a learned model's checkpoint (e.g. model=sasrec)"
        )
    datamodule, module = build(cfg)
    load_weights(module, checkpoint, str(cfg.ckpt_path), module.backbone.n_items)  # refuses another catalog's
    data = datamodule.load()
    users, unknown = select_users(data, wanted)
    if wanted is not None and not len(users):
        raise unknown_users_error(unknown, len(wanted), data)
    ann = _ann_index(cfg, module)
    ids, scores = top_items(module, data, users, k, datamodule.max_len, datamodule.eval_batch_size, ann)
    frame = as_frame(data, users, ids, scores)
    if cfg.get("explain"):
        history, _ = user_sequences(data, users, datamodule.max_len)
        user_index = torch.from_numpy(np.asarray(users, dtype=np.int64))  # (U,) for user features
        why = explain_lists(module, history, ids, int(cfg.explain_top), datamodule.eval_batch_size, user_index)
        frame = with_explanations(frame, data, ids, why)
    path = write(frame, output)
    if unknown:  # after the lists: a failure leaves no partial output
        report = output.with_name(output.name + ".unknown_users.txt")
        report.write_text("\n".join(unknown) + "\n")
        log.warning("%d requested user(s) are unknown (e.g. %s); listed in %s", len(unknown), unknown[:5], report)
    print(f"wrote {len(users)} users x top-{k} to {path}" + (f"; {len(unknown)} unknown" if unknown else ""))
    return path


def recommend_histories(cfg: DictConfig, checkpoint: dict, requests: Sequence[Any], output: Path) -> Path:
    """The ``input=`` path: one list per line (``serving.recommender.HistoryRequest``), labelled by the line's
    user or ``line:<n>``, with the fallback used and the number of unknown history items dropped."""
    from divrec.serving.recommender import Recommender

    recommender = Recommender.from_config(cfg, checkpoint)
    recs = recommender.recommend_requests(requests, batch_size=int(cfg.data.get("eval_batch_size", 1024)))
    width = max(r.k for r in requests)
    ids = np.zeros((len(recs), width), dtype=np.int64)
    scores = np.full((len(recs), width), float("-inf"), dtype=np.float32)
    for row, rec in enumerate(recs):
        ids[row, : len(rec.items)] = recommender.item_index(rec.items)
        scores[row, : len(rec.scores)] = rec.scores
    labels = np.array([r.user if r.user is not None else f"line:{r.line}" for r in requests], dtype=object)
    frame = items_frame(recommender.data, labels, ids, scores, **{
        FALLBACK: np.array([rec.fallback for rec in recs], dtype=object),
        N_UNKNOWN: np.array([len(rec.unknown_items) for rec in recs]),
    })
    frame[N_UNKNOWN] = frame[N_UNKNOWN].astype(np.int64)
    path = write(frame, output)
    n_fallback, n_unknown = sum(r.fallback is not None for r in recs), sum(len(r.unknown_items) for r in recs)
    print(f"wrote {len(recs)} histories to {path}; {n_fallback} popularity fallback(s), "
          f"{n_unknown} unknown item(s) dropped")
    return path
