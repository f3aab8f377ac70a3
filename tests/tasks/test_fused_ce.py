"""The fused output layer equals plain ``F.cross_entropy`` in loss and gradients (exactly in fp64, to bf16 rounding
under bf16), whatever the block size, with label smoothing, under autocast, and through the objectives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from divrec import names
from divrec.models import TransformerBackbone
from divrec.tasks import Cloze, NextItemCE
from divrec.tasks.fused_ce import block_rows, fused_cross_entropy


def grads_of(loss: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, tensors))


def problem(n: int, v: int, d: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(n, d, generator=gen, dtype=dtype) * 2).requires_grad_()
    table = torch.randn(v, d, generator=gen, dtype=dtype).requires_grad_()
    return hidden, table, torch.randint(0, v, (n,), generator=gen)


@pytest.mark.parametrize("rows", [1, 7, 16, 33, 100])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_fused_ce_equals_cross_entropy_in_float64(rows: int, label_smoothing: float) -> None:
    hidden, table, targets = problem(33, 64, 8, torch.float64, seed=rows)
    plain = F.cross_entropy(hidden @ table.T, targets, label_smoothing=label_smoothing)
    fused = fused_cross_entropy(hidden, table, targets, label_smoothing, rows=rows)
    assert fused.dtype == torch.float64
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads_of(fused, hidden, table), grads_of(plain, hidden, table), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_fused_ce_scales_by_the_incoming_gradient() -> None:
    hidden, table, targets = problem(20, 30, 4, torch.float64)
    plain = 3.5 * F.cross_entropy(hidden @ table.T, targets)
    fused = 3.5 * fused_cross_entropy(hidden, table, targets, rows=8)
    for got, want in zip(grads_of(fused, hidden, table), grads_of(plain, hidden, table), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_fused_ce_in_bf16_is_within_bf16_rounding_and_sums_in_fp32() -> None:
    hidden, table, targets = problem(300, 2000, 32, torch.float32, seed=4)
    with torch.no_grad():
        hidden.mul_(0.2)
    plain = F.cross_entropy(hidden @ table.T, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = fused_cross_entropy(hidden, table, targets)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, plain, rtol=2e-3, atol=0.0)  # log-sum-exp in fp32: bf16 only in the products
    for got, want in zip(grads_of(fused, hidden, table), grads_of(plain, hidden, table), strict=True):
        assert got.dtype == torch.float32
        assert ((got - want).norm() / want.norm()).item() < 1e-2  # bf16 unit roundoff 2^-8 on inputs and G


def test_fused_ce_bf16_is_worse_than_fp32_path_but_not_by_much() -> None:
    """The bf16 products really run in bf16 (the error is above fp32 rounding) -- guards a silent fp32 fallback."""
    hidden, table, targets = problem(64, 500, 16, torch.float32, seed=5)
    plain = F.cross_entropy(hidden @ table.T, targets)
    fp32 = fused_cross_entropy(hidden, table, targets, compute_dtype=torch.float32)
    bf16 = fused_cross_entropy(hidden, table, targets, compute_dtype=torch.bfloat16)
    assert (fp32 - plain).abs() < 1e-5 < (bf16 - plain).abs() < 5e-2 * plain.abs()


def test_fused_ce_is_stable_for_huge_logits_and_matches_without_grad() -> None:
    hidden = torch.tensor([[100.0, 0.0], [0.0, -80.0]], requires_grad=True)
    table = torch.tensor([[10.0, 0.0], [9.0, 1.0], [-10.0, 9.0]], requires_grad=True)
    targets = torch.tensor([1, 2])
    plain = F.cross_entropy(hidden @ table.T, targets)
    fused = fused_cross_entropy(hidden, table, targets, rows=1)
    assert torch.isfinite(fused)
    torch.testing.assert_close(fused, plain)
    with torch.no_grad():
        torch.testing.assert_close(fused_cross_entropy(hidden, table, targets), plain.detach())


def test_fused_ce_of_no_rows_is_nan_like_cross_entropy() -> None:
    hidden, table, targets = problem(0, 5, 3, torch.float32)
    assert torch.isnan(fused_cross_entropy(hidden, table, targets))


def test_block_rows_keeps_blocks_near_the_element_budget() -> None:
    assert block_rows(10_000, 12_101, 1 << 21) == 160  # 2^21 // 12101 = 173 -> multiple of 16
    assert block_rows(10, 12_101) == 10  # never more rows than there are
    assert block_rows(10_000, 5_000_000) == 16  # huge catalogs: at least 16 rows (use task.chunk_size there)


WINDOWS = torch.tensor(
    [[0, 0, 0, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 0, 36, 37], [9, 30, 2, 11, 12, 2, 1]]
)


def tiny_backbone(causal: bool) -> TransformerBackbone:
    torch.manual_seed(0)
    return TransformerBackbone(n_items=37, max_len=6, hidden_size=8, n_heads=2, n_layers=2, ffn_size=16,
                               dropout=0.0, attn_dropout=0.0, causal=causal).double()


def test_next_item_ce_fused_matches_plain_on_every_parameter() -> None:
    model = tiny_backbone(causal=True)
    batch = {names.ITEMS: WINDOWS}
    plain = NextItemCE(label_smoothing=0.05, fused=False).loss(model, batch)[names.LOSS]
    fused = NextItemCE(label_smoothing=0.05).loss(model, batch)[names.LOSS]
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads_of(fused, *model.parameters()), grads_of(plain, *model.parameters()), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_cloze_fused_matches_plain() -> None:
    model = tiny_backbone(causal=False)
    losses, grads = [], []
    for fused in (False, True):
        torch.manual_seed(3)  # the same masks
        loss = Cloze(mask_prob=0.3, fused=fused).loss(model, {names.ITEMS: WINDOWS})[names.LOSS]
        losses.append(loss)
        grads.append(grads_of(loss, *model.parameters()))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-12, atol=1e-12)
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
