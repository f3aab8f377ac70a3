"""DPP greedy MAP: same picks as a brute-force greedy log-det (whole list and sliding window), degenerate kernels."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from divrec.rerank import DPP, NoRerank, SimilarityRows, dpp_greedy, valid_mask

NEG_INF = float("-inf")


def _random_psd(gen: torch.Generator, batch: int, n: int) -> Tensor:
    """Well-conditioned random PSD similarities, ``(B, N, N)`` with unit diagonal."""
    a = torch.randn(batch, n, n + 3, generator=gen, dtype=torch.float64)
    s = a @ a.transpose(1, 2) / (n + 3)
    d = s.diagonal(dim1=1, dim2=2).rsqrt()
    return s * d.unsqueeze(2) * d.unsqueeze(1)


def _brute_force(scores: Tensor, sim: Tensor, k: int, temperature: float, window: int | None) -> list[list[int]]:
    """Per user: at each step the valid unpicked i maximising log det L[W ∪ {i}] (slogdet), W = the last w-1 picks
    (all picks when window is None); L = diag(q) S diag(q), q = exp(s / T)."""
    out = []
    for b in range(scores.shape[0]):
        q = torch.exp(scores[b] / temperature)
        kernel = q.unsqueeze(1) * sim[b] * q.unsqueeze(0)
        valid = [i for i in range(scores.shape[1]) if scores[b, i] > NEG_INF]
        picks: list[int] = []
        while len(picks) < min(k, len(valid)):
            base = picks if window is None else (picks[len(picks) - window + 1 :] if window > 1 else [])
            best, best_val = -1, NEG_INF
            for i in (i for i in valid if i not in picks):
                sign, logdet = torch.linalg.slogdet(kernel[[*base, i]][:, [*base, i]])
                val = float(logdet) if sign > 0 else NEG_INF
                if val > best_val:
                    best, best_val = i, val
            picks.append(best)
        out.append(picks + [-1] * (k - len(picks)))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("window", [None, 1, 2, 3])
def test_dpp_matches_brute_force_greedy_logdet(seed: int, window: int | None) -> None:
    gen = torch.Generator().manual_seed(seed)
    batch, n, k = 6, 9, 6
    sim = _random_psd(gen, batch, n)
    scores = torch.randn(batch, n, generator=gen, dtype=torch.float64)
    scores[0, [1, 4]] = NEG_INF  # seen items
    scores[1, 2:] = NEG_INF  # fewer valid candidates than k
    candidates = torch.arange(1, n + 1).expand(batch, n)
    got = dpp_greedy(scores, sim, valid_mask(scores, candidates), k, temperature=0.7, window=window, eps=1e-12)
    assert got.tolist() == _brute_force(scores, sim, k, 0.7, window)


def test_window_covering_the_list_equals_no_window() -> None:
    gen = torch.Generator().manual_seed(5)
    sim, scores = _random_psd(gen, 8, 12), torch.randn(8, 12, generator=gen, dtype=torch.float64)
    valid = torch.ones(8, 12, dtype=torch.bool)
    assert torch.equal(dpp_greedy(scores, sim, valid, 7, window=7), dpp_greedy(scores, sim, valid, 7))


def test_dpp_with_identity_similarity_is_the_plain_ranking() -> None:
    """S = I: det L_Y = prod q_i^2, so greedy MAP = top-k by q = top-k by score. Realised through the module with
    one-hot item embeddings (every pair orthogonal, cosine 0)."""
    gen = torch.Generator().manual_seed(6)
    n_items, batch, n, k = 40, 16, 15, 8
    candidates = torch.stack([torch.randperm(n_items, generator=gen)[:n] + 1 for _ in range(batch)])
    scores = torch.randn(batch, n, generator=gen)
    scores[:, ::4] = NEG_INF
    dpp = DPP(temperature=0.3, similarity="embeddings", item_embeddings=torch.eye(n_items + 1))
    assert torch.equal(dpp(scores, candidates, k), NoRerank()(scores, candidates, k))
    assert torch.equal(
        DPP(window=3, similarity="embeddings", item_embeddings=torch.eye(n_items + 1))(scores, candidates, k),
        NoRerank()(scores, candidates, k),
    )


def test_rank_one_kernel_falls_back_to_scores() -> None:
    """S = all ones (rank 1): after the first pick every conditional variance is 0, the remaining slots are filled
    by score, so the output is again the plain ranking."""
    gen = torch.Generator().manual_seed(7)
    scores = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    sim = torch.ones(4, 10, 10, dtype=torch.float64)
    valid = torch.ones(4, 10, dtype=torch.bool)
    expected = scores.topk(6, dim=1).indices
    assert torch.equal(dpp_greedy(scores, sim, valid, 6), expected)
    assert torch.equal(dpp_greedy(scores, SimilarityRows(matrix=sim), valid, 6, window=2), expected)


def test_feature_rows_equal_matrix_rows() -> None:
    gen = torch.Generator().manual_seed(8)
    feats = torch.nn.functional.normalize(torch.randn(3, 7, 4, generator=gen, dtype=torch.float64), dim=-1)
    feats[0, 2] = 0.0  # a featureless item: self-similarity 1, similarity 0 to the rest
    rows = SimilarityRows(features=feats)
    full = rows.full()
    assert torch.allclose(full.diagonal(dim1=1, dim2=2), torch.ones(3, 7, dtype=torch.float64))
    assert torch.linalg.eigvalsh(full).min() > -1e-10
    pos = torch.tensor([2, 0, 6])
    assert torch.allclose(rows.row(pos), full[torch.arange(3), pos])
    scores = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    valid = torch.ones(3, 7, dtype=torch.bool)
    assert torch.equal(dpp_greedy(scores, rows, valid, 5), dpp_greedy(scores, full, valid, 5))


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_identity_mix_is_dpp_on_the_mixed_kernel(beta: float) -> None:
    """identity_mix β = plain greedy on (1-β) S + β I; with a rank-1 S it no longer falls back to scores only."""
    gen = torch.Generator().manual_seed(11)
    batch, n, k = 5, 9, 6
    sim = _random_psd(gen, batch, n)
    scores = torch.randn(batch, n, generator=gen, dtype=torch.float64)
    valid = torch.ones(batch, n, dtype=torch.bool)
    mixed = (1 - beta) * sim + beta * torch.eye(n, dtype=torch.float64)
    got = dpp_greedy(scores, sim, valid, k, temperature=0.7, eps=1e-12, identity_mix=beta)
    assert got.tolist() == _brute_force(scores, mixed, k, 0.7, None)
    ones = torch.ones(batch, n, n, dtype=torch.float64)
    assert dpp_greedy(scores, ones, valid, k, 0.7, identity_mix=beta).tolist() == _brute_force(
        scores, (1 - beta) * ones + beta * torch.eye(n, dtype=torch.float64), k, 0.7, None
    )
    with pytest.raises(ValueError, match="identity_mix"):
        DPP(identity_mix=1.0, similarity="embeddings")
