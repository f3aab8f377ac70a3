"""ANN retrieval (divrec.serving.ann): recall against the exact top-K, exact scores, seen items and padding never
returned, per-item bias, save/load, and when an index is built at all."""

from __future__ import annotations

from pathlib import Path

import faiss
import pytest
import torch
from torch import Tensor

from divrec.metrics.chunked import chunked_top_k
from divrec.serving.ann import AnnConfig, AnnError, AnnIndex, maybe_index

V, D, B, K = 20_000, 32, 100, 10
# The shipped graph settings with a cheaper build (efConstruction 200 → 100 / 64) so each index builds in about a
# second; the shipped defaults are measured at 1M items by experiments/serving/ann_bench.py.
FAST_HNSW = AnnConfig(min_items=0, kind="hnsw", ef_construction=100)
IVF = AnnConfig(min_items=0, kind="ivf", nlist=128, nprobe=32)


def random_case(seed: int) -> tuple[Tensor, Tensor]:
    """``(V+1, D)`` i.i.d. Gaussian table (zero padding row) and ``(B, D)`` queries."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(V + 1, D, generator=g)
    table[0] = 0
    return table, torch.randn(B, D, generator=g)


def clustered_case(seed: int) -> tuple[Tensor, Tensor]:
    """Items and queries near 100 cluster centres, item norms log-normal (like trained embeddings)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(100, D, generator=g)
    table = centres[torch.randint(0, 100, (V + 1,), generator=g)] + 0.5 * torch.randn(V + 1, D, generator=g)
    table = table * torch.exp(0.3 * torch.randn(V + 1, 1, generator=g))
    table[0] = 0
    queries = centres[torch.randint(0, 100, (B,), generator=g)] + 0.5 * torch.randn(B, D, generator=g)
    return table, queries


CASES = {"random": (random_case, AnnConfig(min_items=0, ef_construction=64)), "clustered": (clustered_case, FAST_HNSW)}


def exact(query: Tensor, table: Tensor, seen: Tensor, k: int = K) -> tuple[Tensor, Tensor]:
    """(B, k) ids and scores of the exact top-k, seen items and padding excluded."""
    scores, ids, _ = chunked_top_k(query, table, seen, k, 4096)
    return ids, scores


def recall(found: Tensor, truth: Tensor) -> float:
    return sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, truth, strict=True)) / truth.numel()


def random_seen(n_items: int, rows: int, width: int, seed: int = 1) -> Tensor:
    return torch.randint(1, n_items + 1, (rows, width), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, Tensor, Tensor, AnnIndex]:
    make, config = CASES[request.param]
    table, queries = make(0)
    return request.param, table, queries, AnnIndex(config).build(table)


def test_hnsw_recall_at_10_against_exact(case: tuple[str, Tensor, Tensor, AnnIndex]) -> None:
    name, table, queries, index = case
    seen = random_seen(V, B, 20)
    ids, _ = index.retrieve(queries, K, seen)
    assert recall(ids, exact(queries, table, seen)[0]) >= 0.98, name


def test_ivf_recall_at_10_on_clustered_embeddings() -> None:
    table, queries = clustered_case(1)
    seen = random_seen(V, B, 20)
    ids, _ = AnnIndex(IVF).build(table).retrieve(queries, K, seen)
    assert recall(ids, exact(queries, table, seen)[0]) >= 0.98


def test_scores_are_the_exact_scores_of_the_returned_ids(case: tuple[str, Tensor, Tensor, AnnIndex]) -> None:
    _, table, queries, index = case
    ids, scores = index.retrieve(queries, K, random_seen(V, B, 20))
    assert (ids > 0).all()
    torch.testing.assert_close(scores, (queries @ table.T).gather(1, ids), rtol=1e-5, atol=1e-5)
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first


def test_seen_items_are_never_returned_even_the_best_ones(case: tuple[str, Tensor, Tensor, AnnIndex]) -> None:
    _, table, queries, index = case
    best, _ = exact(queries, table, torch.zeros(B, 0, dtype=torch.long), k=30)
    seen = torch.cat([best, torch.zeros(B, 5, dtype=torch.long)], 1)  # the true top 30 (+ 0-padding) are seen
    for n_candidates in (5, None):  # 5 < k: still k unseen items (the seen ones are over-fetched past)
        ids, _ = index.retrieve(queries, K, seen, n_candidates=n_candidates)
        assert (ids > 0).all()
        assert not (ids[:, :, None] == best[:, None, :]).any()
    assert recall(ids, exact(queries, table, seen)[0]) >= 0.98


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_padding_is_never_returned_even_when_it_would_score_best(kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    table = -torch.rand(501, 8, generator=g)  # every item scores < 0 for a positive query; padding would score 0
    table[0] = 0
    query = torch.rand(4, 8, generator=g)
    config = AnnConfig(min_items=0, kind=kind, ef_construction=100, nlist=1, nprobe=1)  # ivf: one cell = exhaustive
    ids, scores = AnnIndex(config).build(table).retrieve(query, 5)
    assert (ids > 0).all() and (scores < 0).all()
    torch.testing.assert_close(scores, (query @ table.T).gather(1, ids))
    if kind == "ivf":  # an inner-product graph may miss small-norm items; one IVF cell scans them all
        want_ids, want_scores = exact(query, table, torch.zeros(4, 0, dtype=torch.long), k=5)
        assert torch.equal(ids, want_ids)
        torch.testing.assert_close(scores, want_scores)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_small_catalog_equals_chunked_top_k_padded_past_the_unseen_items(kind: str) -> None:
    g = torch.Generator().manual_seed(3)
    table = torch.randn(41, 8, generator=g)
    table[0] = 0
    query, seen = torch.randn(3, 8, generator=g), random_seen(40, 3, 12)
    index = AnnIndex(AnnConfig(min_items=0, kind=kind, nlist=1, nprobe=1)).build(table)
    ids, scores = index.retrieve(query, 45, seen)  # k > unseen items: trailing slots are id 0, score -inf
    want_ids, want_scores = exact(query, table, seen, k=45)
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(scores, want_scores)
    assert (ids == 0).any() and torch.isinf(scores[ids == 0]).all()


def test_per_item_bias_is_scored_exactly() -> None:
    g = torch.Generator().manual_seed(4)
    table, queries = torch.randn(5001, D, generator=g), torch.randn(B, D, generator=g)
    table[0] = 0
    bias = 3 * torch.randn(5001, generator=g)  # as large as the dot products: it changes the top-10
    seen = random_seen(5000, B, 10)
    ids, scores = AnnIndex(FAST_HNSW).build(table, bias).retrieve(queries, K, seen)
    augmented = torch.cat([table, bias[:, None]], 1), torch.cat([queries, torch.ones(B, 1)], 1)
    truth, _ = exact(augmented[1], augmented[0], seen)
    assert recall(ids, truth) >= 0.98
    assert recall(truth, exact(queries, table, seen)[0]) < 0.9  # the bias matters
    torch.testing.assert_close(scores, (queries @ table.T + bias).gather(1, ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_save_load_round_trip(tmp_path: Path, kind: str) -> None:
    g = torch.Generator().manual_seed(5)
    table, queries, bias = torch.randn(2001, 16, generator=g), torch.randn(8, 16, generator=g), torch.randn(2001)
    table[0] = 0
    config = AnnConfig(min_items=0, kind=kind, ef_construction=40, nlist=16, nprobe=4)
    built = AnnIndex(config).build(table, bias)
    built.save(tmp_path / "items.faiss")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.faiss", "items.faiss.meta.json"]  # no temp files
    seen = random_seen(2000, 8, 5)
    want = built.retrieve(queries, K, seen)
    for loaded in (AnnIndex.load(tmp_path / "items.faiss"), AnnIndex.load(tmp_path / "items.faiss", table, bias)):
        assert loaded.config == config and loaded.n_items == 2000
        got = loaded.retrieve(queries, K, seen)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_load_refuses_missing_stale_or_corrupt_files(tmp_path: Path) -> None:
    table = torch.randn(301, 8)
    path = tmp_path / "items.faiss"
    with pytest.raises(AnnError, match="not found; build it"):
        AnnIndex.load(path)
    AnnIndex(AnnConfig(min_items=0, ef_construction=40)).build(table).save(path)
    with pytest.raises(AnnError, match="another item table"):
        AnnIndex.load(path, table + 1)
    path.write_bytes(b"not a faiss index")
    with pytest.raises(AnnError, match="cannot be read"):
        AnnIndex.load(path)
    (tmp_path / "items.faiss.meta.json").unlink()
    with pytest.raises(AnnError, match=r"sidecar .* is missing or invalid"):
        AnnIndex.load(path)


def test_maybe_index_only_above_the_threshold() -> None:
    table = torch.randn(1001, 8)
    assert maybe_index(table, AnnConfig(min_items=1001)) is None  # 1000 items < 1001: exact top-K is used
    index = maybe_index(table, AnnConfig(min_items=1000, ef_construction=40))
    assert isinstance(index, AnnIndex) and index.n_items == 1000
    assert maybe_index(table) is None  # the default threshold is 200k items


def test_faiss_uses_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)  # faiss's own default is every core
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # torch and faiss may share one OpenMP runtime
    try:
        AnnIndex(AnnConfig(min_items=0, ef_construction=40)).build(torch.randn(101, 4))
        assert faiss.omp_get_max_threads() == 1
    finally:
        faiss.omp_set_num_threads(before)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "lsh"}, r"kind='lsh'; choose one of \['hnsw', 'ivf'\]"),
        ({"candidates": 0}, r"candidates=0; it must be an integer >= 1"),
        ({"nlist": -1}, r"nlist=-1; it must be an integer >= 0"),
        ({"M": 1.5}, r"M=1.5; it must be an integer >= 1"),
        ({"ef_search": "64"}, r"ef_search='64'; it must be an integer >= 1"),
        ({"efSearch": 64}, r"unknown key\(s\) \['efSearch'\]; valid keys are \['min_items', 'kind'"),
    ],
)
def test_bad_config_is_one_line_user_error(change: dict[str, object], message: str) -> None:
    with pytest.raises(AnnError, match=message) as err:
        AnnConfig.parse(change)
    assert "\n" not in str(err.value)
