"""Diversity metrics: hand-computed values on a tiny case, loop-based references on random data, NaN semantics,
the evaluator (keys, availability, per-user export) and exact two-process merges."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from divrec import names
from divrec.metrics import (
    AveragePopularity,
    CategoryCoverage,
    DiversityEvaluator,
    EmbeddingIntraListDiversity,
    Gini,
    IntraListDiversity,
    Miscalibration,
    Novelty,
    ShannonEntropy,
    TailShare,
    categories_multi_hot,
    category_distribution,
    category_slots,
    item_popularity,
)

# tiny case: items 1..4; categories 1:{0} 2:{0,1} 3:{1} 4:{}; training counts 5, 3, 1, 0
OFFSETS = torch.tensor([0, 0, 1, 3, 4, 4])
CAT_IDS = torch.tensor([0, 0, 1, 1])
POP = torch.tensor([0, 5, 3, 1, 0])
LISTS = torch.tensor([[1, 2], [1, 3], [4, 0]])
HIST = torch.tensor([[0, 1, 1], [0, 0, 3], [0, 0, 4]])
EMB = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])


def _value(metric: torch.nn.Module, **kwargs: Tensor) -> float:
    metric.update(LISTS, **kwargs)
    return float(metric.compute())


def test_multi_hot_and_popularity_helpers() -> None:
    m = categories_multi_hot(OFFSETS.numpy(), CAT_IDS.numpy())
    assert m.tolist() == [[False, False], [True, False], [True, True], [False, True], [False, False]]
    assert item_popularity(torch.tensor([1, 1, 2, 0, 3]), 4).tolist() == [0, 2, 1, 1, 0]


def test_exposure_metrics_by_hand() -> None:
    # counts over items 1..4: 2, 1, 1, 1 (5 slots); sorted 1,1,1,2 -> sum (2j-5) c = -3 -1 +1 +6 = 3
    assert _value(Gini(4, 2)) == pytest.approx(3 / (4 * 5))
    assert _value(ShannonEntropy(4, 2)) == pytest.approx(-(0.4 * math.log2(0.4) + 3 * 0.2 * math.log2(0.2)))
    with pytest.warns(UserWarning):  # torchmetrics: compute before update
        assert float(Gini(4, 2).compute()) == 0.0  # nothing recommended


def test_popularity_metrics_by_hand() -> None:
    info = [0.0, *(-math.log2((c + 1) / 13) for c in (5, 3, 1, 0))]  # Laplace: (c + 1) / (9 + 4)
    novelty = ((info[1] + info[2]) / 2 + (info[1] + info[3]) / 2 + info[4]) / 3
    assert _value(Novelty(2, POP)) == pytest.approx(novelty)
    assert _value(AveragePopularity(2, POP)) == pytest.approx((4 + 3 + 0) / 3)
    assert _value(TailShare(2, POP, head_share=0.25)) == pytest.approx((0.5 + 0.5 + 1.0) / 3)  # head = {item 1}


def test_category_and_embedding_metrics_by_hand() -> None:
    m = categories_multi_hot(OFFSETS, CAT_IDS)
    ild = IntraListDiversity(2, m)
    assert _value(ild) == pytest.approx((0.5 + 1.0) / 2)  # third list has one item: NaN, skipped
    assert ild.per_user()[2].isnan()
    assert _value(CategoryCoverage(2, m)) == pytest.approx(2 / 3)
    kl = (math.log(1 / (0.99 * 0.75 + 0.01)) + math.log(1 / (0.99 * 0.5 + 0.01))) / 2
    assert _value(Miscalibration(2, m, alpha=0.01), histories=HIST) == pytest.approx(kl)
    emb = (1.0 + (1 - 1 / math.sqrt(2))) / 2
    assert _value(EmbeddingIntraListDiversity(2, EMB)) == pytest.approx(emb)
    assert _value(EmbeddingIntraListDiversity(2), embeddings=EMB) == pytest.approx(emb)


# --- loop-based references ---------------------------------------------------------------------------------------


def _random_case(seed: int, batch: int = 23, n_items: int = 30, k: int = 6, n_cat: int = 5) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lists = torch.randint(0, n_items + 1, (batch, k), generator=gen)
    lists[:3, 1:] = 0  # a few nearly empty lists
    lists[3] = 0
    cats = [
        sorted(set(torch.randint(0, n_cat, (int(torch.randint(0, 3, (1,), generator=gen)),), generator=gen).tolist()))
        for _ in range(n_items)
    ]
    offsets = torch.tensor([0, 0, *torch.tensor([len(c) for c in cats]).cumsum(0).tolist()])
    ids = torch.tensor([c for cs in cats for c in cs], dtype=torch.long)
    return {
        "lists": lists,
        "hist": torch.randint(0, n_items + 1, (batch, 7), generator=gen),
        "pop": torch.randint(0, 9, (n_items + 1,), generator=gen),
        "emb": torch.randn(n_items + 1, 4, generator=gen, dtype=torch.float64),
        "multi_hot": categories_multi_hot(offsets, ids, n_cat),
    }


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else 0.0


def _dist(items: list[int], cats: list[set[int]], n_cat: int) -> list[float]:
    """Steck's category distribution of a list: each categorised item spreads 1/|C_i| over its categories."""
    used = [i for i in items if cats[i]]
    out = [0.0] * n_cat
    for i in used:
        for c in cats[i]:
            out[c] += 1 / len(cats[i]) / len(used)
    return out


def _reference(case: dict[str, Tensor], k: int) -> dict[str, float]:
    lists = [[i for i in row[:k] if i > 0] for row in case["lists"].tolist()]
    pop = case["pop"].tolist()
    pop[0] = 0
    n = len(pop) - 1
    cats = [{c for c in range(case["multi_hot"].shape[1]) if case["multi_hot"][i, c]} for i in range(n + 1)]
    counts = [0] * (n + 1)
    for lst in lists:
        for i in lst:
            counts[i] += 1
    srt, tot = sorted(counts[1:]), sum(counts)
    gini = sum((2 * j - n - 1) * c for j, c in enumerate(srt, 1)) / (n * tot)
    entropy = -sum(c / tot * math.log2(c / tot) for c in counts if c)
    info = [-math.log2((c + 1) / (sum(pop) + n)) for c in pop]
    head = set(sorted(range(1, n + 1), key=lambda i: (-pop[i], i))[: math.ceil(0.2 * n)])
    emb = torch.nn.functional.normalize(case["emb"], dim=-1)

    def pairs(lst: list[int], dist: object) -> float:
        ds = [dist(a, b) for x, a in enumerate(lst) for b in lst[x + 1 :]]  # type: ignore[operator]
        return sum(ds) / len(ds) if ds else math.nan

    def jac(a: int, b: int) -> float:
        u = cats[a] | cats[b]
        return 1 - len(cats[a] & cats[b]) / len(u) if u else 0.0

    def kl(hist: list[int], lst: list[int]) -> float:
        if not any(cats[i] for i in hist):
            return math.nan
        p, q = _dist(hist, cats, n_cat), _dist(lst, cats, n_cat)
        return sum(pc * math.log(pc / (0.99 * qc + 0.01 * pc)) for pc, qc in zip(p, q, strict=True) if pc > 0)

    hists = [[i for i in row if i > 0] for row in case["hist"].tolist()]
    n_cat = case["multi_hot"].shape[1]
    nan = math.nan
    return {
        names.GINI: gini,
        names.ENTROPY: entropy,
        names.NOVELTY: _mean([sum(info[i] for i in lst) / len(lst) if lst else nan for lst in lists]),
        names.AVG_POPULARITY: _mean([sum(pop[i] for i in lst) / len(lst) if lst else nan for lst in lists]),
        names.TAIL_SHARE: _mean([sum(i not in head for i in lst) / len(lst) if lst else nan for lst in lists]),
        names.ILD: _mean([pairs(lst, jac) for lst in lists]),
        names.ILD_EMBEDDING: _mean([pairs(lst, lambda a, b: 1 - float(emb[a] @ emb[b])) for lst in lists]),
        names.CATEGORY_COVERAGE: _mean([len(set().union(*(cats[i] for i in lst))) / n_cat for lst in lists]),
        names.MISCALIBRATION: _mean([kl(h, lst) for h, lst in zip(hists, lists, strict=True)]),
    }


def _evaluator(case: dict[str, Tensor], ks: tuple[int, ...] = (2, 6)) -> DiversityEvaluator:
    n_items = case["pop"].numel() - 1
    m = case["multi_hot"]
    nz = m.nonzero()
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(nz[:, 0], minlength=n_items + 1).cumsum(0)])
    return DiversityEvaluator(
        names.TEST,
        n_items,
        ks,
        item_category_offsets=offsets,
        item_category_ids=nz[:, 1],
        n_categories=m.shape[1],
        popularity=case["pop"],
        embeddings=lambda: case["emb"],
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluator_matches_loop_reference(seed: int) -> None:
    case = _random_case(seed)
    ev = _evaluator(case)
    ev.update(case["lists"][:10], histories=case["hist"][:10])  # two batches
    ev.update(case["lists"][10:], histories=case["hist"][10:])
    got = ev.compute()
    for k in (2, 6):
        for name, value in _reference(case, k).items():
            assert got[names.metric_key(names.TEST, name, k)] == pytest.approx(value, abs=1e-9), (name, k)


def test_evaluator_keys_availability_and_reset() -> None:
    case = _random_case(3)
    ev = _evaluator(case, ks=(6, 2, 2))
    assert ev.metric_keys()[:2] == ["test/gini@2", "test/gini@6"]
    assert len(ev.metric_keys()) == 9 * 2
    with pytest.raises(ValueError, match="histories"):
        ev.update(case["lists"])
    with pytest.raises(ValueError, match=r"\(B, >=6\)"):
        ev.update(case["lists"][:, :3], histories=case["hist"])
    bare = DiversityEvaluator(names.VAL, 30, (5,))
    assert bare.metric_keys() == ["val/gini@5", "val/entropy@5"]
    with pytest.raises(ValueError, match="lack their inputs"):
        DiversityEvaluator(names.VAL, 30, (5,), metrics=[names.ILD])
    ev.update(case["lists"], histories=case["hist"])
    ev.reset()
    with pytest.warns(UserWarning):  # torchmetrics: compute before update
        assert all(v == 0.0 for v in ev.compute().values())


def test_merge_state_two_halves_equals_one_process() -> None:
    case = _random_case(4, batch=31)
    whole, rank0, rank1 = _evaluator(case), _evaluator(case), _evaluator(case)
    whole.update(case["lists"], histories=case["hist"])
    rank0.update(case["lists"][:12], histories=case["hist"][:12])
    rank1.update(case["lists"][12:], histories=case["hist"][12:])
    for key in rank0.metric_keys():
        rank0.metrics[key].merge_state(rank1.metrics[key])
    expected, merged = whole.compute(), rank0.compute()
    for key, value in expected.items():
        assert merged[key] == pytest.approx(value, abs=1e-12), key
    per_whole, per_merged = whole.per_user(), rank0.per_user()
    assert per_whole.keys() == per_merged.keys() and len(per_whole) == 7 * 2
    for key, values in per_whole.items():
        assert torch.equal(per_merged[key].nan_to_num(-1.0).sort().values, values.nan_to_num(-1.0).sort().values), key


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        Novelty(2, POP, smoothing=0.0)
    with pytest.raises(ValueError):
        TailShare(2, POP, head_share=1.5)
    with pytest.raises(ValueError, match="item ids"):
        AveragePopularity(2, POP).update(torch.tensor([[5, 1]]))
    with pytest.raises(ValueError, match="embeddings"):
        EmbeddingIntraListDiversity(2).update(LISTS)


def test_category_distribution_matches_the_multi_hot_formula_and_is_shared_across_k() -> None:
    """The scatter-based distribution equals mean over categorised items of multi-hot / |C_i| (random case), and
    the evaluator's shared history distribution gives the same miscalibration as per-metric histories."""
    gen = torch.Generator().manual_seed(3)
    m = torch.rand(31, 9, generator=gen) < 0.25
    m[0] = False
    items = torch.randint(0, 31, (12, 7), generator=gen)
    hot = m[items].double()  # (B, L, C)
    sizes = hot.sum(-1, keepdim=True)
    n = (sizes.squeeze(-1) > 0).sum(1)
    want = (hot / sizes.clamp_min(1)).sum(1) / n.clamp_min(1).unsqueeze(1)
    got, got_n = category_distribution(items, m)
    assert torch.allclose(got, want) and torch.equal(got_n, n)
    assert category_slots(m).shape == (31, int(m.sum(1).max()))
    lists = torch.randint(0, 31, (12, 5), generator=gen)
    shared, own = Miscalibration(5, m), Miscalibration(5, m)
    shared.update(lists, history_dist=shared.history_distribution(items))
    own.update(lists, histories=items)
    assert torch.equal(shared.per_user(), own.per_user())


def test_category_distribution_in_row_blocks_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long histories of items with many categories are processed in blocks of users; the result is unchanged."""
    from divrec.metrics import categories

    gen = torch.Generator().manual_seed(0)
    multi_hot = torch.rand(30, 12, generator=gen) < 0.4
    multi_hot[0] = False  # padding
    items = torch.randint(0, 30, (9, 7), generator=gen)
    whole = categories.category_distribution(items, multi_hot)
    monkeypatch.setattr(categories, "SLOT_BUDGET", 7 * 12 * 2)  # two users per block
    blocked = categories.category_distribution(items, multi_hot)
    torch.testing.assert_close(blocked[0], whole[0])
    assert torch.equal(blocked[1], whole[1])


@pytest.mark.parametrize(("n_cat", "p_category", "by_ids"), [(400, 0.005, True), (40, 0.6, False)])
def test_ild_both_computation_paths_match_brute_force_jaccard(n_cat: int, p_category: float, by_ids: bool) -> None:
    """Few categories per item: category ids are compared pairwise; many: a multi-hot product. Same values."""
    gen = torch.Generator().manual_seed(1)
    multi_hot = torch.rand(25, n_cat, generator=gen) < p_category
    multi_hot[0] = False
    lists = torch.randint(0, 25, (6, 5), generator=gen)
    assert (5 * int(multi_hot.sum(1).max()) ** 2 <= n_cat) == by_ids
    metric = IntraListDiversity(5, multi_hot)
    metric.update(lists)
    expected = []
    for row in lists.tolist():
        real = [i for i in row if i > 0]
        dists = []
        for a in range(len(real)):
            for b in range(a + 1, len(real)):
                ca = set(multi_hot[real[a]].nonzero().flatten().tolist())
                cb = set(multi_hot[real[b]].nonzero().flatten().tolist())
                dists.append(0.0 if not (ca | cb) else 1 - len(ca & cb) / len(ca | cb))
        expected.append(sum(dists) / len(dists) if dists else float("nan"))
    torch.testing.assert_close(metric.per_user(), torch.tensor(expected, dtype=metric.per_user().dtype), equal_nan=True)
