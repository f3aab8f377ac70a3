"""Approximate nearest-neighbour (ANN) candidate retrieval for big catalogs, with exact re-scoring (faiss-cpu).

Below ~200k items the exact top-K (``divrec.metrics.chunked.chunked_top_k``) is fast enough; above it, one query at
a time spends most of its time in the ``(D,) @ (D, V)`` product. ``AnnIndex`` replaces that product by an
inner-product faiss index over the item table:

1. **candidates**: the index returns the ``n_candidates`` rows with (approximately) the largest inner product with
   the query, plus as many as the most seen items of a row (they are removed next);
2. **exact re-score**: those candidates are scored with the real score function, ``query · table[id] + bias[id]``,
   from the torch item table (not from the index), padding (row 0, never indexed) and seen items are set to
   ``-inf``, and the best ``k`` are kept by (score descending, id ascending), the order of ``top_k_scored``.

So the returned scores are exact; only recall is approximate (an item the index missed is absent). A per-item bias
is handled exactly: the indexed vectors are ``[v_i, b_i / s]`` and the query is ``[q, s]``, so the index's inner
product is the model's score; ``s`` (a power of two, so the division is exact) brings the bias column to the
scale of the other coordinates, without which the graph is built mostly on the bias (recall 0.87 instead of 1.0 on
random vectors with a bias as large as the dot products).

Index kinds: ``hnsw`` (``IndexHNSWFlat``, a graph; no training, best latency) and ``ivf`` (``IndexIVFFlat``,
k-means cells; faster to build, slower to query). Both store the vectors in float32. An inner-product graph can
miss items of small norm (they are nobody's neighbour); that only matters where the best scores are near zero or
negative, unlike trained embeddings, and ``ivf`` has no such blind spot.

Files: ``save(path)`` writes the index in faiss's own format at ``path`` and a small JSON sidecar
``<path>.meta.json`` (config, shape, a fingerprint of the table), each atomically, the sidecar last; ``load``
refuses an index without its sidecar, or a sidecar or item table that does not match. Threads: faiss uses
``torch.get_num_threads()`` OpenMP threads.

Serving use (``Recommender``)::

    ann = maybe_index(model.item_table().detach(), AnnConfig.parse(cfg.ann))  # None below AnnConfig.min_items
    ids, scores = ann.retrieve(query, k, seen) if ann else ...            # (B, k) each, exact scores
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from torch import Tensor

from divrec.errors import UserError
from divrec.metrics.ranking import order_by_score_then_id

KINDS = ("hnsw", "ivf")
_NEG_INF = float("-inf")
_FORMAT = 1  # version of the sidecar layout


class AnnError(UserError):
    """A bad ANN config, or an index file that is missing, corrupt or built for another item table."""


@dataclass(frozen=True)
class AnnConfig:
    """When and how to index the item table. The defaults, measured by ``experiments/serving/ann_bench.py`` on
    clustered D=64 embeddings (batch 1, 50 seen items): recall@10 0.9995 for hnsw at 300k items, 0.998 for ivf at
    1M items (19x and 56x lower median latency than the exact top-K on one loaded core)."""

    min_items: int = 200_000  # below this, exact top-K is fast enough: ``maybe_index`` returns None
    kind: str = "hnsw"  # "hnsw" (graph, best latency) or "ivf" (k-means cells, faster build)
    candidates: int = 200  # rows fetched from the index and re-scored exactly (more: higher recall, slower)
    M: int = 32  # hnsw: graph degree (memory ~ 2 * M * 4 bytes per item on the base layer)
    ef_construction: int = 200  # hnsw: build-time beam width (higher: better graph, slower build)
    ef_search: int = 128  # hnsw: query-time beam width, raised to the candidate count when smaller
    nlist: int = 0  # ivf: number of k-means cells; 0 = about 4 * sqrt(n_items)
    nprobe: int = 64  # ivf: cells scanned per query (1.6% of the cells at 1M items)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AnnError(f"invalid ann config: kind={self.kind!r}; choose one of {list(KINDS)}")
        for f in fields(self):
            value, lowest = getattr(self, f.name), 0 if f.name in ("min_items", "nlist") else 1
            if f.name != "kind" and (not isinstance(value, int) or isinstance(value, bool) or value < lowest):
                raise AnnError(f"invalid ann config: {f.name}={value!r}; it must be an integer >= {lowest}")

    @classmethod
    def parse(cls, values: Mapping[str, Any], where: str = "ann") -> AnnConfig:
        """An ``AnnConfig`` from a mapping (a YAML node, a sidecar), unknown keys refused as ``AnnError``."""
        unknown = sorted(set(map(str, values)) - {f.name for f in fields(cls)})
        if unknown:
            raise AnnError(
                f"invalid {where} config: unknown key(s) {unknown}; valid keys are {[f.name for f in fields(cls)]}"
            )
        return cls(**{str(key): value for key, value in values.items()})

    def cells(self, n_items: int) -> int:
        """The IVF cell count for ``n_items`` indexed items (at least 39 training points per cell)."""
        auto = self.nlist or round(4 * math.sqrt(n_items))
        return max(1, min(auto, n_items // 39 or 1))


def use_torch_threads() -> None:
    """Let faiss use as many OpenMP threads as torch's intra-op pool (``torch.set_num_threads``)."""
    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))


def fingerprint(table: Tensor, bias: Tensor | None) -> str:
    """A hash of the item table (and bias) an index was built from: a stale index is refused at load."""
    digest = hashlib.blake2b(digest_size=16)
    for tensor in (table, bias):
        if tensor is not None:
            digest.update(np.ascontiguousarray(tensor.detach().cpu().float().numpy()).data)
    return digest.hexdigest()


def bias_scale(table: Tensor, bias: Tensor | None) -> float:
    """The power of two ``s`` closest to rms(bias) / rms(table entries): the bias column holds ``b / s``."""
    if bias is None:
        return 1.0
    ratio = bias[1:].detach().float().pow(2).mean().sqrt() / table[1:].detach().float().pow(2).mean().sqrt()
    return 2.0 ** round(math.log2(float(ratio))) if math.isfinite(float(ratio)) and float(ratio) > 0 else 1.0


def indexed_vectors(table: Tensor, bias: Tensor | None, scale: float) -> np.ndarray:
    """(V, D[+1]) float32 rows 1..V of the ``(V+1, D)`` table (padding row 0 left out), ``[v_i, b_i / scale]`` with a
    bias."""
    rows = table[1:].detach().cpu().float()  # (V, D)
    if bias is not None:
        rows = torch.cat([rows, bias[1:].detach().cpu().float()[:, None] / scale], dim=1)  # (V, D + 1)
    return np.ascontiguousarray(rows.numpy())


def new_faiss_index(config: AnnConfig, dim: int, vectors: np.ndarray) -> faiss.Index:
    """An empty (trained, for IVF) inner-product index of ``config.kind`` for ``vectors`` (V, dim)."""
    if config.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
        return index
    nlist = config.cells(len(vectors))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.max_points_per_centroid = 64  # faiss subsamples the training set to 64 points per cell
    index.train(vectors)
    index.nprobe = config.nprobe
    return index


class AnnIndex:
    """An inner-product faiss index over items 1..V with exact re-scoring of its candidates (see the module doc)."""

    def __init__(self, config: AnnConfig | None = None) -> None:
        self.config = config or AnnConfig()
        self.index: faiss.Index | None = None
        self.table = torch.zeros(0, 0)  # (V+1, D) the exact scorer's item table, row 0 = padding
        self.bias: Tensor | None = None  # (V+1,) per-item score bias, or None
        self.bias_scale = 1.0  # the bias column of the index holds bias / bias_scale, the query bias_scale

    @property
    def n_items(self) -> int:
        return max(0, self.table.shape[0] - 1)

    def build(self, item_table: Tensor, bias: Tensor | None = None) -> AnnIndex:
        """Index rows 1..V of the ``(V+1, D)`` item table (row 0 = padding); ``bias`` is an optional ``(V+1,)``
        per-item score term. Returns ``self``."""
        check_table(item_table, bias)
        use_torch_threads()
        self.bias_scale = bias_scale(item_table, bias)
        vectors = indexed_vectors(item_table, bias, self.bias_scale)
        index = new_faiss_index(self.config, vectors.shape[1], vectors)
        index.add(vectors)
        self.index, self.table = index, item_table.detach()
        self.bias = None if bias is None else bias.detach()
        return self

    def _search(self, query: Tensor, n: int) -> Tensor:
        """(B, n) approximate best item ids (1..V) for ``query`` (B, D); 0 where the index found fewer than ``n``."""
        assert self.index is not None
        q = query.detach().cpu().float()
        if self.bias is not None:
            q = torch.cat([q, q.new_full((len(q), 1), self.bias_scale)], dim=1)  # (B, D + 1): · [v, b / s] = q·v + b
        if self.config.kind == "hnsw":
            params: Any = faiss.SearchParametersHNSW(efSearch=max(self.config.ef_search, n))
        else:
            params = faiss.SearchParametersIVF(nprobe=self.config.nprobe)
        use_torch_threads()
        _, labels = self.index.search(np.ascontiguousarray(q.numpy()), n, params=params)  # (B, n), -1 = none
        return torch.from_numpy(labels + 1).clamp_(min=0)  # faiss row r = item r + 1; missing (-1) → padding 0

    def rescore(self, query: Tensor, ids: Tensor, seen: Tensor | None, k: int) -> tuple[Tensor, Tensor]:
        """Exact scores of candidate ``ids`` (B, n): padding and ``seen`` (B, S) → -inf, best ``k`` by (score
        descending, id ascending); ``(B, k)`` ids (0 beyond the rankable candidates) and scores (-inf there)."""
        device = self.table.device
        ids = ids.to(device)
        q = query.detach().to(device=device, dtype=self.table.dtype)
        scores = torch.bmm(self.table[ids], q[:, :, None]).squeeze(2)  # (B, n, D) @ (B, D, 1) → (B, n)
        if self.bias is not None:
            scores = scores + self.bias.to(scores.dtype)[ids]
        drop = ids == 0
        if seen is not None and seen.numel():
            drop |= is_seen(ids, seen.to(device).long(), self.n_items + 1)
        scores = scores.masked_fill(drop, _NEG_INF)
        vals, ids = order_by_score_then_id(scores, ids)
        vals, ids = vals[:, :k], ids[:, :k]
        if vals.shape[1] < k:
            vals = torch.nn.functional.pad(vals, (0, k - vals.shape[1]), value=_NEG_INF)
            ids = torch.nn.functional.pad(ids, (0, k - ids.shape[1]), value=0)
        return ids.masked_fill(vals == _NEG_INF, 0).to(query.device), vals.to(query.device)

    @torch.no_grad()
    def retrieve(
        self, query: Tensor, k: int, seen: Tensor | None = None, n_candidates: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """The best ``k`` unseen items of each query, exactly scored: ``(B, k)`` ids and ``(B, k)`` scores.

        Args:
            query: ``(B, D)`` user representations (any device; results come back on it).
            k: list length; slots beyond the items found hold id 0 and score ``-inf`` (as ``chunked_top_k``).
            seen: ``(B, S)`` item ids to exclude, 0-padded, or None.
            n_candidates: unseen rows wanted from the index (default ``config.candidates``, at least ``k``); the
                index is asked for that many plus the most seen items of a row, capped at the catalog size, so that
                recall does not drop with long histories and ``k`` items remain once the seen ones are removed.
        """
        if self.index is None:
            raise RuntimeError("AnnIndex.retrieve before build() or load()")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if query.dim() != 2 or query.shape[1] != self.table.shape[1]:
            raise ValueError(f"query must be (B, {self.table.shape[1]}), got shape {tuple(query.shape)}")
        if seen is not None and (seen.dim() != 2 or seen.shape[0] != query.shape[0]):
            raise ValueError(f"seen must be (B, S) with B={query.shape[0]}, got shape {tuple(seen.shape)}")
        n_seen = int((seen > 0).sum(1).max()) if seen is not None and seen.numel() else 0
        n = min(self.n_items, max(n_candidates or self.config.candidates, k) + n_seen)
        return self.rescore(query, self._search(query, n), seen, k)

    def save(self, path: str | Path) -> None:
        """Write the index (faiss format) at ``path`` and its sidecar ``<path>.meta.json``, each atomically."""
        if self.index is None:
            raise RuntimeError("AnnIndex.save before build()")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": _FORMAT, "config": asdict(self.config), "n_items": self.n_items,
            "dim": int(self.table.shape[1]), "bias": self.bias is not None, "bias_scale": self.bias_scale,
            "fingerprint": fingerprint(self.table, self.bias),
        }
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        meta_path(path).unlink(missing_ok=True)  # an index without its sidecar is refused: never a mixed pair
        try:
            faiss.write_index(self.index, str(tmp))
            os.replace(tmp, path)
            tmp.write_text(json.dumps(meta, indent=1))
            os.replace(tmp, meta_path(path))
        finally:
            tmp.unlink(missing_ok=True)  # a failed write (disk full) leaves no temp file behind

    @classmethod
    def load(cls, path: str | Path, item_table: Tensor | None = None, bias: Tensor | None = None) -> AnnIndex:
        """Read an index written by ``save``. With ``item_table`` (and ``bias``) the candidates are re-scored
        with them (refused if they are not the ones the index was built from); without, the vectors stored in
        the index are used (float32, bit-exact)."""
        path = Path(path)
        meta = read_meta(path)
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as err:
            raise AnnError(f"ANN index {path} cannot be read ({str(err).splitlines()[0]}); rebuild it") from err
        width = meta["dim"] + int(meta["bias"])
        if index.ntotal != meta["n_items"] or index.d != width:
            raise AnnError(
                f"ANN index {path} holds {index.ntotal} x {index.d} vectors but {meta_path(path).name} says "
                f"{meta['n_items']} x {width}; rebuild the index"
            )
        out = cls(AnnConfig.parse(meta["config"]))
        out.index, out.bias_scale = index, float(meta["bias_scale"])
        if item_table is None:
            out.table, out.bias = stored_table(index, meta["dim"], meta["bias"], out.bias_scale)
            return out
        check_table(item_table, bias)
        if fingerprint(item_table, bias) != meta["fingerprint"]:
            raise AnnError(
                f"ANN index {path} was built from another item table (a different checkpoint?); rebuild it"
            )
        out.table, out.bias = item_table.detach(), None if bias is None else bias.detach()
        return out


def meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def read_meta(path: Path) -> dict[str, Any]:
    """The sidecar of an index file, checked for the keys ``load`` needs."""
    if not path.is_file():
        raise AnnError(f"ANN index {path} not found; build it with AnnIndex(config).build(table).save(path)")
    try:
        meta = json.loads(meta_path(path).read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {_FORMAT}")
        AnnConfig.parse(meta["config"])
        int(meta["n_items"]), int(meta["dim"]), bool(meta["bias"]), float(meta["bias_scale"]), str(meta["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise AnnError(f"ANN index sidecar {meta_path(path)} is missing or invalid ({err}); rebuild the index") from err
    return meta


def stored_table(index: faiss.Index, dim: int, bias: bool, scale: float) -> tuple[Tensor, Tensor | None]:
    """The ``(V+1, D)`` table (zero padding row first) and ``(V+1,)`` bias stored in a flat HNSW / IVF index."""
    if isinstance(index, faiss.IndexIVF):
        index.make_direct_map()
    rows = torch.from_numpy(index.reconstruct_n(0, index.ntotal))  # (V, D[+1])
    rows = torch.cat([rows.new_zeros(1, rows.shape[1]), rows])  # + padding row 0
    return rows[:, :dim].contiguous(), (rows[:, dim] * scale if bias else None)  # scale: a power of two, exact


def check_table(item_table: Tensor, bias: Tensor | None) -> None:
    if item_table.dim() != 2 or item_table.shape[0] < 2:
        raise ValueError(f"item_table must be (V+1, D) with V >= 1, got shape {tuple(item_table.shape)}")
    if bias is not None and bias.shape != (item_table.shape[0],):
        raise ValueError(f"bias must be ({item_table.shape[0]},) like the item table rows, got {tuple(bias.shape)}")


def is_seen(ids: Tensor, seen: Tensor, width: int) -> Tensor:
    """(B, n) True where ``ids[b, j]`` is in row ``b`` of ``seen`` (B, S): one ``isin`` on row-offset keys."""
    rows = torch.arange(len(ids), device=ids.device)[:, None] * width
    valid = (seen > 0) & (seen < width)
    return torch.isin(ids + rows, (seen + rows)[valid])


def maybe_index(item_table: Tensor, config: AnnConfig | None = None, bias: Tensor | None = None) -> AnnIndex | None:
    """A built ``AnnIndex`` over the ``(V+1, D)`` item table, or None when ``V < config.min_items`` (exact top-K)."""
    config = config or AnnConfig()
    if item_table.shape[0] - 1 < config.min_items:
        return None
    return AnnIndex(config).build(item_table, bias)
