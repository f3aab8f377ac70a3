"""GRU4Rec (models/gru4rec.py): against nn.GRU run on each unpadded history alone and against the GRU equations
written out, padding and causality, user features, config errors, gradients, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from divrec.models import ModelConfigError
from divrec.models.gru4rec import GRU4Rec, GRU4RecConfig

# left-padded histories of lengths 3, 6 (full), 1 and 4, with repeats
ITEMS = torch.tensor([[0, 0, 0, 3, 5, 7], [4, 6, 8, 10, 12, 4], [0, 0, 0, 0, 0, 9], [0, 0, 2, 2, 11, 1]])


def make(seed: int = 0, **cfg: object) -> GRU4Rec:
    torch.manual_seed(seed)
    shape = {"max_len": 8, "hidden_size": 16, "gru_size": 12, "n_layers": 2, **cfg}
    return GRU4Rec(n_items=30, **shape).eval()  # type: ignore[arg-type]


def stacked_gru(model: GRU4Rec) -> nn.GRU:
    """One nn.GRU(num_layers=N) holding the model's per-layer weights."""
    ref = nn.GRU(model.cfg.hidden_size, model.cfg.gru_size, num_layers=model.cfg.n_layers, bias=False,
                 batch_first=True)
    with torch.no_grad():
        for k, block in enumerate(model.blocks):
            getattr(ref, f"weight_ih_l{k}").copy_(block.weight_ih_l0)
            getattr(ref, f"weight_hh_l{k}").copy_(block.weight_hh_l0)
    return ref


def reference(model: GRU4Rec, items: Tensor, users: Tensor | None = None) -> Tensor:
    """Each row's real items alone through nn.GRU (no padding anywhere), then the projection; zeros at padding."""
    ref, out = stacked_gru(model), torch.zeros(*items.shape, model.cfg.hidden_size)
    u = model.user_vectors(users)
    for b, row in enumerate(items):
        real = row[row != 0]  # (n,)
        x = model.embed_items(real)  # (n, D)
        x = x if u is None else x + u[b]
        h, _ = ref(x[None])  # (1, n, G)
        out[b, items.shape[1] - len(real):] = model.proj(h[0])
    return out


def test_matches_nn_gru_on_each_unpadded_history() -> None:
    model = make()
    torch.testing.assert_close(model(ITEMS), reference(model, ITEMS), rtol=0, atol=1e-6)


def test_one_layer_follows_the_gru_equations() -> None:
    model = make(n_layers=1)
    gru = model.blocks[0]
    W_ir, W_iz, W_in = gru.weight_ih_l0.chunk(3)  # PyTorch's gate order: reset, update, new
    W_hr, W_hz, W_hn = gru.weight_hh_l0.chunk(3)
    row = ITEMS[3]
    h, states = torch.zeros(model.cfg.gru_size), []
    for x in model.embed_items(row[row != 0]):  # an explicit loop over the real items, h = 0 at the first
        r = torch.sigmoid(W_ir @ x + W_hr @ h)
        z = torch.sigmoid(W_iz @ x + W_hz @ h)
        n = torch.tanh(W_in @ x + r * (W_hn @ h))
        h = (1 - z) * n + z * h
        states.append(h)
    expected = model.proj(torch.stack(states))  # (4, D)
    out = model(ITEMS)
    torch.testing.assert_close(out[3, 2:], expected, rtol=0, atol=1e-6)
    assert torch.equal(out[3, :2], torch.zeros(2, model.cfg.hidden_size))


@pytest.mark.parametrize("fusion", [None, "concat"])
def test_left_padding_gives_the_unpadded_outputs(fusion: str | None) -> None:
    """Also with concat fusion, whose padding vector is its (trained) bias, not zero: the GRU never reads padding."""
    model = make(item_attribute_fusion=fusion)
    if fusion:
        offsets = torch.arange(32) // 2  # items 1..30 + [MASK]: item i has attribute (i - 1) // 2 for odd i
        model.use_item_attributes(offsets, torch.arange(int(offsets[-1])) % 5, 5)
        nn.init.normal_(model.tower.item_side.mix.bias)  # type: ignore[union-attr]  # as after training: not zero
        assert model.embed_items(torch.tensor([0])).abs().sum() > 0
    short = torch.tensor([[3, 5, 7]])
    for n_pad in (1, 3, 5):
        padded = torch.cat([torch.zeros(1, n_pad, dtype=torch.long), short], dim=1)
        out = model(padded)
        torch.testing.assert_close(out[:, n_pad:], model(short), rtol=0, atol=1e-5)
        assert torch.equal(out[:, :n_pad], torch.zeros(1, n_pad, model.cfg.hidden_size))
    batch = model(ITEMS)
    for b, row in enumerate(ITEMS):  # a row in a batch = the row alone, trimmed to its length
        n = int((row != 0).sum())
        torch.testing.assert_close(batch[b, -n:], model(row[None, -n:])[0], rtol=0, atol=1e-5)


def test_all_padding_rows_give_zeros_not_nan() -> None:
    model = make()
    out = model(torch.tensor([[0, 0, 0], [0, 4, 5]]))
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], torch.zeros(3, model.cfg.hidden_size))


def test_future_items_never_change_past_outputs() -> None:
    model = make()
    base = model(ITEMS)
    for t in range(3, 6):  # columns that are real in every row but row 2's
        changed = ITEMS.clone()
        changed[[0, 1, 3], t] = 25
        out = model(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(out[[0, 1, 3], t], base[[0, 1, 3], t])


def test_user_features_add_to_the_gru_input() -> None:
    codes, vocab = {"age": np.array([1, 2, 0, 1])}, {"age": ["<unk>", "a1", "a2"]}
    model = make(user_features="add")
    model.use_user_features(codes, vocab)
    users = torch.tensor([0, 1, 2, 3])
    out = model(ITEMS, users)
    torch.testing.assert_close(out, reference(model, ITEMS, users), rtol=0, atol=1e-6)
    same = ITEMS[[0, 0]]  # one history, two users with different codes
    a, b = model(same, torch.tensor([0, 1]))
    assert not torch.allclose(a[3:], b[3:])
    with pytest.raises(ValueError, match="users="):
        model(ITEMS)


def test_spec_layers_and_scores() -> None:
    model = make()
    spec = model.spec()
    assert (spec.causal, spec.mask_token, spec.attention_maps, spec.trainable) == (True, False, False, True)
    assert model.mask_token is None and not hasattr(model, "attention_maps")
    groups = model.layer_groups()
    assert groups[0] == [model.tower.item_emb] and [g[0] for g in groups[1:]] == list(model.blocks)
    assert [b.input_size for b in model.blocks] == [16, 12]
    h = model.encode_last(ITEMS)  # (B, D): the newest position
    torch.testing.assert_close(h, model(ITEMS)[:, -1])
    torch.testing.assert_close(model.score(h)[:, 7], h @ model.tower.item_emb.weight[7])


@pytest.mark.parametrize(
    ("cfg", "key"),
    [({"gru_size": 0}, "model.gru_size=0"), ({"n_layers": 0}, "model.n_layers=0"),
     ({"dropout": 1.0}, "model.dropout=1.0"), ({"hidden_size": 0}, "model.hidden_size=0"),
     ({"user_features": "token"}, "model.user_features='token'")],
)
def test_invalid_configs_name_the_key(cfg: dict, key: str) -> None:
    with pytest.raises(ModelConfigError, match=key.replace(".", r"\.")):
        GRU4RecConfig(**cfg)


def test_too_long_sequence_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_len=8"):
        make()(torch.ones(1, 9, dtype=torch.long))


def test_gradients_reach_every_parameter() -> None:
    model = make(dropout=0.5).train()
    out = model(ITEMS)
    model.item_logits(out[ITEMS != 0]).logsumexp(dim=-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_same_seed_same_weights_and_dropout() -> None:
    a, b = make(seed=3, dropout=0.5), make(seed=3, dropout=0.5)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    a.train(), b.train()
    torch.manual_seed(7)
    out_a = a(ITEMS)
    torch.manual_seed(7)
    assert torch.equal(out_a, b(ITEMS))
    assert not torch.equal(out_a, a(ITEMS))  # dropout is drawn afresh
    assert not torch.equal(a.eval()(ITEMS), make(seed=4).eval()(ITEMS))
