"""``Recommender``: top-K lists from one checkpoint for any history (raw item ids) or for dataset users.

What the server, export, ANN retrieval and ``divrec recommend input=`` build on. A history is a list of raw item
ids, oldest first (ints are str()-ed; with ``timestamps`` it is sorted by them). Ids the catalog lacks are dropped
and reported per request (``Recommendation.unknown_items``); the last ``max_len`` known ones are the model input,
left-padded like evaluation histories (``data/windows.py``), and with ``exclude_seen`` every known one is excluded.
A history with no known item gets the training-popularity list (``fallback="popularity"``), unless the request
names a dataset user: then that user's whole known sequence is the query. ``recommend_users`` (dataset users, their
whole known sequence) gives the same lists and scores as ``divrec recommend``'s dataset path
(``recommend.top_items``): the same tensors through the same ``recommend.reranked_lists``.

Loading (``from_checkpoint``) composes ``conf/recommend.yaml`` with the overrides, takes data/model/task from the
checkpoint's stored config (``pipeline.checkpoint_config``) and its re-ranker too unless the overrides choose one
(``rerank=...``), and assembles everything through ``pipeline.build``, so raw ids, popularity and dataset users come
from the data the model was trained on. A closed-form baseline (pop, itemknn, ease) is refitted there by
``bind(data)`` before its stored table is loaded over it: its load time includes one fit.

One caller at a time: every public method that touches the model holds one lock and runs under
``torch.inference_mode()``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from divrec import names
from divrec.checkpointing import load_weights
from divrec.configs import config_dir
from divrec.data.types import ProcessedData
from divrec.data.windows import last_items, right_padded
from divrec.errors import UserError
from divrec.lit.module import SeqRecModule
from divrec.pipeline import build, build_reranker, checkpoint_config, load_checkpoint
from divrec.recommend import check_k, reranked_lists, unknown_users_error
from divrec.rerank import Reranker
from divrec.serving.ann import AnnConfig, AnnIndex, maybe_index

log = logging.getLogger(__name__)
POPULARITY = "popularity"  # Recommendation.fallback of a history with no known item
REQUEST_KEYS = ("history", "user", "k")  # the keys of one ``input=`` line
_RERANK_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
UserFeatures = Sequence[Mapping[str, Any] | None]  # per history: feature name -> raw value (None: all unknown)


@dataclass
class Recommendation:
    items: list[str]  # raw item ids, best first
    scores: list[float]
    unknown_items: list[str]  # raw ids of the history that the catalog does not have (dropped)
    fallback: str | None  # None, or "popularity" when the history was empty / all unknown
    user: str | None = None  # the known user id when the request named one


@dataclass(frozen=True)
class HistoryRequest:
    """One line of an ``input=`` file: a history (raw ids), an optional user id, its list length."""

    history: list[str]
    user: str | None
    k: int
    line: int  # 1-based line number in the file


@dataclass(frozen=True)
class _Query:
    items: np.ndarray  # (n,) known internal ids, oldest first
    unknown: list[str]
    user: str | None  # a dataset user's raw id, or None


class Recommender:
    """A loaded checkpoint with its dataset's raw ids, popularity and users; see the module docstring."""

    def __init__(self, cfg: DictConfig, module: SeqRecModule, data: ProcessedData, max_len: int,
                 device: str = "cpu") -> None:
        self.cfg, self.data, self.max_len = cfg, data, int(max_len)
        try:
            self.device = torch.device(device)
            self.module = module.to(self.device).eval()
        except (RuntimeError, AssertionError) as err:
            raise UserError(f"device={device}: cannot use it ({err}); use device=cpu or an available cuda:N") from err
        self.n_items = int(data.n_items)
        self.item_ids = np.asarray([str(x) for x in data.item_raw_ids.tolist()], dtype=object)  # 0 = padding ("")
        self._item_index = {raw: i for i, raw in enumerate(self.item_ids.tolist()) if i}
        self._user_index = {str(raw): u for u, raw in enumerate(data.user_raw_ids.tolist())}
        self._known = data.known_sequences()  # CSR (offsets, items): each user's whole known sequence
        counts = np.bincount(data.train_items.astype(np.int64), minlength=self.n_items + 1).astype(np.float32)
        counts[0] = 0.0
        self.popularity = counts  # (V,) training counts; the fallback list's scores
        self._popular = np.argsort(-counts[1:], kind="stable") + 1  # most popular first, ties by id
        self._vocab = {name: {v: code for code, v in enumerate(values)} for name, values in
                       data.user_feature_vocab.items()}
        self._rerankers: dict[str, Reranker | None] = {}
        self._lock = threading.Lock()
        self.ann_config = ann_config(cfg.get("ann"))
        self.ann = self._index()  # None below ann.min_items items (exact top-K)

    def _index(self) -> AnnIndex | None:
        """The ANN index over the live item table (rebuilt after a reload: the table changed)."""
        if self.ann_config is None:
            return None
        return maybe_index(self.module.backbone.item_table().detach().float().cpu(), self.ann_config)

    # --- loading ---------------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, overrides: Sequence[str] = (), device: str = "cpu") -> Recommender:
        """Load ``path`` with ``overrides`` (Hydra syntax, e.g. ``paths.data_dir=...``, ``rerank=mmr``)."""
        checkpoint = load_checkpoint(str(path))
        cfg = compose_config("recommend", [f"ckpt_path={path}", *overrides])
        return cls.from_config(serving_config(cfg, checkpoint, overrides), checkpoint, device)

    @classmethod
    def from_config(cls, cfg: DictConfig, checkpoint: Mapping[str, Any], device: str = "cpu") -> Recommender:
        """From an already merged config (``checkpoint_config``) and its loaded checkpoint."""
        cfg = cfg.copy()
        with open_dict(cfg):
            cfg.metrics.diversity = False  # no evaluation here: skip building the beyond-accuracy evaluators
        datamodule, module = build(cfg)
        path = str(cfg.get("ckpt_path"))
        load_weights(module, dict(checkpoint), path, module.backbone.n_items)  # refuses a foreign catalog
        return cls(cfg, module, datamodule.load(), datamodule.max_len, device)

    def load_state(self, path: str | Path) -> None:
        """Swap in the weights of another checkpoint of the same catalog and model (hot reload). A corrupt or
        incompatible file raises ``UserError`` and leaves the current model as it was."""
        checkpoint = load_checkpoint(str(path))  # CheckpointError (a UserError) if unreadable
        self._check_same_catalog(checkpoint, path)
        state = checkpoint["state_dict"]
        with self._lock:
            current = self.module.state_dict()
            problems = _state_differences(current, state)
            if problems:
                raise UserError(f"{path}: not a checkpoint of the served model ({'; '.join(problems[:3])}); "
                                "load a checkpoint trained with the same model config and dataset")
            with torch.no_grad():
                self.module.load_state_dict({k: v.to(current[k].device) for k, v in state.items()}, strict=True)
            self.module.eval()
            self.ann = self._index()

    def _check_same_catalog(self, checkpoint: Mapping[str, Any], path: str | Path) -> None:
        stored = checkpoint.get(names.CONFIG_KEY) or {}
        for group, key in (("data", "source"), ("data", "preprocessing"), ("data", "split"), ("model", "_target_")):
            if group not in stored or group not in self.cfg:
                continue
            mine = OmegaConf.to_container(self.cfg[group], resolve=True)
            old, new = (mine if isinstance(mine, dict) else {}).get(key), (stored[group] or {}).get(key)
            if old != new:
                raise UserError(f"{path}: {group}.{key} differs from the served checkpoint's ({new} vs {old}); "
                                "hot reload needs a checkpoint of the same dataset and model")

    # --- what the catalog knows ------------------------------------------------------------------------------
    def knows_user(self, user: str) -> bool:
        return str(user) in self._user_index

    def knows_item(self, item: str) -> bool:
        return str(item) in self._item_index

    def item_index(self, items: Sequence[str]) -> np.ndarray:
        """(n,) internal ids of raw item ids (0 where unknown)."""
        return np.array([self._item_index.get(str(i), 0) for i in items], dtype=np.int64)

    def item_table(self) -> torch.Tensor:
        """(V, D) the model's item table (row 0 = padding), what queries are scored against."""
        with self._lock, torch.inference_mode():
            return self.module.backbone.item_table().detach()

    # --- recommending ----------------------------------------------------------------------------------------
    def recommend(
        self, histories: Sequence[Sequence[str]], k: int = 10, exclude_seen: bool = True, rerank: str | None = None,
        timestamps: Sequence[Sequence[float]] | None = None, user_features: UserFeatures | None = None,
        users: Sequence[str | None] | None = None,
    ) -> list[Recommendation]:
        """One list per history, in one forward pass. ``users`` (optional, per history) names the requester: a
        dataset user's features are used, and an empty history becomes that user's known sequence.
        ``user_features`` (per history, feature name -> raw value) replaces the features of models that read
        them. ``rerank``: a ``conf/rerank/<name>.yaml`` option, or None = this Recommender's re-ranker."""
        k = check_k(k)
        for what, values in (("timestamps", timestamps), ("user_features", user_features), ("users", users)):
            if values is not None and len(values) != len(histories):
                raise UserError(f"{what}: {len(values)} entries for {len(histories)} histories; give one per history")
        queries = [
            self._query(h, None if timestamps is None else timestamps[i], None if users is None else users[i])
            for i, h in enumerate(histories)
        ]
        with self._lock, torch.inference_mode():
            return self._recommend(queries, k, exclude_seen, self._reranker(rerank), user_features)

    def recommend_users(self, users: Sequence[str], k: int = 10, exclude_seen: bool = True,
                        rerank: str | None = None) -> list[Recommendation]:
        """One list per dataset user from their whole known sequence (``UserError`` if any is unknown)."""
        k = check_k(k)
        wanted = [str(u) for u in users]
        unknown = [u for u in wanted if u not in self._user_index]
        if unknown:
            raise unknown_users_error(unknown, len(wanted), self.data)
        queries = [_Query(self._known_items(u), [], u) for u in wanted]
        with self._lock, torch.inference_mode():
            return self._recommend(queries, k, exclude_seen, self._reranker(rerank), None)

    def recommend_requests(self, requests: Sequence[HistoryRequest], batch_size: int = 1024,
                           exclude_seen: bool = True) -> list[Recommendation]:
        """``recommend`` over ``input=`` lines, in request order: one call per list length and ``batch_size``."""
        out: list[Recommendation | None] = [None] * len(requests)
        for k in sorted({r.k for r in requests}):
            rows = [i for i, r in enumerate(requests) if r.k == k]
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                recs = self.recommend([requests[i].history for i in chunk], k, exclude_seen,
                                      users=[requests[i].user for i in chunk])
                for i, rec in zip(chunk, recs, strict=True):
                    out[i] = rec
        return [rec for rec in out if rec is not None]

    def score_queries(self, items: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded internal ids -> (B, D) queries (scores = query @ item_table().T), anonymous users."""
        with self._lock, torch.inference_mode():
            empty = _Query(np.zeros(0, dtype=np.int64), [], None)
            users, codes = self._user_rows([empty] * items.shape[0], None)
            with self._request_codes(codes):
                return self.module.query(items.to(self.device).long(), users)

    # --- internals -------------------------------------------------------------------------------------------
    def _query(self, history: Sequence[str], times: Sequence[float] | None, user: str | None) -> _Query:
        items, unknown = history_ids(history, times, self._item_index)
        known_user = str(user) if user is not None and str(user) in self._user_index else None
        if not len(items) and known_user is not None:
            items = self._known_items(known_user)
        return _Query(items, unknown, known_user)

    def _known_items(self, user: str) -> np.ndarray:
        offsets, items = self._known
        u = self._user_index[user]
        return items[offsets[u] : offsets[u + 1]]

    def _recommend(self, queries: list[_Query], k: int, exclude_seen: bool, reranker: Reranker | None,
                   features: UserFeatures | None) -> list[Recommendation]:
        rows = [i for i, q in enumerate(queries) if len(q.items)]
        out: dict[int, Recommendation] = {}
        if rows:
            picked = None if features is None else [features[i] for i in rows]
            ids, scores = self._lists([queries[i] for i in rows], picked, k, exclude_seen, reranker)
            out = {i: self._recommendation(ids[r], scores[r], queries[i], None) for r, i in enumerate(rows)}
        top = self._popular[:k]
        for i, q in enumerate(queries):
            if i not in out:
                out[i] = self._recommendation(top, self.popularity[top], q, POPULARITY)
        return [out[i] for i in range(len(queries))]

    def _lists(self, queries: list[_Query], features: UserFeatures | None, k: int, exclude_seen: bool,
               reranker: Reranker | None) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) ids and scores of one forward pass over the queries (the tensors ``recommend.user_sequences``
        builds for dataset users)."""
        lengths = np.array([len(q.items) for q in queries], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.concatenate([q.items for q in queries]).astype(np.int64)
        history = torch.from_numpy(last_items(offsets, flat, self.max_len)).to(self.device)  # (B, L)
        if exclude_seen:
            seen = torch.from_numpy(right_padded(offsets, flat)).to(self.device)  # (B, S)
        else:
            seen = torch.zeros((len(queries), 1), dtype=torch.long, device=self.device)  # padding only
        users, codes = self._user_rows(queries, features)
        with self._request_codes(codes):
            best, best_scores = reranked_lists(self.module, reranker, history, seen, users, k, self.ann)
        return best.cpu().numpy(), best_scores.float().cpu().numpy()

    def _recommendation(self, ids: np.ndarray, scores: np.ndarray, query: _Query, fallback: str | None
                        ) -> Recommendation:
        valid = ids > 0  # empty slots (fewer than k rankable items) hold id 0
        return Recommendation(
            items=self.item_ids[ids[valid]].tolist(), scores=[float(s) for s in scores[valid]],
            unknown_items=list(query.unknown), fallback=fallback, user=query.user,
        )

    def _user_rows(
        self, queries: list[_Query], features: UserFeatures | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B,) user indices for the model, and the feature codes of requests that are no dataset user (or bring
        their own features): rows appended after the dataset's users for this call (``_request_codes``)."""
        side = getattr(self.module.backbone, "user_side", None)  # models/user_side.py, None without user features
        index, extra = [], []
        for i, q in enumerate(queries):
            given = None if features is None else features[i]
            if side is None or (q.user is not None and given is None):
                index.append(self._user_index.get(q.user, 0) if q.user is not None else 0)
                continue
            index.append(self.data.n_users + len(extra))
            extra.append(self._codes(side.names, given))
        codes = torch.tensor(extra, dtype=torch.long) if extra else None
        return torch.tensor(index, dtype=torch.long, device=self.device), codes

    def _codes(self, feature_names: Sequence[str], given: Mapping[str, Any] | None) -> list[int]:
        """One request's feature codes (0 = unknown value or not given)."""
        given = dict(given or {})
        extra = sorted(set(given) - set(feature_names))
        if extra:
            raise UserError(f"user_features: unknown feature(s) {extra}; this model reads {list(feature_names)}")
        return [self._vocab.get(name, {}).get(str(given[name]), 0) if name in given else 0 for name in feature_names]

    @contextmanager
    def _request_codes(self, codes: torch.Tensor | None) -> Iterator[None]:
        """The user-feature code matrix with ``codes`` appended for the duration of one call (under the lock)."""
        side = getattr(self.module.backbone, "user_side", None)
        if side is None or codes is None:
            yield
            return
        base = side.codes
        side.codes = torch.cat([base, codes.to(base.device)])
        try:
            yield
        finally:
            side.codes = base

    def _reranker(self, name: str | None) -> Reranker | None:
        """The module's re-ranker (None), or ``conf/rerank/<name>.yaml`` bound like ``pipeline.build_reranker``."""
        if name is None:
            return self.module.reranker
        if not isinstance(name, str) or not _RERANK_NAME.match(name):
            raise UserError(f"rerank={name!r}: not a re-ranker name; choose one of {rerank_options()} or None")
        if name not in self._rerankers:
            try:
                node = compose_config("recommend", ["ckpt_path=unused", f"rerank={name}"]).rerank
            except HydraException as err:
                raise UserError(f"rerank={name!r}: no such re-ranker; choose one of {rerank_options()}") from err
            cfg = self.cfg.copy()
            with open_dict(cfg):
                cfg.rerank = node
            reranker = build_reranker(cfg, self.data)
            self._rerankers[name] = reranker.to(self.device) if reranker is not None else None
        return self._rerankers[name]


def history_ids(
    history: Sequence[str], times: Sequence[float] | None, item_index: Mapping[str, int]
) -> tuple[np.ndarray, list[str]]:
    """A request's raw-id history (ordered by ``times`` when given) → its known internal ids, oldest first, and the
    raw ids the catalog does not have; bad shapes and types are ``UserError``s."""
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise UserError(f"history={history!r}: must be a list of item ids, e.g. ['12', '7']")
    raw = [_item_id(x) for x in history]
    if times is not None:
        if len(times) != len(raw):
            raise UserError(f"timestamps: {len(times)} for a history of {len(raw)} items; give one per item")
        raw = [raw[i] for i in np.argsort(np.asarray(times, dtype=np.float64), kind="stable")]
    ids = [item_index.get(r, 0) for r in raw]
    return np.array([i for i in ids if i], dtype=np.int64), [r for r, i in zip(raw, ids, strict=True) if not i]


def _item_id(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(value)
    raise UserError(f"history item {value!r}: item ids are strings (or integers); e.g. ['12', '7']")


def _state_differences(current: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What keeps ``new`` from loading into a model whose state is ``current`` (keys, shapes, dtypes)."""
    missing, extra = sorted(set(current) - set(new)), sorted(set(new) - set(current))
    problems = [f"missing {missing[:3]}"] * bool(missing) + [f"unexpected {extra[:3]}"] * bool(extra)
    for key in sorted(set(current) & set(new)):
        old, value = current[key], new[key]
        if not isinstance(value, torch.Tensor) or value.shape != old.shape or value.dtype != old.dtype:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            problems.append(f"{key}: {shape} instead of {tuple(old.shape)}")
    return problems


# --- configs -------------------------------------------------------------------------------------------------
def ann_config(node: Any) -> AnnConfig | None:
    """The ``ann:`` node (``conf/ann/``) as an ``AnnConfig``; None (``ann=none``) = always exact."""
    if not node:
        return None
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    return AnnConfig.parse({k: v for k, v in values.items() if k != "_target_"})


def rerank_options() -> list[str]:
    return sorted(p.stem for p in (config_dir() / "rerank").glob("*.yaml"))


def compose_config(name: str, overrides: Sequence[str]) -> DictConfig:
    """``conf/<name>.yaml`` with ``overrides``, inside a running Hydra app (``divrec serve``) or outside one;
    outside, ``paths.output_dir`` (a Hydra runtime value) gets a placeholder: serving writes no run folder."""
    if GlobalHydra.instance().is_initialized():
        cfg = hydra.compose(config_name=name, overrides=list(overrides))
    else:
        with hydra.initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra.compose(config_name=name, overrides=list(overrides))
    if not HydraConfig.initialized() and not any(o.split("=")[0] == "paths.output_dir" for o in overrides):
        with open_dict(cfg):
            cfg.paths.output_dir = "outputs/serving"
    return cfg


def serving_config(cfg: DictConfig, checkpoint: Mapping[str, Any], overrides: Sequence[str]) -> DictConfig:
    """``checkpoint_config`` plus the checkpoint's own re-ranker (``rerank`` and ``metrics.rerank_candidates``)
    unless ``overrides`` set ``rerank``."""
    cfg = checkpoint_config(cfg, dict(checkpoint), overrides)
    stored = checkpoint.get(names.CONFIG_KEY) or {}
    keys = [o.lstrip("+~").split("=")[0] for o in overrides]
    if "rerank" not in stored or any(key.split(".")[0] == "rerank" for key in keys):
        return cfg
    with open_dict(cfg):
        cfg.rerank = stored["rerank"]
        candidates = (stored.get("metrics") or {}).get("rerank_candidates")
        if candidates is not None and "metrics.rerank_candidates" not in keys:
            cfg.metrics.rerank_candidates = candidates
    return cfg


# --- input= files --------------------------------------------------------------------------------------------
def read_requests(path: Path, default_k: int) -> list[HistoryRequest]:
    """The requests of a JSON-lines file, one object per line: ``{"history": [raw ids], "user": id, "k": n}``
    (``user`` and ``k`` optional; blank lines skipped). Anything else: a ``UserError`` naming the file and line."""
    if not path.is_file():
        raise UserError(f"input={path}: no such file; pass a JSON-lines file of {{\"history\": [...]}} objects")
    requests = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"input={path} line {number}"
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as err:
                raise UserError(f"{where}: not UTF-8 text ({err.reason}); save the file as UTF-8") from err
            if text:
                requests.append(parse_request(text, where, number, default_k))
    if not requests:
        raise UserError(f"input={path}: no requests (the file is empty); write one JSON object per line, "
                        "e.g. {\"history\": [\"12\", \"7\"]}")
    return requests


def parse_request(text: str, where: str, line: int, default_k: int) -> HistoryRequest:
    """One ``input=`` line (see ``read_requests``)."""
    example = "e.g. {\"history\": [\"12\", \"7\"], \"user\": \"42\", \"k\": 10}"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{where}: not valid JSON ({err.msg} at column {err.colno}); {example}") from err
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(obj).__name__}; {example}")
    unknown = sorted(set(obj) - set(REQUEST_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown}; allowed are {list(REQUEST_KEYS)}")
    history = obj.get("history")
    if not isinstance(history, list):
        raise UserError(f"{where}: \"history\" must be a list of item ids, got {history!r}; {example}")
    for position, item in enumerate(history):
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise UserError(f"{where}: history[{position}]={item!r} is not an item id (a string or an integer)")
    user = obj.get("user")
    if user is not None and (isinstance(user, bool) or not isinstance(user, (str, int))):
        raise UserError(f"{where}: \"user\"={user!r} is not a user id (a string or an integer)")
    k = check_k(obj["k"], f"{where}: \"k\"") if "k" in obj else default_k
    return HistoryRequest([str(i) for i in history], None if user is None else str(user), k, line)
