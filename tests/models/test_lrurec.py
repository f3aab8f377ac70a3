import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from divrec.models import ModelConfigError, check_model_config
from divrec.models.lrurec import LinearRecurrence, LRURec, LRURecConfig, linear_scan

ROOT = Path(__file__).resolve().parents[2]


def make(**overrides: object) -> LRURec:
    torch.manual_seed(0)
    config = dict(max_len=40, hidden_size=16, n_layers=2, state_size=8, ffn_size=32) | overrides
    return LRURec(n_items=30, **config).eval()


def trained_like(model: LRURec) -> LRURec:
    """Non-zero biases everywhere, as after training: a padded position's input (LayerNorm and in_proj biases of a
    zero embedding) is then non-zero, so only zeroing the recurrence input keeps padding out."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.5)
    return model


def sequential(u: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """h_t = λ h_{t-1} + u_t, one position at a time."""
    h, out = torch.zeros_like(u[:, 0]), []
    for t in range(u.shape[1]):
        h = lam * h + u[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


def random_recurrence(length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(length)
    u = torch.randn(3, length, 5, dtype=dtype, generator=g)  # (B, L, N) complex
    radius = 0.5 + 0.49 * torch.rand(5, generator=g, dtype=torch.float64)
    phase = math.tau * torch.rand(5, generator=g, dtype=torch.float64)
    return u, torch.polar(radius, phase).to(dtype)


@pytest.mark.parametrize("length", [1, 2, 3, 5, 7, 8, 13, 16, 33, 50, 64])
def test_parallel_scan_equals_the_sequential_recurrence(length: int) -> None:
    u, lam = random_recurrence(length, torch.complex128)
    torch.testing.assert_close(linear_scan(u, lam), sequential(u, lam), rtol=1e-12, atol=1e-12)
    u32, lam32 = u.to(torch.complex64), lam.to(torch.complex64)  # single precision: what training runs
    torch.testing.assert_close(linear_scan(u32, lam32).to(torch.complex128), sequential(u, lam), rtol=1e-5, atol=1e-5)


def test_lru_layer_is_the_papers_recurrence_written_as_a_loop() -> None:
    """u_t = γ (B x_t + b) at real positions, h_t = λ h_{t-1} + u_t, output LN(x_t + Re(C h_t) + c), with the complex
    B, b, C, c read off the real interleaved linears and λ = exp(-exp(ν_log) + i exp(θ_log))."""
    torch.manual_seed(1)
    layer = LinearRecurrence(LRURecConfig(hidden_size=6, state_size=4, lru_dropout=0.0)).double().eval()
    with torch.no_grad():  # non-trivial biases and LayerNorm affine (they start at zero / one)
        for p in (layer.in_proj.bias, layer.out_proj.bias, layer.norm.weight, layer.norm.bias):
            p.normal_()
    x = torch.randn(2, 7, 6, dtype=torch.float64)
    real = torch.tensor([[False, False, True, True, True, True, True], [True] * 7])
    w_in, b_in, w_out = layer.in_proj.weight, layer.in_proj.bias, layer.out_proj.weight
    B, b = torch.complex(w_in[0::2], w_in[1::2]), torch.complex(b_in[0::2], b_in[1::2])  # (N, D), (N,)
    C = torch.complex(w_out[:, 0::2], -w_out[:, 1::2])  # (D, N)
    lam = torch.exp(torch.complex(-layer.nu_log.exp(), layer.theta_log.exp())).to(torch.complex128)
    gamma = layer.gamma_log.exp().to(torch.float64)
    h, outputs = torch.zeros(2, 4, dtype=torch.complex128), []
    for t in range(7):
        u = gamma * (x[:, t].to(torch.complex128) @ B.T + b) * real[:, t, None]
        h = lam * h + u
        outputs.append(F.layer_norm(x[:, t] + (h @ C.T).real + layer.out_proj.bias, (6,), layer.norm.weight,
                                    layer.norm.bias))
    torch.testing.assert_close(layer(x, real), torch.stack(outputs, dim=1), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer.states(x, real)[0, :2], torch.zeros(2, 4, dtype=torch.complex128))


def test_ring_initialisation_radius_phase_and_normalisation() -> None:
    layer = make(state_size=512, r_min=0.4, r_max=0.7, max_phase=1.0).blocks[0].lru
    lam = layer.eigenvalues()
    assert lam.abs().min() >= 0.4 - 1e-6 and lam.abs().max() <= 0.7 + 1e-6
    assert lam.angle().min() >= 0 and lam.angle().max() <= 1.0 + 1e-6
    torch.testing.assert_close(layer.gamma_log.exp(), (1 - lam.abs() ** 2).sqrt(), rtol=1e-5, atol=1e-6)
    # the reference's ring (0.8, 0.99); the endpoints r_min = 0 and r_max = 1 stay finite
    lam = make().blocks[0].lru.eigenvalues()
    assert lam.abs().min() >= 0.8 - 1e-6 and lam.abs().max() <= 0.99 + 1e-6
    edge = make(r_min=0.0, r_max=1.0)
    assert all(torch.isfinite(p).all() for p in edge.parameters())
    assert edge.blocks[0].lru.eigenvalues().abs().max() < 1


def test_left_padding_changes_no_real_position() -> None:
    model = trained_like(make())
    short = torch.tensor([[3, 5, 7, 2, 9]])
    base = model(short)
    for pad in (1, 3, 11, 27):  # into and across powers of two
        padded = F.pad(short, (pad, 0))
        out = model(padded)
        torch.testing.assert_close(out[:, pad:], base, rtol=0, atol=1e-5)
        assert torch.isfinite(out).all()
    batch = torch.tensor([[0, 0, 0, 3, 5, 7, 2, 9], [1, 4, 6, 8, 10, 12, 14, 16]])  # a row padded within a batch
    torch.testing.assert_close(model(batch)[0, 3:], base[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(model.encode_last(batch)[0], base[0, -1], rtol=0, atol=1e-5)


def test_causal_future_items_never_change_past_outputs() -> None:
    model = trained_like(make())
    items = torch.tensor([[0, 0, 3, 5, 7, 9, 11, 2], [4, 6, 8, 10, 12, 14, 16, 18]])
    base = model(items)
    for t in range(2, 8):
        changed = items.clone()
        changed[:, t] = 25
        out = model(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(out[:, t], base[:, t])
    earlier = model(torch.tensor([[3, 5]]))[0, 1], model(torch.tensor([[4, 5]]))[0, 1]
    assert not torch.allclose(*earlier)  # a position reads the items before it


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"r_min": -0.1}, "r_min=-0.1"),
        ({"r_max": 1.2}, "r_max=1.2"),
        ({"r_min": 0.9, "r_max": 0.9}, "r_min=0.9"),
        ({"r_min": 0.95, "r_max": 0.9}, "r_min=0.95"),
        ({"max_phase": 0.0}, "max_phase=0.0"),
        ({"max_phase": 7.0}, "max_phase=7.0"),
        ({"n_layers": 0}, "n_layers=0"),
        ({"state_size": 0}, "state_size=0"),
        ({"ffn_size": 0}, "ffn_size=0"),
        ({"lru_dropout": 1.0}, "lru_dropout=1.0"),
        ({"dropout": -0.1}, "dropout=-0.1"),
        ({"activation": "tanhh"}, "activation='tanhh'"),
        ({"user_features": "token"}, "user_features='token'"),
    ],
)
def test_invalid_configs_name_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ModelConfigError, match=f"model.{key}"):
        LRURecConfig(**overrides)


def test_shipped_yaml_is_valid_causal_and_has_no_attention_maps() -> None:
    node = OmegaConf.load(ROOT / "conf/model/lrurec.yaml")
    model_cfg = OmegaConf.create({"data": {"max_len": 50}, "model": node}).model
    spec = check_model_config(model_cfg)
    assert spec.causal and not spec.mask_token and not spec.attention_maps and spec.name == "LRURec"
    with pytest.raises(ModelConfigError, match="unknown key"):
        check_model_config(OmegaConf.merge(model_cfg, {"n_heads": 2}))


def test_gradients_reach_every_parameter() -> None:
    model = make(dropout=0.0, lru_dropout=0.0).train()
    items = torch.tensor([[0, 0, 3, 5, 7, 9, 11, 2], [4, 6, 8, 10, 12, 14, 16, 18]])
    h = model(items[:, :-1])  # (B, L, D)
    keep = (items[:, :-1] != 0) & (items[:, 1:] != 0)
    F.cross_entropy(model.item_logits(h[keep]), items[:, 1:][keep] - 1).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name  # includes nu_log, theta_log, gamma_log of every block
    assert {"blocks.1.lru.nu_log", "blocks.1.lru.theta_log", "blocks.1.lru.gamma_log"} <= dict(
        model.named_parameters()).keys()


def test_deterministic_under_a_seed() -> None:
    first, second = make(), make()
    for (k1, v1), (k2, v2) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2), k1
    items = torch.tensor([[0, 3, 5, 7], [1, 2, 3, 4]])
    first.train(), second.train()
    torch.manual_seed(5)
    a = first(items)
    torch.manual_seed(5)
    assert torch.equal(a, second(items))  # same dropout draws
    torch.manual_seed(1)
    other = LRURec(n_items=30, max_len=40, hidden_size=16, n_layers=2, state_size=8, ffn_size=32)
    assert not torch.equal(other.blocks[0].lru.nu_log, first.blocks[0].lru.nu_log)  # the ring draw follows the seed


def test_layer_groups_scores_and_length_check() -> None:
    model = make(n_layers=3)
    groups = model.layer_groups()
    assert len(groups) == 4 and groups[0] == [model.tower.item_emb, model.emb_norm]
    h = model(torch.tensor([[1, 2, 3]]))[:, -1]
    assert model.score(h).shape == (1, 31)
    torch.testing.assert_close(model.score(h)[0, 5], h[0] @ model.tower.item_emb.weight[5])
    with pytest.raises(ValueError, match="max_len=40"):
        model(torch.ones(1, 41, dtype=torch.long))
