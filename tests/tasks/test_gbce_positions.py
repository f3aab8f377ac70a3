"""gBCE against the authors' formulation, and ``positions=last`` (any model, every prefix a window)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from divrec import names
from divrec.models import ModelSpec, TransformerBackbone
from divrec.tasks import GBCE, NextItemCE, TaskConfigError
from divrec.tasks.gbce import gbce_beta

WINDOWS = torch.tensor([[0, 0, 3, 5, 7, 9], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 4]])


def model(causal: bool = True) -> TransformerBackbone:
    torch.manual_seed(0)
    return TransformerBackbone(n_items=30, max_len=8, hidden_size=16, n_heads=2, n_layers=1, ffn_size=32,
                               causal=causal, dropout=0.0, attn_dropout=0.0)


def test_beta_endpoints_follow_the_paper() -> None:
    assert gbce_beta(256, 1001, 0.0) == pytest.approx(1.0)  # t = 0: plain BCE
    assert gbce_beta(256, 1001, 1.0) == pytest.approx(256 / 1000)  # t = 1: β = α
    with pytest.raises(TaskConfigError, match=r"task\.t=1\.5"):
        GBCE(t=1.5)


def test_gbce_equals_bce_with_the_transformed_positive_logit() -> None:
    """The reference gSASRec-pytorch writes gBCE as BCE whose positive logit s is replaced by
    log(1 / (σ(s)^-β - 1)); both must give the same loss for the same draws."""
    backbone = model().eval()
    task = GBCE(n_negatives=5, t=0.75)
    torch.manual_seed(1)
    loss = task.loss(backbone, {names.ITEMS: WINDOWS})[names.LOSS]
    torch.manual_seed(1)  # the same negatives again, computed the reference's way
    hidden, targets = task.states(backbone, {names.ITEMS: WINDOWS})
    neg = task.sample((len(targets), 5), backbone)
    pos = (hidden * backbone.embed_items(targets)).sum(-1, keepdim=True).double()
    negl = torch.einsum("nd,nkd->nk", hidden, backbone.embed_items(neg)).double()
    beta = gbce_beta(5, 30, 0.75)
    transformed = torch.log(1.0 / (torch.sigmoid(pos).pow(-beta) - 1.0))
    logits = torch.cat([transformed, negl], dim=1)
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0
    reference = F.binary_cross_entropy_with_logits(logits, labels)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)


def test_last_positions_predict_each_windows_final_item_from_its_prefix() -> None:
    backbone = model(causal=False).eval()
    task = NextItemCE(positions="last")
    assert task.requires_causal is None and task.prefix_windows
    task.check_backbone(ModelSpec("M", causal=False, mask_token=True, attention_maps=False))  # any model
    hidden, targets = task.states(backbone, {names.ITEMS: WINDOWS})
    assert targets.tolist() == [9, 6]  # the last window has no real input: no pair
    torch.testing.assert_close(hidden, backbone(WINDOWS[:2, :-1])[:, -1])
    loss = task.loss(backbone, {names.ITEMS: WINDOWS})[names.LOSS]
    expected = F.cross_entropy(backbone.item_logits(hidden), targets - 1)
    assert loss.item() == pytest.approx(expected.item())
    assert math.isfinite(loss.item())
    with pytest.raises(TaskConfigError, match=r"task\.positions='first'"):
        NextItemCE(positions="first")
