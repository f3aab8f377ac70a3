"""Backbone files and warm starts: exact restore, raw-id vocabulary matching, clear errors on another shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from divrec.errors import UserError
from divrec.models import TransformerBackbone
from divrec.models.warmstart import WarmStartError, match_items, read_backbone, save_backbone, warm_start


def backbone(n_items: int, seed: int, **shape: object) -> TransformerBackbone:
    torch.manual_seed(seed)
    config = {"max_len": 6, "hidden_size": 8, "n_heads": 2, "n_layers": 2, "ffn_size": 16} | shape
    return TransformerBackbone(n_items=n_items, **config)


def ids(n: int) -> list[str]:
    return ["", *(f"i{k}" for k in range(1, n + 1))]


def test_warm_start_restores_exactly_the_saved_tensors(tmp_path: Path) -> None:
    source, target = backbone(5, seed=0), backbone(5, seed=1)
    assert not torch.equal(source.blocks[0].attn.qkv.weight, target.blocks[0].attn.qkv.weight)
    path = save_backbone(tmp_path / "backbone.pt", source, ids(5))
    match = warm_start(target, path, ids(5))
    assert (match.n_matched, match.n_fresh, match.n_unused) == (5, 0, 0)
    saved, loaded = source.state_dict(), target.state_dict()
    assert saved.keys() == loaded.keys()
    for key in saved:
        assert torch.equal(saved[key], loaded[key]), key
    torch.manual_seed(2)
    x = torch.tensor([[0, 1, 4, 6]])  # 6 = [MASK]
    source.eval(), target.eval()
    assert torch.equal(source(x), target(x))


def test_backbone_file_is_plain_data_loadable_with_weights_only(tmp_path: Path) -> None:
    path = save_backbone(tmp_path / "backbone.pt", backbone(3, seed=0), ids(3))
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["item_ids"] == ids(3) and payload["n_items"] == 3
    assert payload["config"]["hidden_size"] == 8
    assert read_backbone(path)["state_dict"].keys() == payload["state_dict"].keys()
    assert [p.name for p in tmp_path.iterdir()] == ["backbone.pt"]  # atomic write leaves no temporary file


def test_vocabulary_mapping_on_a_constructed_case() -> None:
    checkpoint = ["", "a", "b", "c", "d"]  # internal ids 1..4
    dataset = ["", "c", "x", "a", "y", "b"]  # 1..5: c, a, b are shared; x, y are new; d is unused
    match = match_items(checkpoint, dataset)
    assert match.dst.tolist() == [1, 3, 5]
    assert match.src.tolist() == [3, 1, 2]
    assert (match.n_matched, match.n_fresh, match.n_unused) == (3, 2, 1)
    assert "3 items matched" in match.summary()


def test_warm_start_copies_the_rows_of_shared_items_only(tmp_path: Path) -> None:
    source, target = backbone(4, seed=0), backbone(5, seed=1)
    before = target.tower.item_emb.weight.detach().clone()
    path = save_backbone(tmp_path / "backbone.pt", source, ["", "a", "b", "c", "d"])
    match = warm_start(target, path, ["", "c", "x", "a", "y", "b"])
    table, saved = target.tower.item_emb.weight.detach(), source.tower.item_emb.weight.detach()
    for dst, src in ((1, 3), (3, 1), (5, 2)):
        assert torch.equal(table[dst], saved[src])
    for fresh in (2, 4):  # items new to the checkpoint keep their own initialisation
        assert torch.equal(table[fresh], before[fresh])
    assert torch.equal(table[0], torch.zeros(8))  # padding
    assert torch.equal(table[target.mask_token], saved[source.mask_token])  # [MASK] row follows the checkpoint
    assert torch.equal(target.pos_emb.weight, source.pos_emb.weight)
    assert (match.n_fresh, match.n_unused) == (2, 1)


def test_checkpoint_of_another_width_fails_naming_both_shapes(tmp_path: Path) -> None:
    path = save_backbone(tmp_path / "backbone.pt", backbone(5, seed=0, hidden_size=8), ids(5))
    wider = backbone(5, seed=0, hidden_size=16)
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(WarmStartError, match=r"\(7, 8\) in the checkpoint but \(7, 16\) in this model") as err:
        warm_start(wider, path, ids(5))
    assert isinstance(err.value, UserError)
    assert "hidden_size=8" in str(err.value) and "hidden_size=16" in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in wider.state_dict().items())  # nothing half-loaded


def test_checkpoint_with_another_depth_fails_clearly(tmp_path: Path) -> None:
    path = save_backbone(tmp_path / "backbone.pt", backbone(5, seed=0, n_layers=2), ids(5))
    with pytest.raises(WarmStartError, match=r"extra in it \['blocks\.1\..*n_layers=2.*n_layers=1"):
        warm_start(backbone(5, seed=0, n_layers=1), path, ids(5))


def test_missing_or_foreign_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(WarmStartError, match="not found"):
        read_backbone(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(WarmStartError, match="not a divrec backbone file"):
        read_backbone(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(WarmStartError, match="cannot read"):
        read_backbone(tmp_path / "junk.pt")
