"""task=finetune: frozen weights stay bit-identical through optimizer steps, layer-wise learning rates."""

from __future__ import annotations

import pytest
import torch

from divrec import names
from divrec.data.types import EvalSplit, ProcessedData
from divrec.lit.module import SeqRecModule
from divrec.models import TransformerBackbone
from divrec.tasks import FineTune, NextItemCE, TaskConfigError

WINDOWS = torch.tensor([[0, 0, 0, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7], [0, 9, 8, 7, 6, 5, 4]])


def tiny_data(n_items: int = 20) -> ProcessedData:
    empty = EvalSplit(*(torch.zeros(k, dtype=torch.long).numpy() for k in (0, 1, 0, 0)))
    raw = torch.arange(n_items + 1).numpy().astype(str)
    return ProcessedData(1, n_items, torch.tensor([0, 0]).numpy(), torch.zeros(0).long().numpy(), empty, empty,
                         raw, raw[:1])


def module(task: FineTune, weight_decay: float = 0.1) -> SeqRecModule:
    torch.manual_seed(0)
    backbone = TransformerBackbone(n_items=20, max_len=6, hidden_size=8, n_heads=2, n_layers=2, ffn_size=16)
    task.bind(backbone, tiny_data())

    def factory(params: object) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=0.01, weight_decay=weight_decay)

    return SeqRecModule(backbone=backbone, task=task, optimizer=factory)


def snapshot(model: SeqRecModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.backbone.named_parameters()}


def test_frozen_weights_are_bit_identical_after_optimizer_steps_and_the_rest_changes() -> None:
    model = module(FineTune(NextItemCE(), freeze_embeddings=True, freeze_blocks=1))
    optimizer = model.configure_optimizers()
    before = snapshot(model)
    for _ in range(3):
        optimizer.zero_grad()
        model.training_step({names.ITEMS: WINDOWS}, 0).backward()
        optimizer.step()
    after = snapshot(model)
    frozen = [k for k in before if k.startswith(("tower.item_emb", "pos_emb", "emb_norm", "blocks.0."))]
    trained = [k for k in before if k not in frozen]
    assert len(frozen) == 2 + 2 + len([k for k in before if k.startswith("blocks.0.")])
    for key in frozen:
        assert torch.equal(before[key], after[key]), key
        assert not model.backbone.get_parameter(key).requires_grad
    for key in trained:
        assert not torch.equal(before[key], after[key]), key  # block 1 and the final norm do train


def test_without_freezing_everything_trains() -> None:
    model = module(FineTune(NextItemCE()))
    optimizer = model.configure_optimizers()
    before = snapshot(model)
    optimizer.zero_grad()
    model.training_step({names.ITEMS: WINDOWS}, 0).backward()
    optimizer.step()
    changed = {k for k, v in snapshot(model).items() if not torch.equal(before[k], v)}
    assert changed == set(before)


def test_layer_wise_learning_rate_decay_scales_each_layer() -> None:
    model = module(FineTune(NextItemCE(), layer_decay=0.5))
    optimizer = model.configure_optimizers()
    backbone = model.backbone
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert lr_of[id(backbone.tower.item_emb.weight)] == pytest.approx(0.01 * 0.5**3)  # layer 0 of 0..3
    assert lr_of[id(backbone.pos_emb.weight)] == pytest.approx(0.01 * 0.5**3)
    assert lr_of[id(backbone.blocks[0].attn.qkv.weight)] == pytest.approx(0.01 * 0.5**2)
    assert lr_of[id(backbone.blocks[1].ffn[0].weight)] == pytest.approx(0.01 * 0.5)
    assert lr_of[id(backbone.final_norm.weight)] == pytest.approx(0.01)
    assert len(lr_of) == len(list(model.parameters()))  # every trainable parameter exactly once


def test_default_objective_keeps_one_group_at_the_configured_lr() -> None:
    torch.manual_seed(0)
    backbone = TransformerBackbone(n_items=5, max_len=4, hidden_size=8, n_heads=2, n_layers=1, ffn_size=16)
    model = SeqRecModule(backbone=backbone, task=NextItemCE(), optimizer=lambda params: torch.optim.Adam(params, 0.1))
    optimizer = model.configure_optimizers()
    assert [g["lr"] for g in optimizer.param_groups] == [0.1]


def test_finetune_delegates_the_attention_requirement_and_rejects_bad_options() -> None:
    assert FineTune(NextItemCE()).requires_causal is True
    with pytest.raises(TaskConfigError, match="layer_decay"):
        FineTune(NextItemCE(), layer_decay=0.0)
    with pytest.raises(TaskConfigError, match="freeze_blocks=3 exceeds the model's 2 blocks"):
        module(FineTune(NextItemCE(), freeze_blocks=3))
