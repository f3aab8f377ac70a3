"""FMLP-Rec (models/fmlp.py): the learnable filter against a dense-DFT reference, padding invariance, non-causality,
config validation, gradients, determinism and the YAML's objective."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from runhelpers import compose_config, run_paths
from torch import Tensor

from divrec import names
from divrec.models import ModelConfigError, check_model_config
from divrec.models.fmlp import FilterLayer, FMLPConfig, FMLPRec, learned_filter
from divrec.pipeline import check_config
from divrec.tasks import NextItemCE

MAX_LEN = 8


def make(**overrides: object) -> FMLPRec:
    torch.manual_seed(0)
    config = {"max_len": MAX_LEN, "hidden_size": 16, "n_layers": 2, "ffn_size": 32} | overrides
    return FMLPRec(n_items=30, **config).eval()


def dense_filter(x: Tensor, weight: Tensor) -> Tensor:
    """The same filter from a dense DFT matrix, one channel at a time, in complex128: the (N//2 + 1, D) weight is
    extended to all N bins by Hermitian symmetry, y = Re(F^H diag(w) F x) with F the orthonormal DFT."""
    n = x.shape[1]
    k = torch.arange(n, dtype=torch.float64)
    dft = torch.exp(-2j * math.pi * k[:, None] * k[None, :] / n) / math.sqrt(n)  # (N, N) complex128
    full = torch.stack([weight[j] if j <= n // 2 else weight[n - j].conj() for j in range(n)])  # (N, D)
    full, x64 = full.to(torch.complex128), x.to(torch.complex128)
    out = torch.empty(x.shape, dtype=torch.float64)
    for d in range(x.shape[2]):
        spectrum = dft @ x64[:, :, d].T  # (N, B)
        out[:, :, d] = (dft.conj().T @ (full[:, d, None] * spectrum)).real.T
    return out


@pytest.mark.parametrize("n", [8, 7])  # even (a Nyquist bin) and odd windows
def test_filter_matches_a_dense_dft_reference(n: int) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, n, 3)
    weight = torch.randn(n // 2 + 1, 3, dtype=torch.complex64)
    torch.testing.assert_close(learned_filter(x, weight).double(), dense_filter(x, weight), rtol=0, atol=1e-5)


@pytest.mark.parametrize("length", [1, 3, 8])
def test_filter_of_the_last_positions_equals_the_zero_padded_window(length: int) -> None:
    """The model runs on the batch's L positions; the filter zero-fills the first N - L of its N-window itself."""
    torch.manual_seed(2)
    x = torch.randn(2, length, 3)
    weight = torch.randn(MAX_LEN // 2 + 1, 3, dtype=torch.complex64)
    padded = torch.nn.functional.pad(x, (0, 0, MAX_LEN - length, 0))  # (B, N, D)
    expected = dense_filter(padded, weight)[:, -length:]
    torch.testing.assert_close(learned_filter(x, weight, MAX_LEN).double(), expected, rtol=0, atol=1e-5)


def test_filter_layer_is_layernorm_of_input_plus_filter() -> None:
    cfg = FMLPConfig(max_len=MAX_LEN, hidden_size=4, dropout=0.5)
    torch.manual_seed(2)
    layer = FilterLayer(cfg).eval()  # no dropout
    x = torch.randn(3, MAX_LEN, 4)
    expected = torch.nn.functional.layer_norm(x + dense_filter(x, layer.weight().detach()).float(), (4,), eps=1e-12)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-5)
    assert layer.weight().shape == (MAX_LEN // 2 + 1, 4)  # one complex weight per frequency bin and channel


def test_more_left_padding_gives_the_same_outputs() -> None:
    model = make()
    history = [3, 5, 7]
    narrow = model(torch.tensor([history]))
    wide = model(torch.tensor([[0] * 5 + history, [1, 2, 3, 4, 5, 6, 7, 8]]))  # another row sets the batch width
    torch.testing.assert_close(wide[:1, -3:], narrow, rtol=0, atol=1e-5)
    assert torch.isfinite(wide).all()


def test_padded_slots_never_reach_real_positions() -> None:
    """Padded positions are zeroed before every filter: what the input puts there (LayerNorm of their position
    embedding) does not change the real positions' outputs."""
    model = make()
    items = torch.tensor([[0, 0, 3, 5, 7]])
    before = model(items)[:, -3:]
    with torch.no_grad():
        model.pos_emb.weight[3:] += torch.randn_like(model.pos_emb.weight[3:])  # positions 3.. = padded slots
    torch.testing.assert_close(model(items)[:, -3:], before, rtol=0, atol=1e-6)


def test_the_filter_mixes_every_position_so_a_later_item_changes_earlier_outputs() -> None:
    model = make()
    items = torch.tensor([[1, 2, 3, 4, 5]])
    changed = items.clone()
    changed[0, 4] = 9
    assert not torch.allclose(model(items)[0, 0], model(changed)[0, 0])
    assert not model.causal and model.spec().causal is False and model.spec().attention_maps is False
    assert not hasattr(model, "attention_maps")


def test_outputs_are_the_last_positions_of_the_max_len_window() -> None:
    model = make()
    items = torch.tensor([[4, 6, 8]])
    torch.testing.assert_close(model(items), model(torch.tensor([[0] * 5 + [4, 6, 8]]))[:, -3:])
    torch.testing.assert_close(model.encode_last(items), model(items)[:, -1])
    with pytest.raises(ValueError, match=f"max_len={MAX_LEN}"):
        model(torch.ones(1, MAX_LEN + 1, dtype=torch.long))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [({"n_layers": 0}, "model.n_layers"), ({"ffn_size": 0}, "model.ffn_size"), ({"activation": "tanhh"},
     "model.activation"), ({"dropout": 1.0}, "model.dropout"), ({"max_len": 0}, "model.max_len")],
)
def test_invalid_configs_name_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ModelConfigError, match=key):
        FMLPConfig(**overrides)


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
    torch.testing.assert_close(b(items), out_a, rtol=0, atol=0)  # dropout draws from the seeded generator


def test_half_precision_autocast_runs_the_fft_in_float32() -> None:
    model = make()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.tensor([[0, 3, 5, 7]]))
    assert torch.isfinite(out.float()).all()


def test_next_item_last_trains_on_the_last_position() -> None:
    model, task = make().train(), NextItemCE(positions="last")
    task.check_backbone(model.spec())  # positions=last serves a bidirectional model
    loss = task.loss(model, {names.ITEMS: torch.tensor([[0, 0, 3, 5, 7], [1, 2, 3, 4, 5]])})[names.LOSS]
    loss.backward()
    assert torch.isfinite(loss) and model.blocks[0].filter.complex_weight.grad is not None
    with pytest.raises(ModelConfigError, match="causal"):
        NextItemCE().check_backbone(model.spec())  # every position would see the item it predicts


def test_yaml_selects_the_last_position_objective(tmp_path: Path) -> None:
    paths = run_paths(tmp_path / "out", tmp_path / "data")
    cfg = compose_config("train", ["model=fmlp", *paths], hydra_node=True)
    assert cfg.hydra.runtime.choices.task == "next_item_last" and cfg.task.positions == "last"
    assert cfg.model.max_len == cfg.data.max_len == 50 and cfg.model.dropout == 0.5
    cfg = compose_config("train", ["model=fmlp", *paths])
    task, spec = check_config(cfg)
    assert spec.name == "FMLPRec" and not spec.causal and task.prefix_windows
    assert check_model_config(cfg.model) == spec
    with pytest.raises(ModelConfigError, match="causal"):  # an explicit task= still wins, and is refused
        check_config(compose_config("train", ["model=fmlp", "task=next_item_ce", *paths]))
