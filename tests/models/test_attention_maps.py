"""``TransformerBackbone.attention_maps``: the explicitly recomputed attention weights are the ones SDPA uses."""

from __future__ import annotations

import pytest
import torch

from divrec.models import TransformerBackbone

ITEMS = torch.tensor([[0, 0, 3, 5, 7, 9, 11, 2], [4, 6, 8, 10, 12, 14, 16, 18], [0, 0, 0, 0, 0, 0, 21, 22]])


def make(causal: bool, norm_first: bool = True) -> TransformerBackbone:
    torch.manual_seed(0)
    model = TransformerBackbone(
        n_items=30, max_len=8, hidden_size=16, n_heads=4, n_layers=2, ffn_size=32, causal=causal, norm_first=norm_first
    )
    for p in model.parameters():  # larger weights than the init: sharp, far-from-uniform attention
        torch.nn.init.normal_(p, std=0.5)
    return model.eval()


def block_inputs(model: TransformerBackbone, items: torch.Tensor) -> list[torch.Tensor]:
    """What each block's attention sub-layer reads in a plain forward pass (captured with hooks)."""
    seen: list[torch.Tensor] = []
    hooks = [b.attn.register_forward_hook(lambda m, args, out: seen.append(args[0])) for b in model.blocks]
    model(items)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize(("causal", "norm_first"), [(True, True), (False, True), (True, False)])
def test_weights_times_values_reproduce_the_sdpa_block_output(causal: bool, norm_first: bool) -> None:
    model = make(causal, norm_first)
    maps = model.attention_maps(ITEMS)
    inputs = block_inputs(model, ITEMS)
    mask = model.attention_mask(ITEMS)
    assert len(maps) == len(inputs) == 2
    for block, weights, x in zip(model.blocks, maps, inputs, strict=True):
        B, L, D = x.shape
        assert weights.shape == (B, 4, L, L)
        _, _, v = block.attn.heads(x)  # (B, H, L, d)
        by_hand = block.attn.proj((weights @ v).transpose(1, 2).reshape(B, L, D))
        torch.testing.assert_close(by_hand, block.attn(x, mask), rtol=1e-5, atol=1e-5)
        assert weights.std() > 0.05  # not a degenerate uniform map that any formula would match


@pytest.mark.parametrize("causal", [True, False])
def test_rows_sum_to_one_and_masked_keys_get_zero(causal: bool) -> None:
    model = make(causal)
    for weights in model.attention_maps(ITEMS):
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
        assert (weights >= 0).all()
        padded_keys = (ITEMS == 0)[:, None, None, :] & ~torch.eye(8, dtype=torch.bool)  # (B, 1, L, L)
        assert (weights.masked_select(padded_keys) == 0).all()
        future = torch.ones(8, 8, dtype=torch.bool).triu(1)  # key j > query i
        if causal:
            assert (weights[..., future] == 0).all()
        else:  # bidirectional: real later items do get weight
            assert (weights[1][:, future] > 0).all()


def test_attention_maps_leave_the_forward_pass_unchanged() -> None:
    model = make(causal=True)
    before = model(ITEMS)
    model.attention_maps(ITEMS)
    torch.testing.assert_close(model(ITEMS), before, rtol=0, atol=0)
