"""MMR, Calibrated and NoRerank: reduction to the plain ranking, loop-based references, masking, similarity helper."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from divrec.metrics import Miscalibration, categories_multi_hot
from divrec.rerank import (
    DPP,
    MMR,
    Calibrated,
    NoRerank,
    RerankContext,
    Reranker,
    XQuAD,
    candidate_similarity,
    normalize_relevance,
    rerank_lists,
)

NEG_INF = float("-inf")
N_ITEMS, N_CAT = 50, 6


def _multi_hot(seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    m = torch.rand(N_ITEMS + 1, N_CAT, generator=gen) < 0.3
    m[0] = False
    return m


def _batch(seed: int, batch: int = 12, n: int = 20) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    candidates = torch.stack([torch.randperm(N_ITEMS, generator=gen)[:n] + 1 for _ in range(batch)])
    scores = torch.randn(batch, n, generator=gen, dtype=torch.float64)
    scores[:, 3::5] = NEG_INF
    return scores, candidates


def _cos(m: Tensor, a: int, b: int) -> float:
    x, y = m[a].double(), m[b].double()
    if a == b:
        return 1.0
    den = float(x.norm() * y.norm())
    return float(x @ y) / den if den else 0.0


def _mmr_reference(
    scores: Tensor, candidates: Tensor, m: Tensor, k: int, lam: float, aggregate: str = "max", lse: Tensor | None = None
) -> list[list[int]]:
    """Plain-Python MMR: rel = per-user min–max scores, or exp(s - lse) (model probabilities) when ``lse`` is given;
    penalty = max (or sum) of cosine similarities to the picks."""
    out = []
    for b in range(scores.shape[0]):
        valid = [i for i in range(scores.shape[1]) if scores[b, i] > NEG_INF]
        lo, hi = min(float(scores[b, i]) for i in valid), max(float(scores[b, i]) for i in valid)
        if lse is None:
            rel = {i: (float(scores[b, i]) - lo) / (hi - lo) for i in valid}
        else:
            rel = {i: math.exp(float(scores[b, i]) - float(lse[b, 0])) for i in valid}
        picks: list[int] = []
        while len(picks) < min(k, len(valid)):

            def gain(i: int, b: int = b, rel: dict = rel, picks: list = picks) -> float:
                sims = [_cos(m, int(candidates[b, i]), int(candidates[b, j])) for j in picks]
                penalty = sum(sims) if aggregate == "sum" else max(sims, default=0.0)
                return lam * rel[i] - (1 - lam) * penalty

            picks.append(max((i for i in valid if i not in picks), key=lambda i: (gain(i), -i)))
        out.append([int(candidates[b, i]) for i in picks] + [0] * (k - len(picks)))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_mmr_matches_loop_reference(seed: int) -> None:
    m = _multi_hot(seed)
    scores, candidates = _batch(seed)
    got = MMR(0.6, "categories", item_categories=m)(scores, candidates, 8)
    assert got.tolist() == _mmr_reference(scores, candidates, m, 8, 0.6)


def test_mmr_sum_and_softmax_relevance_match_loop_reference() -> None:
    """aggregate='sum' (MaxSum) with model probabilities exp(s - lse), lse the full-catalog normaliser."""
    m = _multi_hot(3)
    scores, candidates = _batch(3)
    lse = torch.logsumexp(torch.where(scores > NEG_INF, scores, NEG_INF), 1, keepdim=True) + 0.7  # mass elsewhere
    ctx = RerankContext(log_normalizer=lse)
    got = MMR(0.8, "categories", item_categories=m, relevance="softmax", aggregate="sum")(scores, candidates, 8, ctx)
    assert got.tolist() == _mmr_reference(scores, candidates, m, 8, 0.8, "sum", lse)
    got = MMR(0.4, "categories", item_categories=m, aggregate="sum")(scores, candidates, 8)
    assert got.tolist() == _mmr_reference(scores, candidates, m, 8, 0.4, "sum")


def _calibrated_reference(scores: Tensor, candidates: Tensor, m: Tensor, hist: Tensor, k: int, lam: float) -> list:
    def dist(items: list[int]) -> list[float]:
        used = [i for i in items if m[i].any()]
        out = [0.0] * N_CAT
        for i in used:
            for c in m[i].nonzero().flatten().tolist():
                out[c] += 1 / int(m[i].sum()) / len(used)
        return out

    result = []
    for b in range(scores.shape[0]):
        p = dist([i for i in hist[b].tolist() if i > 0])
        valid = [i for i in range(scores.shape[1]) if scores[b, i] > NEG_INF]
        lo, hi = min(float(scores[b, i]) for i in valid), max(float(scores[b, i]) for i in valid)
        rel = {i: (float(scores[b, i]) - lo) / (hi - lo) for i in valid}
        picks: list[int] = []

        def objective(sel: list[int], b: int = b, p: list[float] = p, rel: dict = rel) -> float:
            q = dist([int(candidates[b, i]) for i in sel])
            kl = sum(pc * math.log(pc / (0.99 * qc + 0.01 * pc)) for pc, qc in zip(p, q, strict=True) if pc > 0)
            return (1 - lam) * sum(rel[i] for i in sel) - lam * kl

        while len(picks) < min(k, len(valid)):
            picks.append(max((i for i in valid if i not in picks), key=lambda i: (objective([*picks, i]), -i)))
        result.append([int(candidates[b, i]) for i in picks] + [0] * (k - len(picks)))
    return result


def test_calibrated_matches_loop_reference() -> None:
    m = _multi_hot(2)
    scores, candidates = _batch(2)
    hist = torch.randint(0, N_ITEMS + 1, (scores.shape[0], 9), generator=torch.Generator().manual_seed(9))
    got = Calibrated(m, lambda_=0.5, alpha=0.01)(scores, candidates, 7, RerankContext(histories=hist))
    assert got.tolist() == _calibrated_reference(scores, candidates, m, hist, 7, 0.5)


def test_lambda_extremes_reproduce_the_plain_ranking() -> None:
    m = _multi_hot(3)
    scores, candidates = _batch(3)
    hist = torch.randint(0, N_ITEMS + 1, (scores.shape[0], 9), generator=torch.Generator().manual_seed(1))
    plain = NoRerank()(scores, candidates, 10)
    assert torch.equal(MMR(1.0, item_categories=m)(scores, candidates, 10), plain)
    assert torch.equal(Calibrated(m, lambda_=0.0)(scores, candidates, 10, RerankContext(histories=hist)), plain)
    assert torch.equal(Calibrated(m, lambda_=0.0)(scores, candidates, 10), plain)  # histories optional at lambda 0


def test_calibrated_reduces_miscalibration() -> None:
    """History half category 0, half category 1; the 5 best-scored candidates are all category 0."""
    offsets = torch.tensor([0, 0, *range(1, 11)])
    cats = torch.tensor([0] * 5 + [1] * 5)  # items 1..5: category 0, items 6..10: category 1
    m = categories_multi_hot(offsets, cats)
    candidates = torch.arange(1, 11).unsqueeze(0)
    scores = torch.linspace(1.0, 0.0, 10).unsqueeze(0)
    ctx = RerankContext(histories=torch.tensor([[1, 2, 6, 7]]))
    plain = NoRerank()(scores, candidates, 4)
    calibrated = Calibrated(m, lambda_=0.9)(scores, candidates, 4, ctx)
    miscal = []
    for lists in (plain, calibrated):
        metric = Miscalibration(4, m)
        metric.update(lists, histories=ctx.histories)
        miscal.append(float(metric.compute()))
    assert miscal[0] > 1.0 and miscal[1] < 1e-3  # plain: all category 0; calibrated: two of each
    assert sorted(calibrated[0].tolist()) == [1, 2, 6, 7]


@pytest.mark.parametrize(
    "make",
    [
        lambda m: NoRerank(),
        lambda m: MMR(0.3, item_categories=m),
        lambda m: MMR(0.3, "embeddings", item_embeddings=torch.randn(N_ITEMS + 1, 5)),
        lambda m: DPP(0.5, item_categories=m),
        lambda m: DPP(0.5, window=3, item_categories=m),
        lambda m: Calibrated(m, lambda_=0.7),
        lambda m: XQuAD(m, 0.7),
        lambda m: XQuAD(m, 0.7, relevance="minmax", aspects="history", order="score"),
        lambda m: MMR(0.3, "jaccard", item_categories=m),
        lambda m: DPP(0.5, similarity="jaccard", item_categories=m, identity_mix=0.2),
    ],
)
def test_invalid_candidates_never_selected(make: object) -> None:
    m = _multi_hot(4)
    reranker: Reranker = make(m)  # type: ignore[operator]
    scores, candidates = _batch(4, batch=6, n=20)
    scores[0, :17] = NEG_INF  # 3 valid candidates for user 0
    scores[1, 5] = math.nan
    candidates[2, 0] = 0  # padding candidate with a finite score
    scores[2, 0] = 100.0
    hist = torch.randint(0, N_ITEMS + 1, (6, 5), generator=torch.Generator().manual_seed(2))
    out = reranker(scores, candidates, 8, RerankContext(histories=hist))
    assert out.shape == (6, 8)
    for b in range(6):
        valid = {int(candidates[b, i]) for i in range(20) if scores[b, i] > NEG_INF and candidates[b, i] > 0}
        picked = [i for i in out[b].tolist() if i]
        assert set(picked) <= valid and len(set(picked)) == len(picked) == min(8, len(valid))
    assert out[0, 3:].eq(0).all()


def test_candidate_similarity_and_relevance_normalisation() -> None:
    m = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 0]], dtype=torch.bool)
    sim = candidate_similarity(torch.tensor([[1, 2, 3]]), item_categories=m)
    expected = torch.tensor([[1.0, 1 / math.sqrt(2), 0.0], [1 / math.sqrt(2), 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(sim[0], expected)
    rel = normalize_relevance(
        torch.tensor([[2.0, NEG_INF, 4.0, 3.0], [1.0, 1.0, NEG_INF, NEG_INF]]),
        torch.tensor([[True, False, True, True], [True, True, False, False]]),
    )
    assert rel.tolist() == [[0.0, 0.0, 1.0, 0.5], [1.0, 1.0, 0.0, 0.0]]


def test_rejects_bad_arguments() -> None:
    m = _multi_hot(5)
    with pytest.raises(ValueError):
        MMR(1.5, item_categories=m)
    with pytest.raises(ValueError):
        MMR(0.5)  # categories needed
    with pytest.raises(ValueError, match="histories"):
        Calibrated(m, 0.5)(*_batch(5), 3)
    with pytest.raises(ValueError):
        NoRerank()(torch.zeros(2, 3), torch.ones(2, 4, dtype=torch.long), 2)


def test_rerank_lists_hands_the_full_catalog_normaliser() -> None:
    """Softmax relevance inside evaluation is the model's full-catalog probability: rerank_lists puts the masked
    scores' logsumexp in the context."""
    seen: list[Tensor] = []

    class Spy(NoRerank):
        def select(self, scores: Tensor, candidates: Tensor, valid: Tensor, k: int, context: RerankContext) -> Tensor:
            assert context.log_normalizer is not None
            seen.append(context.log_normalizer)
            return super().select(scores, candidates, valid, k, context)

    masked = torch.randn(3, 30, generator=torch.Generator().manual_seed(0))
    masked[:, 0] = NEG_INF
    lists = rerank_lists(masked, 4, Spy(), 10)
    assert torch.allclose(seen[0], masked.logsumexp(1, keepdim=True))
    assert torch.equal(lists, masked.topk(4, dim=1).indices)
