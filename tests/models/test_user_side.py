"""User side features (model.user_features): the embedding against a hand sum, off = today's model, each mode
touching only its own user's outputs, causality and padding with a user token, clear errors, warm start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from divrec.errors import UserError
from divrec.models import ModelConfigError, TransformerBackbone
from divrec.models.user_side import UserFeatureEmbedding
from divrec.models.warmstart import read_backbone, save_backbone, warm_start

# 4 users, two features: age (values a1, a2) and job (values j1, j2, j3); code 0 = unknown
CODES = {"age": np.array([1, 2, 0, 1]), "job": np.array([3, 1, 2, 0])}
VOCAB = {"age": ["<unk>", "a1", "a2"], "job": ["<unk>", "j1", "j2", "j3"]}
ITEM_IDS = ["", "a", "b", "c", "d", "e", "f"]
# left-padded histories of users 0, 1, 2 (the same items for users 0 and 2)
ITEMS = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 1, 2], [0, 0, 1, 2, 3]])
USERS = torch.tensor([0, 1, 2])


def backbone(mode: str | None, seed: int = 0, causal: bool = True, **extra: object) -> TransformerBackbone:
    torch.manual_seed(seed)
    model = TransformerBackbone(n_items=6, max_len=6, hidden_size=8, n_heads=2, n_layers=2, ffn_size=16,
                                dropout=0.0, attn_dropout=0.0, causal=causal, user_features=mode, **extra)
    model.use_user_features(CODES, VOCAB)
    return model.eval()


def test_user_vector_is_the_sum_of_one_row_per_feature() -> None:
    module = UserFeatureEmbedding.from_data(CODES, VOCAB, ["age", "job"], hidden_size=4)
    age, job = module.tables[0].weight, module.tables[1].weight
    assert (age.shape, job.shape) == ((3, 4), (4, 4))  # vocab incl. unknown
    out = module(torch.tensor([0, 2, 3]))
    torch.testing.assert_close(out[0], age[1] + job[3])
    torch.testing.assert_close(out[1], age[0] + job[2])  # unknown age: the learned "unknown" row
    torch.testing.assert_close(out[2], age[1] + job[0])
    only_job = UserFeatureEmbedding.from_data(CODES, VOCAB, ["job"], hidden_size=4)
    torch.testing.assert_close(only_job(torch.tensor([1])), only_job.tables[0].weight[[1]])


def test_off_by_default_is_the_plain_model_bit_for_bit() -> None:
    torch.manual_seed(0)
    plain = TransformerBackbone(n_items=6, max_len=6, hidden_size=8, n_heads=2, n_layers=2, ffn_size=16).eval()
    off = backbone(None)
    assert off.user_side is None and off.n_prefix == 0
    assert plain.state_dict().keys() == off.state_dict().keys()
    assert all(torch.equal(v, off.state_dict()[k]) for k, v in plain.state_dict().items())
    assert torch.equal(plain(ITEMS), off(ITEMS, USERS))  # user indices are ignored when off
    assert torch.equal(plain(ITEMS), off(ITEMS))


def test_inputs_match_the_documented_formulas() -> None:
    """add: LN(e·√D + p + u at real positions); token: LN(u) prepended, the items as in the plain model."""
    root_d, pos = 8**0.5, torch.arange(4, -1, -1)  # positions count back from the newest item
    model = backbone("add")
    u = model.user_side(USERS)  # (3, D)
    plain = model.tower.item_emb(ITEMS) * root_d + model.pos_emb(pos)  # (3, 5, D)
    expected = model.emb_norm(plain + u[:, None, :] * (ITEMS != 0)[..., None])
    torch.testing.assert_close(model.embed(ITEMS, USERS), expected)
    token = backbone("token")
    u = token.user_side(USERS)
    x = token.embed(ITEMS, USERS)  # (3, 6, D)
    torch.testing.assert_close(x[:, 0], token.emb_norm(u))
    torch.testing.assert_close(x[:, 1:], token.emb_norm(token.tower.item_emb(ITEMS) * root_d + token.pos_emb(pos)))


@pytest.mark.parametrize("mode", ["add", "token"])
@pytest.mark.parametrize("causal", [True, False])
def test_changing_a_users_features_changes_only_that_users_outputs(mode: str, causal: bool) -> None:
    model = backbone(mode, causal=causal)
    before = model(ITEMS, USERS)
    assert before.shape == (3, 5, 8)
    assert not torch.allclose(before[0], before[2])  # same items, different users
    model.user_side.codes[1] = torch.tensor([1, 2])  # user 1: another age and job
    after = model(ITEMS, USERS)
    assert not torch.allclose(after[1], before[1])
    assert torch.equal(after[0], before[0]) and torch.equal(after[2], before[2])


@pytest.mark.parametrize("mode", ["add", "token"])
def test_user_features_keep_causality_and_ignore_padding(mode: str) -> None:
    model = backbone(mode)
    out = model(ITEMS, USERS)
    changed = ITEMS.clone()
    changed[:, 3] = 6  # a different item at position 3: positions 0..2 must not see it
    out_changed = model(changed, USERS)
    torch.testing.assert_close(out_changed[:, :3], out[:, :3], rtol=0, atol=1e-6)
    assert not torch.allclose(out_changed[:, 3:], out[:, 3:])
    padded = torch.cat([torch.zeros(3, 1, dtype=ITEMS.dtype), ITEMS], dim=1)  # one more padding column
    real = ITEMS != 0
    torch.testing.assert_close(model(padded, USERS)[:, 1:][real], out[real], rtol=0, atol=1e-6)


def test_token_is_attended_by_every_position_and_dropped_from_outputs() -> None:
    model = backbone("token")
    assert model.n_prefix == 1
    assert model.embed(ITEMS, USERS).shape == (3, 6, 8)
    mask = model.attention_mask(ITEMS)  # (B, 1, L + 1, L + 1)
    assert mask.shape == (3, 1, 6, 6) and mask[:, 0, :, 0].all()  # the token column is visible to every query
    assert not mask[0, 0, 3, 1] and not mask[0, 0, 3, 4]  # padding and the future stay hidden
    maps = model.attention_maps(ITEMS, USERS)
    assert len(maps) == 2 and maps[0].shape == (3, 2, 5, 5)  # item rows/columns only
    assert (maps[0][:, :, -1].sum(-1) < 1).all()  # the rest of each row's weight is on the user token
    assert model.pos_emb.weight.shape == (6, 8)  # the token has no position embedding: the table is unchanged


def test_missing_user_indices_and_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="pass users="):
        backbone("token")(ITEMS)
    with pytest.raises(ModelConfigError, match="user_features='concat'"):
        backbone("concat")
    with pytest.raises(ModelConfigError, match=r"user_feature_names=\[\]"):
        backbone("add", user_feature_names=[])
    with pytest.raises(UserError, match=r"unknown user feature\(s\) \['zip'\]; this dataset has \['age', 'job'\]"):
        backbone("add", user_feature_names=["age", "zip"])
    model = TransformerBackbone(n_items=6, max_len=6, hidden_size=8, n_heads=2, user_features="add")
    with pytest.raises(UserError, match=r"dataset has no user features; set model\.user_features=null"):
        model.use_user_features({}, {})
    chosen = backbone("token", user_feature_names=OmegaConf.create(["job"]))  # as Hydra passes a list
    assert chosen.cfg.user_feature_names == ("job",) and chosen.user_side.names == ("job",)


def test_feature_names_without_a_mode_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="divrec.models.backbone"):
        model = backbone(None, user_feature_names=["job"])
    assert model.user_side is None
    assert "model.user_feature_names=['job'] is ignored while model.user_features is null" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="divrec.models.backbone"):
        backbone(None)
    assert caplog.text == ""


def test_warm_start_from_a_plain_backbone_leaves_the_user_features_fresh(tmp_path: Path) -> None:
    path = save_backbone(tmp_path / "plain.pt", backbone(None, seed=0), ITEM_IDS)
    target = backbone("token", seed=1, user_feature_names=["job"])
    fresh = {k: v.clone() for k, v in target.user_side.state_dict().items()}
    match = warm_start(target, path, ITEM_IDS)
    assert (match.n_matched, match.n_fresh, match.n_unused) == (6, 0, 0)
    assert match.fresh_side == ("user_side",) and "side features kept fresh: user_side" in match.summary()
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert all(torch.equal(target.state_dict()[k], v) for k, v in saved.items())  # everything else copied
    assert all(torch.equal(v, fresh[k]) for k, v in target.user_side.state_dict().items())
    back = save_backbone(tmp_path / "token.pt", target, ITEM_IDS)
    assert read_backbone(back)["config"]["user_feature_names"] == ("job",)  # safe to read back
    plain = backbone(None, seed=2)
    assert warm_start(plain, back, ITEM_IDS).fresh_side == ()  # user tensors in the file are ignored
