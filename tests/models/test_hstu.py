"""HSTU (models/hstu.py): one layer and the whole model against a per-position loop written from the paper's
formula, causality, left-padding invariance (the attended-keys divisor included), a relative bias that depends on
i - j only, the distance buckets, attention maps, invalid configs, gradients, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from divrec.models import ModelConfigError, SequenceEncoder, check_model_config
from divrec.models.hstu import HSTU, HSTUConfig, HSTULayer, distance_buckets

CONF = Path(__file__).resolve().parents[2] / "conf" / "model" / "hstu.yaml"
ITEMS = torch.tensor([[0, 0, 3, 5, 7, 9, 11, 2], [4, 6, 8, 10, 12, 14, 16, 18], [0, 0, 0, 0, 0, 0, 21, 22]])


def make(seed: int = 0, sharp: bool = True, **overrides: object) -> HSTU:
    """A small HSTU; ``sharp`` widens the init so SiLU runs far from its linear part and the bias matters."""
    torch.manual_seed(seed)
    config = dict(max_len=8, hidden_size=12, n_heads=2, n_layers=2, attention_dim=3, linear_dim=5,
                  dropout=0.0, attn_dropout=0.0)
    model = HSTU(n_items=30, **{**config, **overrides})
    if sharp:
        for block in model.blocks:
            torch.nn.init.normal_(block.uvqk.weight, std=0.4)
            torch.nn.init.normal_(block.rel_bias.weight, std=1.0)
            torch.nn.init.normal_(block.o.bias, std=0.3)
    return model.eval()


def layer_norm(z: torch.Tensor) -> torch.Tensor:
    return (z - z.mean()) / torch.sqrt(z.var(unbiased=False) + 1e-6)


def layer_by_hand(layer: HSTULayer, x: torch.Tensor, items: torch.Tensor, divisor: str, max_len: int) -> torch.Tensor:
    """The HSTU layer one (row, query) at a time: A = SiLU(q·k + rab(i - j)) / n over real keys j <= i."""
    H, dqk, dv = layer.h, layer.dqk, layer.dv
    B, L, _ = x.shape
    out = torch.empty_like(x)
    for b in range(B):
        proj = [F.silu(layer.uvqk.weight @ layer_norm(x[b, t])) for t in range(L)]  # [U | V | Q | K] per position
        for i in range(L):
            keys = [j for j in range(i + 1) if items[b, j] != 0]
            n = max_len if divisor == "max_len" else max(len(keys), 1)
            y = torch.zeros(H * dv)
            for h in range(H):
                q = proj[i][2 * H * dv + h * dqk : 2 * H * dv + (h + 1) * dqk]
                for j in keys:
                    k = proj[j][2 * H * dv + H * dqk + h * dqk : 2 * H * dv + H * dqk + (h + 1) * dqk]
                    v = proj[j][H * dv + h * dv : H * dv + (h + 1) * dv]
                    bias = layer.rel_bias.weight[layer.rel_bias.bucket[i - j]]
                    y[h * dv : (h + 1) * dv] += F.silu(q @ k + bias) / n * v
            u = proj[i][: H * dv]
            out[b, i] = x[b, i] + layer.o.weight @ (u * layer_norm(y)) + layer.o.bias
    return out


@pytest.mark.parametrize("divisor", ["max_len", "attended"])
@pytest.mark.parametrize("buckets", [None, 3])
def test_layer_matches_the_per_position_formula(divisor: str, buckets: int | None) -> None:
    model = make(attn_divisor=divisor, position_buckets=buckets)
    x = torch.randn(3, 8, 12)
    keep, n = model.attention_mask(ITEMS)
    layer = model.blocks[0]
    torch.testing.assert_close(layer(x, keep, n), layer_by_hand(layer, x, ITEMS, divisor, 8), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("output_norm", ["layer_norm", "l2_norm"])
def test_whole_model_matches_the_hand_computation(output_norm: str) -> None:
    model = make(output_norm=output_norm)
    items = ITEMS[:, 2:]  # L = 6 < max_len: position codes count back from the newest item
    L, D = items.shape[1], 12
    x = model.tower.item_emb.weight[items] * D**0.5 + model.pos_emb.weight[torch.arange(L - 1, -1, -1)]
    x = x * (items != 0)[..., None]
    for layer in model.blocks:
        x = layer_by_hand(layer, x, items, "max_len", 8)
    if output_norm == "layer_norm":
        x = F.layer_norm(x, (D,), model.out_norm.weight, model.out_norm.bias, eps=1e-6)
    else:
        x = x / x.norm(dim=-1, keepdim=True)
    x = x * (items != 0)[..., None]
    torch.testing.assert_close(model(items), x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("divisor", ["max_len", "attended"])
def test_future_items_never_change_past_outputs(divisor: str) -> None:
    model = make(attn_divisor=divisor)
    base = model(ITEMS)
    for t in range(2, 8):
        changed = ITEMS.clone()
        changed[:, t] = 25
        out = model(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(out[1, t], base[1, t])


@pytest.mark.parametrize("divisor", ["max_len", "attended"])
@pytest.mark.parametrize("buckets", [None, 4])
def test_left_padding_changes_nothing_at_real_positions(divisor: str, buckets: int | None) -> None:
    model = make(attn_divisor=divisor, position_buckets=buckets)
    short = torch.tensor([[3, 5, 7, 9]])
    for pad in range(1, 5):
        padded = torch.cat([torch.zeros(1, pad, dtype=torch.long), short], dim=1)
        out = model(padded)
        torch.testing.assert_close(out[:, pad:], model(short), rtol=0, atol=1e-5)
        assert torch.isfinite(out).all() and (out[:, :pad] == 0).all()
    mixed = model(ITEMS)  # rows of different lengths in one batch = each row alone
    for b, n_pad in enumerate([2, 0, 6]):
        torch.testing.assert_close(mixed[b, n_pad:], model(ITEMS[b : b + 1, n_pad:])[0], rtol=0, atol=1e-5)


def test_attended_divisor_counts_real_keys_only() -> None:
    """n = number of real keys j <= i, the same with or without left padding (never the padded length)."""
    model = make(attn_divisor="attended")
    _, n = model.attention_mask(ITEMS)
    torch.testing.assert_close(n[2, 0, :, 0], torch.tensor([1.0, 1, 1, 1, 1, 1, 1, 2]))  # 6 pads, then 2 items
    torch.testing.assert_close(n[0, 0, :, 0], torch.tensor([1.0, 1, 1, 2, 3, 4, 5, 6]))
    short, padded = torch.tensor([[21, 22]]), ITEMS[2:]
    for a, b in zip(model.attention_maps(padded), model.attention_maps(short), strict=True):
        torch.testing.assert_close(a[..., 6:, 6:], b, rtol=0, atol=1e-5)
    max_len_maps = make(attn_divisor="max_len").attention_maps(padded)
    torch.testing.assert_close(model.attention_maps(padded)[0][..., 7, 6:] * 2 / 8, max_len_maps[0][..., 7, 6:])


def test_relative_bias_depends_only_on_the_distance() -> None:
    model = make()
    bias = model.blocks[0].rel_bias
    full = bias(8)  # (8, 8)
    torch.testing.assert_close(full[1:, 1:], full[:-1, :-1])  # Toeplitz: constant along each diagonal
    torch.testing.assert_close(bias(5), full[:5, :5])
    torch.testing.assert_close(bias(5), full[3:, 3:])
    for i in range(8):
        for j in range(i + 1):
            assert full[i, j] == bias.weight[i - j]  # one weight per distance (buckets = max_len)
    for block in model.blocks:  # no query-key term left: A[i, j] = SiLU(w[i - j]) / n, wherever the pair sits
        block.uvqk.weight.data[2 * 2 * 5 :] = 0.0  # the Q and K rows
    maps = model.attention_maps(ITEMS)
    expected = F.silu(model.blocks[0].rel_bias.weight[torch.arange(8)[:, None] - torch.arange(8)]) / 8
    keep, _ = model.attention_mask(ITEMS)
    torch.testing.assert_close(maps[0], (expected * keep).expand_as(maps[0]))


def test_distance_buckets() -> None:
    assert distance_buckets(8, 8).tolist() == list(range(8))
    assert distance_buckets(16, 8).tolist() == [0, 1, 2, 3, 4, 4, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7]
    assert distance_buckets(10, 1).tolist() == [0] * 10
    for max_len, n in [(50, 10), (50, 2), (200, 32), (9, 8)]:
        b = distance_buckets(max_len, n)
        assert b[0] == 0 and b[-1] == n - 1 and (b.diff() >= 0).all() and int(b.max()) < n
        assert b[: n // 2].tolist() == list(range(n // 2))  # short distances stay exact
    model = make(position_buckets=3)
    assert model.blocks[0].rel_bias.weight.shape == (3,)


def test_attention_maps_are_the_weights_the_layers_use() -> None:
    model = make()
    seen: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, args, out: seen.append(args[0])) for b in model.blocks]
    before = model(ITEMS)
    for hook in hooks:
        hook.remove()
    maps = model.attention_maps(ITEMS)
    keep, n = model.attention_mask(ITEMS)
    assert len(maps) == 2 and all(m.shape == (3, 2, 8, 8) for m in maps)
    for block, weights, x in zip(model.blocks, maps, seen, strict=True):
        u, v, _, _ = block.project(x)
        y = (weights @ v).transpose(1, 2).reshape(3, 8, 10)
        by_hand = x + block.o(u * F.layer_norm(y, (10,), eps=1e-6))
        torch.testing.assert_close(by_hand, block(x, keep, n), rtol=1e-5, atol=1e-5)
        assert weights.std() > 0.01
        assert (weights[keep.expand_as(weights) == 0] == 0).all()  # future and padded keys
    torch.testing.assert_close(model(ITEMS), before, rtol=0, atol=0)


def test_l2_output_is_unit_length_at_real_positions() -> None:
    out = make(output_norm="l2_norm")(ITEMS)
    norms = out.norm(dim=-1)
    torch.testing.assert_close(norms[ITEMS != 0], torch.ones(int((ITEMS != 0).sum())))
    assert (norms[ITEMS == 0] == 0).all()


def test_invalid_configs_name_the_key() -> None:
    bad = {"n_layers": 0, "n_heads": 0, "attention_dim": 0, "linear_dim": 0, "attn_dropout": 1.0,
           "dropout": 1.5, "attn_divisor": "sqrt", "output_norm": "rms", "user_features": "token"}
    for key, value in bad.items():
        with pytest.raises(ModelConfigError, match=rf"model\.{key}="):
            HSTUConfig(**{key: value})
    for buckets in (0, 9):
        with pytest.raises(ModelConfigError, match=r"model\.position_buckets=.*model\.max_len=8"):
            HSTUConfig(max_len=8, position_buckets=buckets)
    with pytest.raises(ValueError, match="max_len=8"):
        make()(torch.ones(1, 9, dtype=torch.long))


def test_gradients_reach_every_parameter() -> None:
    model = make(sharp=False, dropout=0.1, attn_dropout=0.1).train()
    inputs, targets = ITEMS[:, :-1], ITEMS[:, 1:]
    keep = (inputs != 0) & (targets != 0)
    F.cross_entropy(model.item_logits(model(inputs)[keep]), targets[keep] - 1).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_seeded_builds_and_training_passes_are_deterministic() -> None:
    a, b = make(seed=3, sharp=False, dropout=0.3, attn_dropout=0.2), make(seed=3, sharp=False, dropout=0.3,
                                                                           attn_dropout=0.2)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    a.train(), b.train()
    torch.manual_seed(7)
    out_a = a(ITEMS)
    torch.manual_seed(7)
    torch.testing.assert_close(b(ITEMS), out_a, rtol=0, atol=0)
    assert not torch.equal(make(seed=4, sharp=False).pos_emb.weight, a.pos_emb.weight)


def test_user_features_add_reach_only_real_positions() -> None:
    codes, vocab = {"age": np.array([1, 2])}, {"age": ["<unk>", "a1", "a2"]}
    model = make(user_features="add")
    model.use_user_features(codes, vocab)
    items = torch.tensor([[0, 3, 5], [0, 3, 5]])
    out = model(items, torch.tensor([0, 1]))
    assert not torch.allclose(out[0, 1:], out[1, 1:])
    torch.testing.assert_close(out[:, 1:], model(items[:, 1:], torch.tensor([0, 1])), rtol=0, atol=1e-5)


def test_shipped_yaml_is_a_valid_causal_model() -> None:
    cfg = OmegaConf.create({"data": {"max_len": 50}, "model": OmegaConf.load(CONF)})
    spec = check_model_config(cfg.model)
    assert spec.causal and spec.attention_maps and spec.trainable and not spec.mask_token
    model = HSTU(n_items=40, **{k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items()
                                if not k.startswith("_")})
    assert isinstance(model, SequenceEncoder)
    assert [len(g) for g in model.layer_groups()] == [2, 1, 1, 1, 1]  # embeddings, then one group per layer
    assert model.encode_last(torch.tensor([[0, 1, 2]])).shape == (1, 64)
