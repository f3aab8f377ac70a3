"""BSARec (models/bsarec.py): the low/high-frequency split against a direct projection, the layer's mix, the causal
attention branch, padding invariance, non-causality, config validation, gradients, determinism, attention maps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from runhelpers import compose_config, run_paths
from torch import Tensor

from divrec import names
from divrec.models import ModelConfigError
from divrec.models.bsarec import BSARec, BSARecConfig, FrequencyLayer, low_pass
from divrec.pipeline import check_config
from divrec.tasks import NextItemCE

MAX_LEN = 8


def make(**overrides: object) -> BSARec:
    torch.manual_seed(0)
    config = {"max_len": MAX_LEN, "hidden_size": 16, "n_heads": 2, "n_layers": 2, "ffn_size": 32, "c": 3,
              "alpha": 0.7} | overrides
    return BSARec(n_items=30, **config).eval()


def direct_low_pass(x: Tensor, bins: int) -> Tensor:
    """Orthogonal projection of each channel on the cosines and sines of frequencies 0..bins-1 over the window,
    in float64: sum over basis vectors b of b (b . x) / (b . b)."""
    n = x.shape[1]
    t = torch.arange(n, dtype=torch.float64)
    basis = [torch.ones(n, dtype=torch.float64)]
    for k in range(1, bins):
        basis += [torch.cos(2 * math.pi * k * t / n), torch.sin(2 * math.pi * k * t / n)]
    projection = sum(torch.outer(b, b) / (b @ b) for b in basis)  # (N, N)
    return torch.einsum("nm,bmd->bnd", projection, x.double())


@pytest.mark.parametrize(("n", "bins"), [(8, 1), (8, 3), (8, 4), (7, 3), (50, 3)])
def test_low_pass_is_the_projection_on_the_lowest_frequencies(n: int, bins: int) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, n, 3)
    torch.testing.assert_close(low_pass(x, bins).double(), direct_low_pass(x, bins), rtol=0, atol=1e-5)


@pytest.mark.parametrize("length", [1, 4, 8])
def test_low_pass_of_the_last_positions_equals_the_zero_padded_window(length: int) -> None:
    """The model runs on the batch's L positions; low_pass zero-fills the first N - L of its N-window itself."""
    torch.manual_seed(2)
    x = torch.randn(2, length, 3)
    padded = torch.nn.functional.pad(x, (0, 0, MAX_LEN - length, 0))  # (B, N, D)
    expected = direct_low_pass(padded, 3)[:, -length:]
    torch.testing.assert_close(low_pass(x, 3, MAX_LEN).double(), expected, rtol=0, atol=1e-5)


def test_frequency_layer_rescales_the_high_frequencies_by_beta_squared() -> None:
    cfg = BSARecConfig(max_len=MAX_LEN, hidden_size=4, c=5)  # 5 // 2 + 1 = 3 low bins
    torch.manual_seed(2)
    layer = FrequencyLayer(cfg).eval()
    x = torch.randn(3, MAX_LEN, 4)
    low = direct_low_pass(x, 3).float()
    beta2 = layer.sqrt_beta.detach() ** 2
    torch.testing.assert_close(layer.rescale(x), low + beta2 * (x - low), rtol=0, atol=1e-5)
    expected = torch.nn.functional.layer_norm(x + low + beta2 * (x - low), (4,), eps=1e-12)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-5)
    with torch.no_grad():
        layer.sqrt_beta.fill_(1.0)  # beta = 1: low + high is the input itself
    torch.testing.assert_close(layer.rescale(x), x, rtol=0, atol=1e-5)


def test_a_layer_mixes_alpha_frequency_with_one_minus_alpha_attention() -> None:
    model = make(alpha=0.3)
    block, x = model.blocks[0], torch.randn(2, MAX_LEN, 16)
    mask = model.attention_mask(torch.tensor([[0, 0, 3, 5, 7, 9, 11, 2], [4, 6, 8, 10, 12, 14, 16, 18]]))
    mixed = 0.3 * block.frequency(x) + 0.7 * block.attention(x, mask)
    torch.testing.assert_close(block(x, mask), block.ffn(mixed), rtol=0, atol=1e-6)


def test_the_attention_branch_alone_is_causal_like_the_reference() -> None:
    model = make(alpha=0.0)  # only the attention branch: the reference's left-to-right mask
    items = torch.tensor([[0, 0, 3, 5, 7, 9, 11, 2]])
    base = model(items)
    for t in range(3, 8):
        changed = items.clone()
        changed[0, t] = 25
        torch.testing.assert_close(model(changed)[:, :t], base[:, :t], rtol=0, atol=1e-6)


def test_the_frequency_branch_mixes_every_position_so_a_later_item_changes_earlier_outputs() -> None:
    model = make()
    items = torch.tensor([[1, 2, 3, 4, 5]])
    changed = items.clone()
    changed[0, 4] = 9
    assert not torch.allclose(model(items)[0, 0], model(changed)[0, 0])
    assert not model.causal and model.spec().attention_maps


def test_more_left_padding_gives_the_same_outputs() -> None:
    model = make()
    history = [3, 5, 7]
    narrow = model(torch.tensor([history]))
    wide = model(torch.tensor([[0] * 5 + history, [1, 2, 3, 4, 5, 6, 7, 8]]))  # another row sets the batch width
    torch.testing.assert_close(wide[:1, -3:], narrow, rtol=0, atol=1e-5)
    assert torch.isfinite(wide).all()


def test_padded_slots_never_reach_real_positions() -> None:
    model = make()
    items = torch.tensor([[0, 0, 3, 5, 7]])
    before = model(items)[:, -3:]
    with torch.no_grad():
        model.pos_emb.weight[3:] += torch.randn_like(model.pos_emb.weight[3:])  # positions 3.. = padded slots
    torch.testing.assert_close(model(items)[:, -3:], before, rtol=0, atol=1e-6)


def test_attention_maps_cover_the_returned_positions() -> None:
    model = make()
    items = torch.tensor([[0, 0, 3, 5, 7], [1, 2, 3, 4, 5]])
    maps = model.attention_maps(items)
    assert len(maps) == 2 and all(m.shape == (2, 2, 5, 5) for m in maps)
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(2, 2, 5))
        assert (m.triu(diagonal=1) == 0).all()  # no weight on later keys
        assert (m[0, :, 2:, :2] == 0).all()  # nor on padding
    wider = model.attention_maps(torch.tensor([[0, 0, 0, 0, 0, 3, 5, 7]]))
    torch.testing.assert_close(wider[1][0, :, -3:, -3:], maps[1][0, :, -3:, -3:], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"c": 8}, r"model.c=8 is impossible for model.max_len=8.*0 <= model.c <= 7"),  # 8 // 2 + 1 = all 5 bins
        ({"c": 40, "max_len": 50}, None),  # fits: 21 of 26 bins
        ({"c": 50, "max_len": 50}, r"model.c=50.*model.c <= 49"),
        ({"c": -1}, "model.c=-1"),
        ({"max_len": 1, "c": 0}, "model.max_len=1"),
        ({"alpha": 1.5}, "model.alpha=1.5"),
        ({"alpha": -0.1}, "model.alpha=-0.1"),
        ({"n_heads": 3}, r"model.hidden_size=16 is not divisible by model.n_heads=3"),
        ({"n_heads": 0}, "model.n_heads=0"),
        ({"attn_dropout": 1.0}, "model.attn_dropout"),
        ({"n_layers": 0}, "model.n_layers"),
    ],
)
def test_invalid_configs_name_the_key(overrides: dict, match: str | None) -> None:
    config = {"max_len": MAX_LEN, "hidden_size": 16, "n_heads": 2} | overrides
    if match is None:
        assert BSARecConfig(**config).low_bins == 21
        return
    with pytest.raises(ModelConfigError, match=match):
        BSARecConfig(**config)


def test_alpha_bounds_are_valid_configs() -> None:
    for alpha in (0.0, 1.0):
        assert make(alpha=alpha)(torch.tensor([[1, 2, 3]])).shape == (1, 3, 16)


def test_gradients_reach_every_parameter() -> None:
    model = make().train()
    items = torch.tensor([[0, 0, 3, 5, 7, 9], [2, 4, 6, 8, 10, 12]])
    logits = model.item_logits(model.encode_last(items))  # (B, n_items)
    torch.nn.functional.cross_entropy(logits, torch.tensor([3, 14])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_same_seed_same_weights_and_same_training_outputs() -> None:
    items = torch.tensor([[0, 3, 5, 7], [1, 2, 3, 4]])
    a, b = make().train(), make().train()
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name
    torch.manual_seed(5)
    out_a = a(items)
    torch.manual_seed(5)
    torch.testing.assert_close(b(items), out_a, rtol=0, atol=0)


def test_half_precision_autocast_runs_the_fft_in_float32() -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = make()(torch.tensor([[0, 3, 5, 7]]))
    assert torch.isfinite(out.float()).all()


def test_next_item_last_trains_on_the_last_position() -> None:
    model, task = make().train(), NextItemCE(positions="last")
    task.check_backbone(model.spec())
    loss = task.loss(model, {names.ITEMS: torch.tensor([[0, 0, 3, 5, 7], [1, 2, 3, 4, 5]])})[names.LOSS]
    loss.backward()
    assert torch.isfinite(loss) and model.blocks[0].frequency.sqrt_beta.grad is not None


def test_yaml_holds_the_beauty_settings_and_selects_the_last_position_objective(tmp_path: Path) -> None:
    paths = run_paths(tmp_path / "out", tmp_path / "data")
    cfg = compose_config("train", ["model=bsarec", *paths], hydra_node=True)
    assert cfg.hydra.runtime.choices.task == "next_item_last" and cfg.task.positions == "last"
    m = cfg.model
    assert (m.c, m.alpha, m.n_heads, m.n_layers, m.hidden_size, m.max_len) == (5, 0.7, 1, 2, 64, 50)
    task, spec = check_config(compose_config("train", ["model=bsarec", *paths]))
    assert spec.name == "BSARec" and not spec.causal and spec.attention_maps and task.prefix_windows
    with pytest.raises(ModelConfigError, match=r"model\.c=5 is impossible for model\.max_len=4"):
        check_config(compose_config("train", ["model=bsarec", "data.max_len=4", *paths]))
