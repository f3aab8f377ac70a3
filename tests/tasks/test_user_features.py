"""Every objective hands the batch's user indices to the backbone (losses and queries), so user side features
(model.user_features) reach it on every training and ranking path; without them it fails loudly."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from divrec import names
from divrec.data.types import EvalSplit, ProcessedData
from divrec.models import TransformerBackbone
from divrec.tasks import (
    AssociatedAttributePrediction,
    Cloze,
    ContrastiveSequence,
    FineTune,
    MaskedAttributePrediction,
    NextItemBCE,
    NextItemCE,
    NextItemSampledSoftmax,
    Objective,
    PointwiseCTR,
    Pretraining,
)

N_ITEMS, N_USERS = 12, 5
CODES = {"group": np.array([1, 2, 3, 1, 2])}
VOCAB = {"group": ["<unk>", "g1", "g2", "g3"]}
WINDOWS = torch.tensor([[0, 0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10], [0, 0, 0, 11, 12, 1], [0, 2, 4, 6, 8, 10]])
USERS = torch.tensor([0, 1, 2, 4])

OBJECTIVES: dict[str, tuple[Callable[[], Objective], bool]] = {  # name → (factory, causal)
    "next_item_ce": (NextItemCE, True),
    "next_item_bce": (lambda: NextItemBCE(n_negatives=2), True),
    "sampled_softmax": (lambda: NextItemSampledSoftmax(n_negatives=4), True),
    "ctr": (lambda: PointwiseCTR(n_negatives=2, eval_negatives=3), True),
    "finetune": (lambda: FineTune(NextItemCE(), freeze_embeddings=True), True),
    "cloze": (lambda: Cloze(mask_prob=0.5), False),
    "pretrain": (
        lambda: Pretraining({
            "cloze": {"weight": 1.0, "objective": Cloze(mask_prob=0.5)},
            "aap": {"weight": 0.2, "objective": AssociatedAttributePrediction()},
            "map": {"weight": 1.0, "objective": MaskedAttributePrediction(mask_prob=0.5)},
            "contrastive": {"weight": 0.1, "objective": ContrastiveSequence()},
        }),
        False,
    ),
}


def tiny_data() -> ProcessedData:
    """Just what ``bind`` reads: sizes, item categories (item i → category i % 3), training items, user features."""
    empty = np.zeros(0, dtype=np.int64)
    split = EvalSplit(users=empty, history_offsets=np.zeros(1, dtype=np.int64), history_items=empty, targets=empty)
    return ProcessedData(
        n_users=N_USERS, n_items=N_ITEMS, train_offsets=np.array([0, 6, 12, 12, 12, 12]),
        train_items=np.arange(1, 13) % N_ITEMS + 1, val=split, test=split,
        item_raw_ids=np.array([""] + [str(i) for i in range(1, N_ITEMS + 1)]),
        user_raw_ids=np.array([str(u) for u in range(N_USERS)]),
        item_category_offsets=np.r_[0, np.arange(N_ITEMS + 1)].astype(np.int64),
        item_category_ids=np.arange(1, N_ITEMS + 1) % 3, category_names=np.array(["a", "b", "c"]),
        user_features=CODES, user_feature_vocab=VOCAB,
    )


def setup(name: str, mode: str) -> tuple[Objective, TransformerBackbone]:
    factory, causal = OBJECTIVES[name]
    torch.manual_seed(0)
    backbone = TransformerBackbone(n_items=N_ITEMS, max_len=6, hidden_size=8, n_heads=2, n_layers=1, ffn_size=16,
                                   dropout=0.0, attn_dropout=0.0, causal=causal, user_features=mode)
    data = tiny_data()
    backbone.use_user_features(data.user_features, data.user_feature_vocab)
    objective = factory()
    objective.bind(backbone, data)
    return objective, backbone


def batch(with_users: bool = True) -> dict[str, torch.Tensor]:
    out = {names.ITEMS: WINDOWS, names.RATINGS: torch.full(WINDOWS.shape, 5.0)}
    return out | ({names.USER_INDEX: USERS} if with_users else {})


@pytest.mark.parametrize("name", list(OBJECTIVES))
@pytest.mark.parametrize("mode", ["add", "token"])
def test_every_loss_trains_the_user_features(name: str, mode: str) -> None:
    objective, backbone = setup(name, mode)
    loss = objective.loss(backbone, batch())[names.LOSS]
    loss.backward()
    assert torch.isfinite(loss)
    grads = [t.weight.grad for t in backbone.user_side.tables]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="pass users="):  # never silently without them
        objective.loss(backbone, batch(with_users=False))


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_query_reads_the_users_features(name: str) -> None:
    objective, backbone = setup(name, "token")
    backbone.eval()
    history = WINDOWS[:, 1:]
    before = objective.query(backbone, history, USERS)
    backbone.user_side.codes[1] = 3  # user 1 (row 1) changes group
    after = objective.query(backbone, history, USERS)
    assert not torch.allclose(after[1], before[1])
    assert torch.equal(after[[0, 2, 3]], before[[0, 2, 3]])


def test_ctr_evaluation_pairs_use_the_users_features() -> None:
    objective, backbone = setup("ctr", "add")
    backbone.eval()
    eval_batch = {
        names.HISTORY: WINDOWS[:, 1:], names.USER_INDEX: USERS, names.TARGET: torch.tensor([5, 1, 2, 11]),
        names.SEEN: WINDOWS, names.TARGET_RATING: torch.tensor([5.0, 1.0, 4.0, 3.0]),
    }
    before, _ = objective.pointwise(backbone, eval_batch)
    backbone.user_side.codes[:] = 0
    after, _ = objective.pointwise(backbone, eval_batch)
    assert not torch.allclose(before, after)
