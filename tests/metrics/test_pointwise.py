"""AUC and log-loss against brute-force references."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from divrec import names
from divrec.metrics.pointwise import LogLoss, PointwiseEvaluator


def brute_force_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    return float(wins.mean())


def test_auc_and_logloss_match_references_over_several_updates() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randint(-3, 4, (300,), generator=gen).float() / 2  # many ties
    labels = (torch.rand(300, generator=gen) < 0.3).float()
    evaluator = PointwiseEvaluator(names.TEST)
    for chunk in range(3):
        part = slice(100 * chunk, 100 * (chunk + 1))
        evaluator.update(logits[part], labels[part])
    out = evaluator.compute()
    assert abs(float(out[names.metric_key(names.TEST, names.AUC)]) - brute_force_auc(logits, labels)) < 1e-6
    expected = F.binary_cross_entropy_with_logits(logits, labels)
    torch.testing.assert_close(out[names.metric_key(names.TEST, names.LOGLOSS)], expected)


def test_logloss_of_perfect_and_uninformed_predictions() -> None:
    metric = LogLoss()
    metric.update(torch.zeros(4), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(metric.compute(), torch.log(torch.tensor(2.0)))
    metric.reset()
    metric.update(torch.tensor([30.0, -30.0]), torch.tensor([1.0, 0.0]))
    assert float(metric.compute()) < 1e-6
