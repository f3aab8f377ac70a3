"""Chunked full-softmax CE equals plain ``F.cross_entropy`` in loss and in every gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from divrec import names
from divrec.models import TransformerBackbone
from divrec.models.tower import ITEM_TABLE
from divrec.tasks import Cloze, NextItemCE
from divrec.tasks.chunked_ce import chunked_cross_entropy


def grads_of(loss: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, tensors))


@pytest.mark.parametrize("chunk_size", [1, 7, 50, 64, 1000])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_chunked_ce_equals_cross_entropy_in_loss_and_gradients(chunk_size: int, label_smoothing: float) -> None:
    gen = torch.Generator().manual_seed(chunk_size)
    hidden = (torch.randn(33, 8, generator=gen, dtype=torch.float64) * 3).requires_grad_()
    table = torch.randn(64, 8, generator=gen, dtype=torch.float64).requires_grad_()
    targets = torch.randint(0, 64, (33,), generator=gen)
    plain = F.cross_entropy(hidden @ table.T, targets, label_smoothing=label_smoothing)
    chunked = chunked_cross_entropy(hidden, table, targets, chunk_size, label_smoothing)
    torch.testing.assert_close(chunked, plain, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads_of(chunked, hidden, table), grads_of(plain, hidden, table), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_chunked_ce_is_stable_for_huge_logits() -> None:
    hidden = torch.tensor([[100.0, 0.0], [0.0, -80.0]], requires_grad=True)
    table = torch.tensor([[10.0, 0.0], [9.0, 1.0], [-10.0, 9.0]], requires_grad=True)
    targets = torch.tensor([1, 2])
    chunked = chunked_cross_entropy(hidden, table, targets, chunk_size=1)
    plain = F.cross_entropy(hidden @ table.T, targets)
    assert torch.isfinite(chunked)
    torch.testing.assert_close(chunked, plain)


def tiny_backbone(causal: bool) -> TransformerBackbone:
    torch.manual_seed(0)
    model = TransformerBackbone(n_items=37, max_len=6, hidden_size=8, n_heads=2, n_layers=2, ffn_size=16,
                                dropout=0.0, attn_dropout=0.0, causal=causal).double()
    return model


# padding at the left of short windows, and a window whose next item is padding-free only in part
WINDOWS = torch.tensor(
    [[0, 0, 0, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 0, 36, 37], [9, 30, 2, 11, 12, 2, 1]]
)


@pytest.mark.parametrize("chunk_size", [1, 5, 37, 100])
def test_next_item_ce_chunked_matches_plain_on_every_parameter(chunk_size: int) -> None:
    model = tiny_backbone(causal=True)
    batch = {names.ITEMS: WINDOWS}
    plain = NextItemCE(label_smoothing=0.05, fused=False).loss(model, batch)[names.LOSS]
    plain_grads = grads_of(plain, *model.parameters())
    chunked = NextItemCE(label_smoothing=0.05, chunk_size=chunk_size).loss(model, batch)[names.LOSS]
    chunked_grads = grads_of(chunked, *model.parameters())
    torch.testing.assert_close(chunked, plain, rtol=1e-12, atol=1e-12)
    for (name, _), got, want in zip(model.named_parameters(), chunked_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12, msg=name)
    table_grad = dict(zip([n for n, _ in model.named_parameters()], chunked_grads, strict=True))[ITEM_TABLE]
    assert table_grad[0].abs().max() == 0  # padding row: not a class, never an input that gets gradient
    assert table_grad[1:38].abs().sum(1).gt(0).all()  # every item row is a softmax class


def test_cloze_chunked_matches_plain() -> None:
    model = tiny_backbone(causal=False)
    losses, grads = [], []
    for chunk_size in (None, 6):  # None: plain (fused=False)
        torch.manual_seed(3)  # the same masks
        loss = Cloze(mask_prob=0.3, chunk_size=chunk_size, fused=False).loss(model, {names.ITEMS: WINDOWS})[names.LOSS]
        losses.append(loss)
        grads.append(grads_of(loss, *model.parameters()))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-12, atol=1e-12)
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_float32_chunked_ce_agrees_with_plain_to_float_tolerance() -> None:
    torch.manual_seed(1)
    hidden = torch.randn(200, 16, requires_grad=True)
    table = torch.randn(5000, 16, requires_grad=True)
    targets = torch.randint(0, 5000, (200,))
    plain = F.cross_entropy(hidden @ table.T, targets)
    chunked = chunked_cross_entropy(hidden, table, targets, 1024)
    torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads_of(chunked, hidden, table), grads_of(plain, hidden, table), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_bad_chunk_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        NextItemCE(chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_cross_entropy(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(2, dtype=torch.long), 0)
