"""experiments/diversity_tradeoff/bound.py: the expected-NDCG + μ·ILD optimiser that backs the "re-ranker or model?"
analysis. Its local search must end in a list no single exchange improves, never below its greedy start, and the
objective must match a brute-force evaluation."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import torch

from divrec.rerank import RerankContext

PATH = Path(__file__).resolve().parents[1] / "experiments" / "diversity_tradeoff" / "bound.py"
spec = importlib.util.spec_from_file_location("bound", PATH)
assert spec is not None and spec.loader is not None
bound = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bound)

K, MU = bound.K, 0.3
DISCOUNT = 1.0 / torch.log2(torch.arange(K, dtype=torch.float32) + 2.0)


def objective(p: torch.Tensor, cats: torch.Tensor, items: list[int]) -> float:
    """Σ_r p_(r)/log2(r+1) − μ·2/(K(K−1))·Σ_{pairs} Jaccard, written out pair by pair."""
    ndcg = sum(float(v) / float(torch.log2(torch.tensor(r + 2.0))) for r, v in enumerate(sorted(p[items].tolist(),
                                                                                          reverse=True)))
    sims = 0.0
    for a, b in itertools.combinations(items, 2):
        inter, union = float((cats[a] * cats[b]).sum()), float(((cats[a] + cats[b]) > 0).sum())
        sims += inter / union if union else 0.0
    return ndcg - MU * 2.0 / (K * (K - 1)) * sims


def test_local_search_ends_in_a_local_optimum_above_its_greedy_start() -> None:
    gen = torch.Generator().manual_seed(0)
    n_items, n_cats, users, n = 30, 6, 5, 13
    cats = (torch.rand(n_items + 1, n_cats, generator=gen) < 0.35).float()
    cats[0] = 0
    candidates = torch.stack([torch.randperm(n_items, generator=gen)[:n] + 1 for _ in range(users)])  # (B, N)
    p = torch.softmax(torch.randn(users, n, generator=gen) * 2, dim=1)  # (B, N)
    context = RerankContext(log_normalizer=torch.zeros(users, 1))
    greedy = bound.expected_ndcg_lists(cats, MU, swaps=0)(p.log(), candidates, K, context)
    searched = bound.expected_ndcg_lists(cats, MU, swaps=50)(p.log(), candidates, K, context)
    for u in range(users):
        prob = torch.zeros(n_items + 1)
        prob[candidates[u]] = p[u]
        start, end = objective(prob, cats, greedy[u].tolist()), objective(prob, cats, searched[u].tolist())
        assert end >= start - 1e-6
        assert searched[u].tolist() == sorted(searched[u].tolist(), key=lambda i: -float(prob[i]))  # best first
        chosen = set(searched[u].tolist())
        for out, into in itertools.product(chosen, set(candidates[u].tolist()) - chosen):
            swapped = [into if i == out else i for i in searched[u].tolist()]
            assert objective(prob, cats, swapped) <= end + 1e-6  # no single exchange improves it
        best = max(objective(prob, cats, list(s)) for s in itertools.combinations(candidates[u].tolist(), K))
        assert end <= best + 1e-6
