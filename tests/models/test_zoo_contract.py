"""Every ``conf/model/*.yaml`` builds a model that keeps the written contract (``divrec.models.contract``).

A new model file + YAML is picked up here with no edit: its spec matches its config check, shapes follow the
protocol, a causal model's past never sees its future, left padding changes nothing, and scores are the tied table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from runhelpers import compose_config, run_paths

from divrec.cli import config_dir
from divrec.data.types import EvalSplit, ProcessedData
from divrec.models import AttentionMapper, SequenceEncoder, check_model_config

MODELS = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml") if not p.name.startswith("_"))
N_ITEMS = 20


def model_cfg(name: str, tmp_path: Path) -> DictConfig:
    cfg = compose_config("train", [f"model={name}", "data.max_len=8", *run_paths(tmp_path / "o", tmp_path / "d")])
    return cfg.model


def tiny_data() -> ProcessedData:
    """3 users x 5 items over a 20-item catalogue, enough for closed-form baselines to fit."""
    train = np.array([1, 2, 3, 4, 5, 2, 3, 4, 6, 7, 3, 5, 7, 9, 11], dtype=np.int64)
    empty = np.zeros(0, dtype=np.int64)
    split = EvalSplit(users=empty, history_offsets=np.zeros(1, dtype=np.int64), history_items=empty, targets=empty)
    return ProcessedData(
        n_users=3, n_items=N_ITEMS, train_offsets=np.array([0, 5, 10, 15]), train_items=train, val=split, test=split,
        item_raw_ids=np.array(["", *map(str, range(1, N_ITEMS + 1))]), user_raw_ids=np.array(["a", "b", "c"]),
    )


def built(name: str, tmp_path: Path) -> SequenceEncoder:
    torch.manual_seed(0)
    model = instantiate(model_cfg(name, tmp_path), n_items=N_ITEMS)
    model.bind(tiny_data())
    return model.eval()


ITEMS = torch.tensor([[0, 0, 3, 5, 7, 9, 11, 2], [4, 6, 8, 10, 12, 14, 16, 18]])


@pytest.mark.parametrize("name", MODELS)
def test_spec_and_shapes_follow_the_protocol(name: str, tmp_path: Path) -> None:
    model = built(name, tmp_path)
    assert isinstance(model, SequenceEncoder)
    spec = check_model_config(model_cfg(name, tmp_path))
    assert spec == model.spec() and spec.causal == model.causal and spec.trainable == model.trainable
    assert (model.mask_token is not None) == spec.mask_token
    assert spec.attention_maps == isinstance(model, AttentionMapper)
    with torch.no_grad():
        hidden = model(ITEMS)
        last = model.encode_last(ITEMS)
        scores = model.score(last)
    assert hidden.shape == (2, 8, model.hidden_size) and last.shape == (2, model.hidden_size)
    torch.testing.assert_close(last, hidden[:, -1], rtol=1e-5, atol=1e-5)
    assert scores.shape == (2, N_ITEMS + 1) and torch.isfinite(scores).all()
    torch.testing.assert_close(scores, last @ model.item_table().T, rtol=1e-4, atol=1e-5)  # tied table
    torch.testing.assert_close(model.item_logits(last), scores[:, 1:], rtol=1e-5, atol=1e-5)
    assert model.item_vectors().shape == (N_ITEMS + 2, model.hidden_size)
    assert model.embed_items(torch.tensor([[1, 2]])).shape == (1, 2, model.hidden_size)
    groups = model.layer_groups()
    assert isinstance(groups, list) and all(isinstance(g, list) for g in groups)
    if spec.trainable:
        assert model.tower is not None and len(groups) >= 2  # an embedding layer and at least one block
    if isinstance(model, AttentionMapper):
        maps = model.attention_maps(ITEMS)
        assert maps and all(m.shape[0] == 2 and m.shape[-2:] == (8, 8) for m in maps)


@pytest.mark.parametrize("name", MODELS)
def test_left_padding_changes_nothing(name: str, tmp_path: Path) -> None:
    model = built(name, tmp_path)
    short = torch.tensor([[3, 5, 7]])
    padded = torch.tensor([[0, 0, 0, 0, 3, 5, 7]])
    with torch.no_grad():
        torch.testing.assert_close(model(padded)[:, -3:], model(short), rtol=1e-4, atol=1e-5)
        assert torch.isfinite(model(padded)).all()


@pytest.mark.parametrize("name", MODELS)
def test_a_causal_models_past_never_sees_its_future(name: str, tmp_path: Path) -> None:
    model = built(name, tmp_path)
    with torch.no_grad():
        base = model(ITEMS)
        for t in range(3, 8):
            changed = ITEMS.clone()
            changed[:, t] = 19
            out = model(changed)
            if model.causal:
                torch.testing.assert_close(out[:, :t], base[:, :t], rtol=1e-5, atol=1e-5)
            if model.hidden_size > 1:  # (a one-number query, popularity, reads no history)
                assert not torch.allclose(out[:, -1], base[:, -1])  # the newest state does read every item
        if not model.causal:  # bidirectional: some earlier state reads a later item
            changed = ITEMS.clone()
            changed[:, -1] = 19
            assert not torch.allclose(model(changed)[:, :-1], base[:, :-1])


@pytest.mark.parametrize("name", MODELS)
def test_trainable_models_get_gradients_everywhere(name: str, tmp_path: Path) -> None:
    model = built(name, tmp_path).train()
    if not model.trainable:
        assert not any(p.requires_grad for p in model.parameters())  # closed form: nothing to train
        return
    loss = model.score(model(ITEMS).flatten(0, 1)).logsumexp(-1).mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []
