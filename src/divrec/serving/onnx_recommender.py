"""``OnnxRecommender``: what the server uses of ``Recommender``, over a file ``divrec export`` wrote (``<file>.onnx``
and its sidecar ``<file>.onnx.json``) run by onnxruntime, without the checkpoint or its dataset.

It answers like ``Recommender`` (``recommender.py``): a history is raw item ids, oldest first (ints are str()-ed;
with ``timestamps`` sorted by them); ids the sidecar's ``item_raw_ids`` lack are dropped and reported
(``unknown_items``); every known item is the graph's row, which reads the newest ``max_len`` and excludes them all;
empty slots (fewer rankable items than k) are dropped; a history with no known item gets the sidecar's training
popularity (``fallback="popularity"``). What the exported graph cannot do is refused with a ``UserError``: a k over
the k fixed at export (a smaller k is the graph's list cut), ``exclude_seen=False``, a re-ranker, dataset users
(``knows_user`` is False: the file has none), and the fallback of a sidecar written before it carried popularity.

``load_state`` (hot reload) swaps in another ``.onnx`` file of the same catalog; the file being replaced answers
until the new one has loaded, and a refused file changes nothing. ``load_recommender`` is what ``divrec serve``
calls: this class for a ``.onnx`` path, ``Recommender.from_checkpoint`` for anything else.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from divrec.errors import UserError
from divrec.serving.recommender import POPULARITY, Recommendation, history_ids

log = logging.getLogger(__name__)
ONNX_SUFFIX, SIDECAR_SUFFIX = ".onnx", ".json"  # export.SUFFIXES["onnx"], export.SIDECAR_SUFFIX
REQUIRED = ("format", "inputs", "outputs", "k", "max_len", "n_items", "item_raw_ids")  # sidecar keys read here
NO_USERS = "an exported ONNX file has no dataset users"


def is_onnx(path: str | Path) -> bool:
    return Path(str(path)).suffix.lower() == ONNX_SUFFIX


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


@dataclass(frozen=True)
class ExportedFile:
    """One loaded export: its onnxruntime session and what its sidecar says."""

    path: Path
    session: Any  # onnxruntime.InferenceSession (run is thread-safe)
    inputs: list[str]  # (items, lengths)
    outputs: list[str]  # (ids, scores)
    k: int
    max_len: int
    item_ids: np.ndarray  # (V,) raw ids by internal id, entry 0 = padding ("")
    popular: np.ndarray | None  # (P,) internal ids, most popular first; None: the sidecar has no popularity
    popular_counts: np.ndarray | None  # (P,) float32 training counts (the fallback list's scores)

    def run(self, rows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) ids and scores for ``rows`` of known internal ids (each non-empty), left-padded to one width."""
        lengths = np.array([len(r) for r in rows], dtype=np.int64)  # (B,)
        items = np.zeros((len(rows), int(lengths.max())), dtype=np.int64)  # (B, S)
        for r, row in enumerate(rows):
            items[r, items.shape[1] - len(row) :] = row
        ids, scores = self.session.run(self.outputs, {self.inputs[0]: items, self.inputs[1]: lengths})
        return np.asarray(ids), np.asarray(scores)


def read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar of ``path``, checked for what this module reads (a ``UserError`` naming the file otherwise)."""
    side = sidecar_path(path)
    if not side.is_file():
        raise UserError(f"{side}: no sidecar next to {path.name}; `divrec export` writes both, keep them together "
                        "(or export the checkpoint again)")
    try:
        meta = json.loads(side.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{side}: not a valid JSON sidecar ({err}); export the checkpoint again") from err
    missing = [key for key in REQUIRED if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise UserError(f"{side}: lacks {missing}; not the sidecar of a divrec export, export the checkpoint again")
    if meta["format"] != "onnx":
        raise UserError(f"{side}: format={meta['format']!r}, not an ONNX export; serve the .onnx file of "
                        "`divrec export format=onnx`")
    if len(meta["item_raw_ids"]) != int(meta["n_items"]) + 1:
        raise UserError(f"{side}: item_raw_ids has {len(meta['item_raw_ids'])} entries for n_items="
                        f"{meta['n_items']} (+1 padding); the sidecar is damaged, export the checkpoint again")
    return meta


def open_export(path: str | Path, threads: int = 1) -> ExportedFile:
    """``path`` (an ``.onnx`` file of ``divrec export``) and its sidecar, loaded into an onnxruntime session with
    ``threads`` intra-op threads."""
    import onnxruntime as ort

    path = Path(str(path))
    if not is_onnx(path):
        raise UserError(f"{path}: not an .onnx file; the served model is an ONNX export, give another .onnx file "
                        "of `divrec export` (its .onnx.json next to it)")
    if not path.is_file():
        raise UserError(f"{path}: no such file; give the .onnx file `divrec export` wrote")
    meta = read_sidecar(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.intra_op_num_threads, options.inter_op_num_threads = int(threads), 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        line = " ".join(str(err).split())[:200]
        raise UserError(f"{path}: onnxruntime cannot load it ({line}); export the checkpoint again") from err
    inputs, outputs = list(meta["inputs"]), list(meta["outputs"])
    graph = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if graph != (inputs, outputs) or len(inputs) != 2 or len(outputs) != 2:
        raise UserError(f"{path}: the graph's inputs/outputs {graph} are not its sidecar's {(inputs, outputs)}; the "
                        f"{sidecar_path(path).name} belongs to another export")
    item_ids = np.asarray([str(x) for x in meta["item_raw_ids"]], dtype=object)
    popular, counts = _popularity(meta, item_ids, path)
    return ExportedFile(path, session, inputs, outputs, int(meta["k"]), int(meta["max_len"]), item_ids, popular,
                        counts)


def _popularity(
    meta: dict[str, Any], item_ids: np.ndarray, path: Path
) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """The sidecar's training popularity as internal ids and counts; (None, None) for a sidecar without it."""
    pop = meta.get("popularity")
    if pop is None:
        return None, None
    index = {raw: i for i, raw in enumerate(item_ids.tolist()) if i}
    raw, counts = list(pop.get("item_raw_ids", [])), list(pop.get("counts", []))
    ids = [index.get(str(r), 0) for r in raw]
    if len(raw) != len(counts) or not all(ids):
        raise UserError(f"{sidecar_path(path)}: popularity does not match item_raw_ids; the sidecar is damaged, "
                        "export the checkpoint again")
    return np.asarray(ids, dtype=np.int64), np.asarray(counts, dtype=np.float32)


@dataclass(frozen=True)
class _Query:
    items: np.ndarray  # (n,) known internal ids, oldest first
    unknown: list[str]


class OnnxRecommender:
    """An exported ONNX file serving raw-id histories (see the module docstring)."""

    no_users_reason = NO_USERS  # what the server's 404 for {"user": ...} says

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.threads = int(threads)
        self._file = open_export(path, self.threads)
        self._item_index = {raw: i for i, raw in enumerate(self._file.item_ids.tolist()) if i}  # a reload keeps it
        self._reload_lock = threading.Lock()

    # --- what the served file is -----------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self._file.path

    @property
    def k(self) -> int:
        """The list length fixed in the graph: the longest list a request may ask for."""
        return self._file.k

    @property
    def max_len(self) -> int:
        return self._file.max_len

    @property
    def n_items(self) -> int:
        return len(self._file.item_ids) - 1

    @property
    def item_ids(self) -> np.ndarray:
        return self._file.item_ids

    def knows_user(self, user: str) -> bool:
        return False  # no dataset users in an export

    def knows_item(self, item: str) -> bool:
        return str(item) in self._item_index

    def item_index(self, items: Sequence[str]) -> np.ndarray:
        """(n,) internal ids of raw item ids (0 where unknown)."""
        return np.array([self._item_index.get(str(i), 0) for i in items], dtype=np.int64)

    def check_k(self, k: object, where: str = "k") -> int:
        """``k`` as a list length the graph can give, or a ``UserError`` naming both it and the exported k."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise UserError(f"{where}={k!r}: must be a positive integer (the list length), e.g. k=10")
        if k > self.k:
            raise UserError(f"{where}={k}: over k={self.k} of the served ONNX file {self.path.name} (fixed when it "
                            f"was exported); ask for k <= {self.k}, or export the checkpoint with k={k}")
        return int(k)

    # --- recommending ----------------------------------------------------------------------------------------
    def recommend(
        self, histories: Sequence[Sequence[str]], k: int = 10, exclude_seen: bool = True, rerank: str | None = None,
        timestamps: Sequence[Sequence[float]] | None = None, user_features: Sequence[Any] | None = None,
        users: Sequence[str | None] | None = None,
    ) -> list[Recommendation]:
        """One list per history, in one onnxruntime call. ``users`` and ``user_features`` are accepted for
        ``Recommender``'s signature and change nothing: an export has no dataset users and reads no features."""
        k = self._check_request(k, exclude_seen, rerank)
        for what, values in (("timestamps", timestamps), ("user_features", user_features), ("users", users)):
            if values is not None and len(values) != len(histories):
                raise UserError(f"{what}: {len(values)} entries for {len(histories)} histories; give one per history")
        queries = [self._query(h, None if timestamps is None else timestamps[i]) for i, h in enumerate(histories)]
        file = self._file  # one file answers the whole call, whatever a reload does meanwhile
        rows = [i for i, q in enumerate(queries) if len(q.items)]
        out: dict[int, Recommendation] = {}
        if rows:
            ids, scores = file.run([queries[i].items for i in rows])  # (R, file.k) each
            out = {i: _recommendation(file, ids[r, :k], scores[r, :k], queries[i], None) for r, i in enumerate(rows)}
        if len(out) < len(queries):
            top, counts = self._fallback(file, k, next(q for i, q in enumerate(queries) if i not in out))
            out |= {i: _recommendation(file, top, counts, q, POPULARITY) for i, q in enumerate(queries) if i not in out}
        return [out[i] for i in range(len(queries))]

    def recommend_users(self, users: Sequence[str], k: int = 10, exclude_seen: bool = True,
                        rerank: str | None = None) -> list[Recommendation]:
        """Always a ``UserError``: an export has no dataset users (the server answers 404 before calling this)."""
        wanted = [str(u) for u in users]
        raise UserError(f"user(s) {wanted[:3]}: {NO_USERS}; send each user's history instead")

    def _check_request(self, k: int, exclude_seen: bool, rerank: str | None) -> int:
        if rerank is not None and rerank != "none":
            raise UserError(f"rerank={rerank!r}: the served ONNX file ranks by the model's scores only (an exported "
                            "graph has no re-ranker); drop rerank, or serve the checkpoint")
        if not exclude_seen:
            raise UserError("exclude_seen=false: the served ONNX file always excludes the history's items (the "
                            "exported graph masks them); drop exclude_seen, or serve the checkpoint")
        return self.check_k(k)

    def _query(self, history: Sequence[str], times: Sequence[float] | None) -> _Query:
        return _Query(*history_ids(history, times, self._item_index))

    def _fallback(self, file: ExportedFile, k: int, query: _Query) -> tuple[np.ndarray, np.ndarray]:
        if file.popular is None or file.popular_counts is None:
            what = f"no item the model knows (unknown: {query.unknown[:3]})" if query.unknown else "no items"
            raise UserError(f"the history has {what}, and {sidecar_path(file.path).name} has no training popularity "
                            "to fall back on (an export of an older divrec); send known items, or export the "
                            "checkpoint again")
        return file.popular[:k], file.popular_counts[:k]

    # --- hot reload ------------------------------------------------------------------------------------------
    def load_state(self, path: str | Path) -> None:
        """Serve another ``.onnx`` export of the same catalog (``item_raw_ids``) and at least the same k; anything
        else raises ``UserError`` and the current file keeps serving."""
        with self._reload_lock:
            new, old = open_export(path, self.threads), self._file
            if not np.array_equal(new.item_ids, old.item_ids):
                raise UserError(f"{new.path}: its item_raw_ids ({len(new.item_ids) - 1} items) are not those of the "
                                f"served {old.path.name}; hot reload needs an export of the same catalog")
            if new.k < old.k:
                raise UserError(f"{new.path}: k={new.k} is below the served file's k={old.k}, so requests the "
                                f"server answers now would be refused; export it with k>={old.k}")
            self._file = new  # one reference swap: calls in progress finish on the old session


def _recommendation(file: ExportedFile, ids: np.ndarray, scores: np.ndarray, query: _Query,
                    fallback: str | None) -> Recommendation:
    valid = ids > 0  # empty slots (fewer than k rankable items) hold id 0
    return Recommendation(items=file.item_ids[ids[valid]].tolist(), scores=[float(s) for s in scores[valid]],
                          unknown_items=list(query.unknown), fallback=fallback)


# --- what `divrec serve` loads -------------------------------------------------------------------------------
def load_recommender(path: str | Path, overrides: Sequence[str] = (), device: str = "cpu", threads: int = 1,
                     default_k: int | None = None) -> Any:
    """The served model: an ``OnnxRecommender`` for a ``.onnx`` path (``default_k``: the server's list length
    when a request sends none, checked against the exported k), else ``Recommender.from_checkpoint`` (``threads``:
    torch's intra-op threads)."""
    if not is_onnx(path):
        import torch

        from divrec.serving.recommender import Recommender

        torch.set_num_threads(threads)
        return Recommender.from_checkpoint(path, overrides=overrides, device=device)
    if str(device) != "cpu":
        raise UserError(f"device={device}: an .onnx file is served on onnxruntime's CPU provider; use device=cpu, "
                        "or serve the checkpoint on the accelerator")
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key.split(".")[0] == "rerank" and value not in ("", "none", "null"):
            raise UserError(f"{override}: an exported ONNX graph ranks by the model's scores only; drop it, or "
                            "serve the checkpoint")
    if overrides:
        log.warning("ignoring %s: an .onnx file carries its own model and catalog", list(overrides))
    recommender = OnnxRecommender(path, threads)
    if default_k is not None:
        recommender.check_k(default_k)
    return recommender
