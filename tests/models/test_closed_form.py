"""MostPopular, sequential item-kNN and EASE against brute-force references written from their formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from closed_form_data import N_ITEMS, SEQUENCES, processed

from divrec.models import ModelConfigError, closed_form
from divrec.models.ease import EASE, EASEConfig
from divrec.models.itemknn import ItemKNN, ItemKNNConfig
from divrec.models.pop import MostPopular

HISTORY = torch.tensor([[0, 0, 1, 3], [2, 5, 6, 4]])


def fitted(model: torch.nn.Module) -> torch.nn.Module:
    model.bind(processed())
    return model


def test_most_popular_scores_training_counts_for_everyone() -> None:
    model = fitted(MostPopular(N_ITEMS))
    counts = np.bincount(np.concatenate(SEQUENCES), minlength=N_ITEMS + 1).astype(np.float32)
    counts[0] = 0
    scores = model.score(model.encode_last(HISTORY))
    assert torch.equal(scores, torch.from_numpy(counts).expand(2, -1))
    assert model.fit_seconds >= 0 and not model.trainable and model.tower is None


def brute_knn(window: int, directed: bool, alpha: float, neighbours: int) -> np.ndarray:
    V = N_ITEMS + 1
    c = np.zeros((V, V))
    for s in SEQUENCES:
        for p in range(len(s)):
            for d in range(1, window + 1):
                if p + d < len(s):
                    c[s[p], s[p + d]] += 1
                    if not directed:
                        c[s[p + d], s[p]] += 1
    np.fill_diagonal(c, 0)
    n = np.maximum(np.bincount(np.concatenate(SEQUENCES), minlength=V), 1).astype(float)
    sim = c / n[:, None] ** alpha / n[None, :] ** (1 - alpha)
    if 0 < neighbours < V:
        for row in sim:
            row[np.argsort(-row, kind="stable")[neighbours:]] = 0.0
    sim[0] = 0
    return sim


@pytest.mark.parametrize(("window", "directed", "alpha"), [(1, True, 0.5), (3, False, 0.3), (2, True, 1.0)])
def test_item_knn_similarity_and_recency_decayed_query(window: int, directed: bool, alpha: float) -> None:
    model = fitted(ItemKNN(N_ITEMS, window=window, directed=directed, alpha=alpha, neighbours=0, decay=0.5))
    sim = brute_knn(window, directed, alpha, 0)
    np.testing.assert_allclose(model.item_table().T.numpy(), sim, rtol=1e-6, atol=1e-7)
    expected = np.zeros((2, N_ITEMS + 1))
    for b, row in enumerate(HISTORY.tolist()):
        for age, item in enumerate(reversed(row)):  # newest first: weight 0.5^age
            if item:
                expected[b] += 0.5**age * sim[item]
    np.testing.assert_allclose(model.score(model.encode_last(HISTORY)).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_item_knn_keeps_the_strongest_neighbours_only() -> None:
    model = fitted(ItemKNN(N_ITEMS, window=3, neighbours=2))
    table = model.item_table().T
    assert int((table > 0).sum(1).max()) <= 2
    full = brute_knn(3, True, 0.5, 0)
    kept = table.numpy() > 0
    np.testing.assert_allclose(table.numpy()[kept], full[kept], rtol=1e-6)  # kept values are unchanged


def test_ease_is_the_closed_form_ridge_solution() -> None:
    l2 = 2.0
    model = fitted(EASE(N_ITEMS, l2=l2))
    V = N_ITEMS + 1
    x = np.zeros((len(SEQUENCES), V))
    for u, s in enumerate(SEQUENCES):
        x[u, s] = 1.0  # binary: the repeated item counts once
    g = x.T @ x + l2 * np.eye(V)
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    b[0], b[:, 0] = 0.0, 0.0
    np.testing.assert_allclose(model.item_table().T.numpy(), b, rtol=1e-4, atol=1e-6)
    bag = np.zeros((2, V))
    for r, row in enumerate(HISTORY.tolist()):
        bag[r, [i for i in row if i]] = 1.0
    np.testing.assert_allclose(model.score(model.encode_last(HISTORY)).numpy(), bag @ b, rtol=1e-4, atol=1e-6)
    # the columns of B solve the constrained ridge problem: (XᵀX + λI) B = XᵀX - diag(μ) with zero diagonal
    resid = (x.T @ x + l2 * np.eye(V)) @ b - x.T @ x
    off = resid - np.diag(np.diag(resid))
    np.testing.assert_allclose(off[1:, 1:], 0.0, atol=1e-4)


def test_ease_refuses_a_catalog_whose_gram_matrix_cannot_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(closed_form, "available_memory_bytes", lambda: 2**30)  # 1 GiB free
    with pytest.raises(ModelConfigError, match=r"model=ease needs about .* 1\.0 GiB available; use model=itemknn"):
        EASE(50_000)
    EASE(100)  # a small catalogue fits


def test_bad_settings_name_the_key() -> None:
    with pytest.raises(ModelConfigError, match=r"model.l2=0"):
        EASEConfig(l2=0)
    with pytest.raises(ModelConfigError, match=r"model.decay=0"):
        ItemKNNConfig(decay=0)
    with pytest.raises(ModelConfigError, match=r"model.window=0"):
        ItemKNNConfig(window=0)


def test_a_checkpoint_restores_the_fitted_table_without_the_data() -> None:
    fitted_model = fitted(EASE(N_ITEMS, l2=3.0))
    fresh = EASE(N_ITEMS, l2=3.0)  # never fitted: all-zero table
    assert not fresh.item_table().any()  # (and its transpose is cached)
    fresh.load_state_dict(fitted_model.state_dict())
    want = fitted_model.score(fitted_model.encode_last(HISTORY))
    torch.testing.assert_close(fresh.score(fresh.encode_last(HISTORY)), want)
    torch.testing.assert_close(fresh.item_table(), fitted_model.item_table())  # the cached transpose follows the load
