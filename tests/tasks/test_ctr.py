"""The pointwise CTR objective: loss against a loop reference, labels from ratings, evaluation pairs, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from runhelpers import QUIET, compose_config, run_paths

from divrec import names
from divrec.data.errors import DataError
from divrec.models import TransformerBackbone
from divrec.pipeline import train
from divrec.tasks import PointwiseCTR

WINDOWS = torch.tensor([[0, 0, 0, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7]])
RATINGS = torch.tensor([[0, 0, 0, 5, 2, 4, 1], [3, 4, 5, 1, 5, 3, 4]], dtype=torch.float32)


def backbone() -> TransformerBackbone:
    torch.manual_seed(0)
    return TransformerBackbone(
        n_items=20, max_len=6, hidden_size=8, n_heads=2, n_layers=1, ffn_size=16, dropout=0.0, attn_dropout=0.0
    )


def test_loss_without_sampled_negatives_is_bce_on_rating_labels() -> None:
    model, task = backbone(), PointwiseCTR(positive_rating=4, n_negatives=0)
    with torch.no_grad():
        task.bias.fill_(0.3)
    loss = task.loss(model, {names.ITEMS: WINDOWS, names.RATINGS: RATINGS})[names.LOSS]
    terms = []
    for row, ratings in zip(WINDOWS, RATINGS, strict=True):
        hidden = model(row[None, :-1])[0]
        for t in range(6):
            if row[t] != 0 and row[t + 1] != 0:
                logit = hidden[t] @ model.tower.item_emb.weight[row[t + 1]] + 0.3
                label = torch.tensor(float(ratings[t + 1] >= 4))
                terms.append(F.binary_cross_entropy_with_logits(logit, label))
    assert len(terms) == 9
    torch.testing.assert_close(loss, torch.stack(terms).mean())


def test_sampled_negatives_add_label_zero_pairs_and_train_the_bias() -> None:
    model, task = backbone(), PointwiseCTR(n_negatives=3)
    out = task.loss(model, {names.ITEMS: WINDOWS, names.RATINGS: RATINGS})
    out[names.LOSS].backward()
    assert torch.isfinite(out[names.LOSS]) and task.bias.grad is not None and task.bias.grad != 0
    assert not torch.equal(out[names.LOSS], out["loss_observed"])


def test_evaluation_pairs_label_the_target_by_rating_and_never_sample_seen_items() -> None:
    model, task = backbone(), PointwiseCTR(positive_rating=4, eval_negatives=50)
    batch = {
        names.HISTORY: torch.tensor([[0, 1, 2], [3, 4, 5]]),
        names.SEEN: torch.tensor([[1, 2, 0], [3, 4, 5]]),
        names.TARGET: torch.tensor([6, 7]),
        names.TARGET_RATING: torch.tensor([5.0, 2.0]),
        names.USER_INDEX: torch.tensor([10, 11]),
    }
    logits, labels = task.pointwise(model, batch)
    assert labels[:2].tolist() == [1.0, 0.0] and (labels[2:] == 0).all()
    assert len(logits) == len(labels) < 2 + 2 * 50  # seen items and targets among the 100 draws were dropped
    again, _ = task.pointwise(model, batch)
    torch.testing.assert_close(logits, again)  # the same pairs every evaluation
    query = task.query(model, batch[names.HISTORY])
    torch.testing.assert_close(logits[:2], (query * model.tower.item_emb(batch[names.TARGET])).sum(-1) + task.bias)


def test_a_dataset_without_ratings_is_a_clear_error() -> None:
    with pytest.raises(DataError, match=r"task=ctr needs ratings.*rating_threshold=null"):
        PointwiseCTR().loss(backbone(), {names.ITEMS: WINDOWS})


def test_ctr_experiment_reports_auc_and_logloss_on_ml100k(
    tmp_path: Path, experiment_data_dir: Path, dataset_mirror: Path
) -> None:
    overrides = [
        "experiment=sasrec_ctr_ml100k",
        "trainer=debug",
        "data.batch_size=32",
        "data.eval_batch_size=128",
        *QUIET,
        f"paths.data_mirror={dataset_mirror}",
        *run_paths(tmp_path / "run", experiment_data_dir),
    ]
    metrics = train(compose_config("train", overrides))
    for stage in (names.VAL, names.TEST):
        assert 0.0 <= metrics[names.metric_key(stage, names.AUC)] <= 1.0
        assert metrics[names.metric_key(stage, names.LOGLOSS)] > 0.0
