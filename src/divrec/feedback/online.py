"""``divrec feedback source=<db url> ckpt_path=<served checkpoint>``: the next model from stored feedback events.

The online half of the loop that ``divrec serve`` starts: the server commits every ``POST /feedback`` event to the
store (``divrec.serving.store``); this command reads the events the served checkpoint has not seen yet (by event id:
the checkpoint records the last id it was trained on, ``feedback_cursor``), appends *all* stored events to the
dataset's known sequences (so histories include earlier feedback too), fine-tunes the served model incrementally on
the users with new events (their new items plus ``feedback.online.context`` older ones, as
``divrec.feedback.Incremental`` does in the offline loop), writes ``checkpoints/feedback-<last id>.ckpt`` atomically,
and, with ``reload_url=``, asks the running server to swap to it (``POST /reload``; the server keeps the old model
if the file is refused).

The catalog is the checkpoint's: events on items it does not have are counted and skipped (a full retrain on the
grown dataset adds them); events of users the dataset does not have start new sequences.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from divrec import names
from divrec.checkpointing import write_atomically
from divrec.data.preprocess import Sequences
from divrec.data.types import ProcessedData
from divrec.errors import UserError
from divrec.feedback.loop import FeedbackRunner
from divrec.report import write_config, write_metrics

log = logging.getLogger(__name__)
CURSOR_KEY = "feedback_cursor"  # in a checkpoint: the id of the last stored event it was trained on


@dataclass(frozen=True)
class Applied:
    """Stored events merged into the dataset's sequences: the new sequences, who to train on, what was skipped."""

    seqs: Sequences
    train: tuple[np.ndarray, np.ndarray]  # CSR over seqs' users: the window an incremental update trains on
    n_new_events: int  # events after the cursor on known items
    n_unknown_items: int  # events (after the cursor) on items outside the catalog: skipped
    n_new_users: int  # users the dataset does not have, started from their events
    last_id: int


def apply_events(data: ProcessedData, events: pd.DataFrame, cursor: int, context: int) -> Applied:
    """``data``'s known sequences with every stored event appended (in id order); the training window holds, for each
    user with events after ``cursor``, their last ``new + context`` items."""
    offsets, items = data.known_sequences()
    item_index = {raw: i for i, raw in enumerate(data.item_raw_ids.tolist()) if i > 0}
    user_index = {raw: u for u, raw in enumerate(data.user_raw_ids.tolist())}
    sequences = [items[offsets[u] : offsets[u + 1]].tolist() for u in range(data.n_users)]
    user_ids = list(data.user_raw_ids.tolist())
    new_counts: dict[int, int] = {}
    unknown_items = 0
    for event_id, user, item in events[["id", names.USER, names.ITEM]].itertuples(index=False):
        internal = item_index.get(str(item))
        fresh = int(event_id) > cursor
        if internal is None:
            unknown_items += fresh
            continue
        u = user_index.get(str(user))
        if u is None:
            u = user_index[str(user)] = len(sequences)
            sequences.append([])
            user_ids.append(str(user))
        sequences[u].append(internal)
        if fresh:
            new_counts[u] = new_counts.get(u, 0) + 1
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    seqs = Sequences(
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=np.array([i for s in sequences for i in s], dtype=np.int64),
        times=None,
        user_raw_ids=np.asarray(user_ids, dtype=object),
        item_raw_ids=data.item_raw_ids,
    )
    counts = [new_counts.get(u, 0) for u in range(len(sequences))]
    windows = [sequences[u][-(n + context) :] if n else [] for u, n in enumerate(counts)]
    window_offsets = np.concatenate([[0], np.cumsum([len(w) for w in windows])]).astype(np.int64)
    train = (window_offsets, np.array([i for w in windows for i in w], dtype=np.int64))
    return Applied(
        seqs=seqs, train=train, n_new_events=sum(new_counts.values()), n_unknown_items=int(unknown_items),
        n_new_users=len(sequences) - data.n_users, last_id=int(events["id"].max()) if len(events) else cursor,
    )


def run_online(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Fine-tune ``cfg.ckpt_path`` on the events of ``cfg.source`` it has not seen; write and (optionally) serve it."""
    from divrec.pipeline import check_config, checkpoint_config, load_checkpoint
    from divrec.serving.store import FeedbackStore, safe_url

    if not cfg.get("ckpt_path"):
        raise UserError(f"source={safe_url(cfg.source)}: set ckpt_path=<the served checkpoint> to update it")
    checkpoint = load_checkpoint(cfg.ckpt_path)
    cfg = checkpoint_config(cfg, checkpoint, overrides)  # data/model/task of the served model
    check_config(cfg)
    store = FeedbackStore(cfg.source)
    try:
        events = store.read()
    finally:
        store.close()
    cursor = int(checkpoint.get(CURSOR_KEY, 0))
    if not (events["id"] > cursor).any():
        print(f"no feedback events after id {cursor} in {safe_url(cfg.source)}: {cfg.ckpt_path} is up to date")
        return {}
    output_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    data = datamodule.load()
    online = cfg.feedback.online
    applied = apply_events(data, events, cursor, int(online.context))
    if applied.n_new_events == 0:
        raise UserError(f"{applied.n_unknown_items} new feedback event(s) in {safe_url(cfg.source)}, all on items "
                        "outside the checkpoint's catalog; retrain on the grown dataset (divrec train) to add them")
    write_config(output_dir, cfg)
    runner = FeedbackRunner(cfg, applied.seqs, _categories(data), output_dir, _user_features(data, applied))
    start = time.perf_counter()
    module = runner.new_model()
    module.load_state_dict(checkpoint["state_dict"])
    runner.fit(module, applied.train, int(online.epochs))
    update_s = time.perf_counter() - start
    path = output_dir / "checkpoints" / f"feedback-{applied.last_id}.ckpt"
    state = {"state_dict": module.state_dict(), names.CONFIG_KEY: runner.run_config, CURSOR_KEY: applied.last_id}
    write_atomically(path, lambda f: torch.save(state, f))
    metrics = {
        "feedback/new_events": applied.n_new_events, "feedback/unknown_item_events": applied.n_unknown_items,
        "feedback/new_users": applied.n_new_users, "feedback/cursor": applied.last_id,
        "feedback/update_s": round(update_s, 3),
    }
    write_metrics(output_dir, metrics)
    print(f"trained on {applied.n_new_events} new event(s) ({applied.n_unknown_items} on unknown items skipped, "
          f"{applied.n_new_users} new user(s)) in {update_s:.1f} s; wrote {path}")
    if cfg.get("reload_url"):
        print(f"reload: {request_reload(str(cfg.reload_url), path, cfg.get('reload_token'))}")
    return metrics


def request_reload(url: str, path: Path, token: str | None, timeout: float = 60.0) -> dict[str, Any]:
    """``POST <url> {"ckpt_path": path}`` (the server's ``/reload``); the server's reply, or a UserError."""
    body = json.dumps({"ckpt_path": str(path)}).encode()
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read() or b"{}")
    except OSError as err:  # URLError, HTTPError (a refused checkpoint: the old model keeps serving), timeouts
        detail = err.read().decode(errors="replace")[:200] if hasattr(err, "read") else str(err)
        raise UserError(f"reload_url={url}: the server did not take {path} ({detail}); the checkpoint is written, "
                        f"reload it by hand (POST {url})") from err


def _categories(data: ProcessedData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return data.item_category_offsets, data.item_category_ids, data.category_names


def _user_features(data: ProcessedData, applied: Applied) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """The dataset's user feature codes, new users at code 0 (unknown)."""
    extra = applied.n_new_users
    codes = {name: np.concatenate([c, np.zeros(extra, dtype=c.dtype)]) for name, c in data.user_features.items()}
    return codes, data.user_feature_vocab
