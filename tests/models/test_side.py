"""Item attribute side features: closed-form fusion, the backbone using the fused table, config and warm start."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from divrec.models import ModelConfigError, TransformerBackbone
from divrec.models.side import ItemAttributeFusion
from divrec.models.tower import ITEM_TABLE
from divrec.models.warmstart import save_backbone, warm_start

# items 0..4 (0 = padding): item 1 → {0, 2}, item 2 → {2}, item 3 → {}, item 4 → {1}
OFFSETS = torch.tensor([0, 0, 2, 3, 3, 4])
IDS = torch.tensor([0, 2, 2, 1])


def backbone(fusion: str | None, seed: int = 0) -> TransformerBackbone:
    torch.manual_seed(seed)
    model = TransformerBackbone(n_items=4, max_len=5, hidden_size=8, n_heads=2, n_layers=1, ffn_size=16,
                                dropout=0.0, attn_dropout=0.0, item_attribute_fusion=fusion)
    model.use_item_attributes(OFFSETS, IDS, n_attributes=3)
    return model


def test_sum_fusion_adds_the_mean_attribute_embedding() -> None:
    model = backbone("sum")
    assert model.tower.item_side is not None
    table, attrs = model.tower.item_emb.weight, model.tower.item_side.attributes.weight
    fused = model.item_vectors()
    assert fused.shape == (6, 8)  # padding, 4 items, [MASK]
    torch.testing.assert_close(fused[1], table[1] + (attrs[0] + attrs[2]) / 2)
    torch.testing.assert_close(fused[2], table[2] + attrs[2])
    torch.testing.assert_close(fused[4], table[4] + attrs[1])
    for plain in (0, 3, 5):  # padding, an item without attributes, [MASK]
        torch.testing.assert_close(fused[plain], table[plain])


def test_gate_fusion_is_a_convex_mix_and_concat_a_projection() -> None:
    fusion = ItemAttributeFusion("gate", 8, torch.cat([OFFSETS, OFFSETS[-1:]]), IDS, 3)
    table = torch.randn(6, 8)
    pooled = fusion.pooled()
    out = fusion(table)
    gate = torch.sigmoid(fusion.mix(torch.cat([table, pooled], dim=-1)))
    torch.testing.assert_close(out, gate * table + (1 - gate) * pooled)
    concat = ItemAttributeFusion("concat", 8, torch.cat([OFFSETS, OFFSETS[-1:]]), IDS, 3)
    torch.testing.assert_close(concat(table), concat.mix(torch.cat([table, concat.pooled()], dim=-1)))


@pytest.mark.parametrize("fusion", ["sum", "concat", "gate"])
def test_backbone_reads_and_scores_with_the_fused_table(fusion: str) -> None:
    model = backbone(fusion)
    fused = model.item_vectors()
    torch.testing.assert_close(model.item_table(), fused[:5])
    hidden = torch.randn(3, 8)
    torch.testing.assert_close(model.item_logits(hidden), hidden @ fused[1:5].T)
    torch.testing.assert_close(model.embed_items(torch.tensor([[1, 4]])), fused[[1, 4]][None])
    model(torch.tensor([[0, 1, 2, 5]])).sum().backward()
    assert model.tower.item_side is not None and model.tower.item_side.attributes.weight.grad is not None


def test_off_by_default_and_bad_settings_are_clear_errors() -> None:
    plain = backbone(None)
    assert plain.tower.item_side is None
    assert torch.equal(plain.item_vectors(), plain.tower.item_emb.weight)
    with pytest.raises(ModelConfigError, match="item_attribute_fusion='mean'"):
        backbone("mean")
    model = TransformerBackbone(n_items=4, max_len=5, hidden_size=8, n_heads=2, item_attribute_fusion="sum")
    with pytest.raises(ModelConfigError, match="no item attributes"):
        model.use_item_attributes(torch.zeros(6, dtype=torch.long), torch.zeros(0, dtype=torch.long), 0)


def test_warm_start_moves_between_models_with_and_without_side_features(tmp_path: Path) -> None:
    path = save_backbone(tmp_path / "b.pt", backbone(None, seed=0), ["", "a", "b", "c", "d"])
    target = backbone("gate", seed=1)
    side_before = {k: v.clone() for k, v in target.tower.item_side.state_dict().items()}
    warm_start(target, path, ["", "a", "b", "c", "d"])
    assert torch.equal(target.tower.item_emb.weight, torch.load(path, weights_only=True)["state_dict"][ITEM_TABLE])
    assert all(torch.equal(v, side_before[k]) for k, v in target.tower.item_side.state_dict().items())  # stays fresh
    back = save_backbone(tmp_path / "g.pt", target, ["", "a", "b", "c", "d"])
    warm_start(backbone(None, seed=2), back, ["", "a", "b", "c", "d"])  # side tensors in the file are ignored
