"""xQuAD: same picks as a per-user loop over the textbook formula, λ = 0 is the plain ranking; order='score' keeps
the set; Jaccard similarity against a brute-force matrix."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from divrec.metrics import category_distribution
from divrec.rerank import DPP, MMR, ItemSimilarity, NoRerank, RerankContext, XQuAD

NEG_INF = float("-inf")
N_ITEMS, N_CAT = 40, 7


def _multi_hot(seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    m = torch.rand(N_ITEMS + 1, N_CAT, generator=gen) < 0.3
    m[0] = False
    m[5] = False  # an uncategorised item
    return m


def _batch(seed: int, batch: int = 10, n: int = 16) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    candidates = torch.stack([torch.randperm(N_ITEMS, generator=gen)[:n] + 1 for _ in range(batch)])
    scores = torch.randn(batch, n, generator=gen, dtype=torch.float64) * 2
    scores[:, 4::6] = NEG_INF
    return scores, candidates


def _xquad_reference(scores: Tensor, cands: Tensor, m: Tensor, k: int, lam: float, relevance: str,
                     aspects: Tensor | None) -> list[list[int]]:
    """Per user, plain Python: P(i|u), P(c|u) = sum_i P(i|u) [c in C_i] / |C_i| (or the given rows), binary P(i|c),
    gain (1-λ) P(i|u) + λ Σ_c P(c|u) P(i|c) Π_{j in Y} (1 - P(j|c)); ties to the lower position."""
    out = []
    for b in range(scores.shape[0]):
        valid = [i for i in range(scores.shape[1]) if scores[b, i] > NEG_INF]
        s = {i: float(scores[b, i]) for i in valid}
        if relevance == "softmax":
            z = sum(math.exp(v) for v in s.values())
            rel = {i: math.exp(v) / z for i, v in s.items()}
        else:
            lo, hi = min(s.values()), max(s.values())
            rel = {i: (v - lo) / (hi - lo) for i, v in s.items()}
        cats = {i: [c for c in range(N_CAT) if m[int(cands[b, i]), c]] for i in valid}
        if aspects is None:
            total = sum(rel.values())
            p_c = [sum(rel[i] / total / len(cats[i]) for i in valid if c in cats[i]) for c in range(N_CAT)]
        else:
            p_c = aspects[b].tolist()
        picks: list[int] = []
        while len(picks) < min(k, len(valid)):

            def gain(i: int, picks: list = picks, rel: dict = rel, cats: dict = cats, p_c: list = p_c) -> float:
                div = sum(p_c[c] * math.prod(0.0 if c in cats[j] else 1.0 for j in picks) for c in cats[i])
                return (1 - lam) * rel[i] + lam * div

            picks.append(max((i for i in valid if i not in picks), key=lambda i: (gain(i), -i)))
        out.append([int(cands[b, i]) for i in picks] + [0] * (k - len(picks)))
    return out


@pytest.mark.parametrize("relevance", ["softmax", "minmax"])
@pytest.mark.parametrize("lam", [0.3, 0.8])
def test_xquad_matches_loop_reference(relevance: str, lam: float) -> None:
    m = _multi_hot(0)
    scores, candidates = _batch(1)
    got = XQuAD(m, lam, relevance=relevance)(scores, candidates, 7)
    assert got.tolist() == _xquad_reference(scores, candidates, m, 7, lam, relevance, None)


def test_xquad_history_aspects_match_loop_reference() -> None:
    m = _multi_hot(2)
    scores, candidates = _batch(3)
    hist = torch.randint(0, N_ITEMS + 1, (scores.shape[0], 8), generator=torch.Generator().manual_seed(4))
    got = XQuAD(m, 0.6, aspects="history")(scores, candidates, 6, RerankContext(histories=hist))
    p, _ = category_distribution(hist, m)
    assert got.tolist() == _xquad_reference(scores, candidates, m, 6, 0.6, "softmax", p)
    with pytest.raises(ValueError, match="histories"):
        XQuAD(m, 0.6, aspects="history")(scores, candidates, 6)


def test_xquad_lambda_zero_is_the_plain_ranking_and_coverage_grows() -> None:
    m = _multi_hot(5)
    scores, candidates = _batch(6)
    assert torch.equal(XQuAD(m, 0.0)(scores, candidates, 8), NoRerank()(scores, candidates, 8))
    n_cats = [int(m[XQuAD(m, lam)(scores, candidates, 5)].any(1).sum()) for lam in (0.0, 1.0)]
    assert n_cats[1] > n_cats[0]


def test_order_by_score_keeps_the_set_and_sorts_it() -> None:
    m = _multi_hot(7)
    scores, candidates = _batch(8)
    for make in (lambda o: MMR(0.3, item_categories=m, order=o), lambda o: XQuAD(m, 0.7, order=o),
                 lambda o: DPP(0.5, item_categories=m, order=o)):
        greedy, by_score = make("greedy")(scores, candidates, 6), make("score")(scores, candidates, 6)
        assert torch.equal(greedy.sort(1).values, by_score.sort(1).values)
        score_of = {(b, int(c)): float(scores[b, i]) for b in range(len(scores)) for i, c in enumerate(candidates[b])}
        for b, row in enumerate(by_score.tolist()):
            vals = [score_of[b, i] for i in row if i]
            assert vals == sorted(vals, reverse=True)
    with pytest.raises(ValueError, match="order"):
        MMR(0.3, item_categories=m, order="random")  # type: ignore[arg-type]


def test_jaccard_similarity_is_the_brute_force_tanimoto_kernel() -> None:
    m = _multi_hot(9)
    _, candidates = _batch(9, batch=3, n=12)
    got = ItemSimilarity("jaccard", m).rows(candidates).full().double()
    for b in range(3):
        for i, ci in enumerate(candidates[b].tolist()):
            for j, cj in enumerate(candidates[b].tolist()):
                a, c = set(m[ci].nonzero().flatten().tolist()), set(m[cj].nonzero().flatten().tolist())
                want = 1.0 if i == j else (len(a & c) / len(a | c) if a | c else 0.0)
                assert got[b, i, j].item() == pytest.approx(want)
    assert torch.linalg.eigvalsh(got).min() > -1e-9  # PSD: a valid DPP kernel


def test_order_by_score_sorts_within_blocks_so_prefixes_stay_greedy() -> None:
    """order='score' on a 20-item list: its first 10 are the 10-item greedy list sorted by score (what @10 metrics
    of the evaluation's longer list see), and so are the next 10 among the remaining greedy picks."""
    m = _multi_hot(12)
    scores, candidates = _batch(13, n=30)
    mmr = MMR(0.3, item_categories=m, order="score")
    long, short = mmr(scores, candidates, 20), mmr(scores, candidates, 10)
    assert torch.equal(long[:, :10], short)
    greedy = MMR(0.3, item_categories=m)(scores, candidates, 20)
    assert torch.equal(long[:, 10:].sort(1).values, greedy[:, 10:].sort(1).values)
