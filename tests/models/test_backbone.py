import pytest
import torch

from divrec.models import BackboneConfig, ModelConfigError, TransformerBackbone


def make(causal: bool = True, norm_first: bool = True) -> TransformerBackbone:
    torch.manual_seed(0)
    model = TransformerBackbone(
        n_items=30, max_len=8, hidden_size=16, n_heads=2, n_layers=2, ffn_size=32, causal=causal, norm_first=norm_first
    )
    return model.eval()


@pytest.mark.parametrize("norm_first", [True, False])
def test_causal_attention_future_items_never_change_past_outputs(norm_first: bool) -> None:
    model = make(causal=True, norm_first=norm_first)
    items = torch.tensor([[0, 0, 3, 5, 7, 9, 11, 2], [4, 6, 8, 10, 12, 14, 16, 18]])
    base = model(items)
    for t in range(2, 8):
        changed = items.clone()
        changed[:, t] = 25  # replace a later item
        out = model(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(out[:, t], base[:, t])


def test_bidirectional_attention_sees_the_future() -> None:
    model = make(causal=False)
    items = torch.tensor([[1, 2, 3, 4, 5]])
    changed = items.clone()
    changed[0, 4] = 9
    assert not torch.allclose(model(items)[0, 0], model(changed)[0, 0])


def test_padding_is_ignored_and_positions_count_from_the_newest_item() -> None:
    model = make()
    short = torch.tensor([[3, 5, 7]])
    padded = torch.tensor([[0, 0, 0, 3, 5, 7]])
    torch.testing.assert_close(model(padded)[:, -3:], model(short), rtol=0, atol=1e-5)
    assert torch.isfinite(model(padded)).all()  # padded queries do not produce NaN


def test_scores_cover_padding_and_items_with_tied_embeddings() -> None:
    model = make()
    h = model(torch.tensor([[1, 2, 3]]))[:, -1]
    scores = model.score(h)
    assert scores.shape == (1, 31)
    torch.testing.assert_close(scores[0, 5], h[0] @ model.tower.item_emb.weight[5])


def test_invalid_shapes_are_rejected_with_a_clear_message() -> None:
    with pytest.raises(ModelConfigError, match=r"hidden_size=65 is not divisible by model.n_heads=2"):
        BackboneConfig(hidden_size=65, n_heads=2)
    with pytest.raises(ModelConfigError, match="activation"):
        BackboneConfig(activation="tanhh")
    with pytest.raises(ModelConfigError, match="dropout"):
        BackboneConfig(dropout=1.5)


def test_too_long_sequence_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_len=8"):
        make()(torch.ones(1, 9, dtype=torch.long))
