"""models.backbone.Dropout: nn.Dropout's distribution from 16-bit keep decisions, in the input's dtype."""

from __future__ import annotations

import pytest
import torch

from divrec.models.backbone import Dropout, keep_mask

N = 1 << 20  # draws: the keep rate's standard error is ~0.0004


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_every_lane_of_a_random_word_keeps_with_probability_1_minus_p(p: float) -> None:
    torch.manual_seed(0)
    drop = round(p * 2**16)
    keep = keep_mask(torch.empty(N // 4, 4), drop).float()  # column j = lane j of each 64-bit word
    se = (p * (1 - p) / (N // 4)) ** 0.5
    assert torch.allclose(keep.mean(0), torch.full((4,), 1 - p), atol=5 * se)  # a 63-bit draw would fail lane 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_zeroes_a_share_p_and_scales_the_rest_keeping_the_mean(dtype: torch.dtype) -> None:
    torch.manual_seed(1)
    x = torch.ones(N, dtype=dtype)
    y = Dropout(0.2).train()(x)
    assert y.dtype == dtype
    scale = torch.tensor(2**16 / (2**16 - round(0.2 * 2**16)), dtype=dtype)  # 1 / (1 - p), p to 2**-16
    assert torch.equal(torch.unique(y), torch.stack([torch.zeros((), dtype=dtype), scale]))
    assert abs(float((y == 0).float().mean()) - 0.2) < 5 * (0.2 * 0.8 / N) ** 0.5
    assert abs(float(y.float().mean()) - 1.0) < 0.01


def test_gradient_is_the_same_mask_and_scale() -> None:
    torch.manual_seed(2)
    x = torch.randn(64, 50, 33, requires_grad=True)  # numel not a multiple of 4
    y = Dropout(0.3).train()(x)
    y.sum().backward()
    kept = y != 0
    scale = 2**16 / (2**16 - round(0.3 * 2**16))
    assert torch.allclose(y[kept], x[kept] * scale)
    assert torch.equal(x.grad, kept.float() * scale)


def test_eval_mode_zero_p_and_p_one() -> None:
    x = torch.randn(8, 5)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_a_seed_gives_the_same_mask() -> None:
    x = torch.randn(3, 7, 11)
    torch.manual_seed(5)
    first = Dropout(0.2).train()(x)
    torch.manual_seed(5)
    assert torch.equal(Dropout(0.2).train()(x), first)


def test_training_attention_dropout_stays_causal_and_drops_weights() -> None:
    """Training mode, attention dropout on the CPU's explicit path: with the same seed (same masks), a later item
    never changes earlier outputs; and the outputs differ from evaluation mode (dropout acts)."""
    from divrec.models import TransformerBackbone

    torch.manual_seed(0)
    model = TransformerBackbone(n_items=30, max_len=8, hidden_size=16, n_heads=2, n_layers=2, ffn_size=32,
                                dropout=0.0, attn_dropout=0.5).train()
    items = torch.tensor([[0, 0, 3, 5, 7, 9, 11, 2], [4, 6, 8, 10, 12, 14, 16, 18]])
    torch.manual_seed(7)
    base = model(items)
    for t in range(2, 8):
        changed = items.clone()
        changed[:, t] = 25
        torch.manual_seed(7)
        torch.testing.assert_close(model(changed)[:, :t], base[:, :t], rtol=0, atol=1e-6)
    assert not torch.allclose(base, model.eval()(items))
