"""Gradient × input explanations: against finite differences, per user, with duplicates/padding/[MASK], and as the
``explain=true`` columns of ``divrec recommend``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from runhelpers import Run, compose_config, run_paths

from divrec import names
from divrec.inspection.explain import attributions, explain
from divrec.lit.module import SeqRecModule
from divrec.models import TransformerBackbone
from divrec.recommend import RANK, recommend
from divrec.tasks import Cloze, NextItemCE, Objective

HISTORY = torch.tensor([[0, 0, 3, 5, 7, 5, 11, 2], [4, 6, 8, 10, 12, 14, 16, 18]])
RECOMMENDED = torch.tensor([[9, 20, 1], [3, 25, 7]])


def make(task: Objective, causal: bool = True) -> SeqRecModule:
    torch.manual_seed(0)
    backbone = TransformerBackbone(
        n_items=30, max_len=8, hidden_size=16, n_heads=2, n_layers=2, ffn_size=32, causal=causal
    )
    for p in backbone.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return SeqRecModule(backbone=backbone, task=task, optimizer=torch.optim.Adam).double().eval()


def finite_difference(module: SeqRecModule, history: torch.Tensor, item: int, position: int, eps: float = 1e-6):
    """d/dε of the item's score when the embedding fed at ``position`` is scaled by (1 + ε): ⟨∇ s, x_t⟩ without
    autograd."""

    def score(scale: float) -> float:
        def hook(m: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            out = out.clone()
            out[:, position] *= scale
            return out

        handle = module.backbone.tower.item_emb.register_forward_hook(hook)
        try:
            return float(module.scores(history)[0, item])
        finally:
            handle.remove()

    return (score(1 + eps) - score(1 - eps)) / (2 * eps)


@pytest.mark.parametrize(("task", "causal"), [(NextItemCE(), True), (Cloze(), False)])
def test_attributions_equal_finite_differences(task: Objective, causal: bool) -> None:
    module = make(task, causal)
    ids, attr = attributions(module, HISTORY, RECOMMENDED)
    assert attr.shape == (2, 3, ids.shape[1])
    for user in range(2):
        for r in range(3):
            for position in (1, 4, 7):
                expected = finite_difference(module, HISTORY[user : user + 1], int(RECOMMENDED[user, r]), position)
                assert float(attr[user, r, position]) == pytest.approx(expected, rel=1e-5, abs=1e-8)


def test_attributions_of_a_compiled_backbone_equal_the_eager_ones() -> None:
    """compile=true: the hooked embeddings must stay on the autograd path (the forward runs eagerly here)."""
    module = make(NextItemCE())
    ids, attr = attributions(module, HISTORY, RECOMMENDED)
    module.backbone.compile()
    ids_compiled, attr_compiled = attributions(module, HISTORY, RECOMMENDED)
    torch.testing.assert_close(ids_compiled, ids)
    torch.testing.assert_close(attr_compiled, attr)


def test_batched_explanations_equal_one_user_at_a_time() -> None:
    module = make(NextItemCE())
    both = explain(module, HISTORY, RECOMMENDED, top=3)
    for user in range(2):
        alone = explain(module, HISTORY[user : user + 1], RECOMMENDED[user : user + 1], top=3)
        torch.testing.assert_close(both.items[user], alone.items[0])
        torch.testing.assert_close(both.weights[user], alone.weights[0])


def test_explanations_sum_repeated_items_and_skip_padding_and_mask() -> None:
    module = make(Cloze(), causal=False)
    why = explain(module, HISTORY, RECOMMENDED, top=8)
    ids, attr = attributions(module, HISTORY, RECOMMENDED)
    for user in range(2):
        for r in range(3):
            items, weights = why.items[user, r], why.weights[user, r]
            real = items[items != 0].tolist()
            assert len(real) == len(set(real)) == len(set(HISTORY[user, 1:].tolist()) - {0})  # cloze drops oldest
            assert module.backbone.mask_token not in real
            shown = weights[items != 0]
            assert torch.all(shown[:-1] >= shown[1:])  # strongest first
            assert torch.all(weights[items == 0] == 0)
            total = attr[user, r].abs()[(ids[user] != 0) & (ids[user] != module.backbone.mask_token)].sum()
            if user == 0:  # item 5 sits at two positions: its weight is the sum of both
                both = attr[user, r][ids[user] == 5].sum() / total
                assert float(weights[items == 5]) == pytest.approx(float(both), rel=1e-6)
            assert float(weights.abs().sum()) == pytest.approx(1.0, rel=1e-6)  # shares of the whole attribution


def test_recommend_explain_adds_because_of_columns(tmp_path: Path, tiny_run: Run) -> None:
    ckpt = tiny_run.run_dir / "checkpoints" / "best.ckpt"
    common = [f"ckpt_path={ckpt}", "users=[0,7]", "k=4", *run_paths(tmp_path, tiny_run.data_dir)]
    explained = ["explain=true", "explain_top=2", f"output={tmp_path / 'recs.parquet'}"]
    frame = pd.read_parquet(recommend(compose_config("recommend", [*common, *explained])))
    plain = pd.read_parquet(recommend(compose_config("recommend", [*common, f"output={tmp_path / 'p.parquet'}"])))
    assert names.BECAUSE_OF not in plain.columns
    pd.testing.assert_frame_equal(frame[plain.columns], plain)  # the lists themselves are unchanged
    data_cfg = compose_config("train", [*tiny_run.overrides[:-2], *run_paths(tmp_path / "x", tiny_run.data_dir)])
    data = instantiate(data_cfg.data).load()
    offsets, items = data.known_sequences()
    for _, row in frame.iterrows():
        user = int(np.flatnonzero(data.user_raw_ids == row[names.USER])[0])
        known = set(data.item_raw_ids[items[offsets[user] : offsets[user + 1]]].tolist())
        because = row[names.BECAUSE_OF].split("|")
        weights = [float(w) for w in row[names.BECAUSE_OF_WEIGHT].split("|")]
        assert 1 <= len(because) == len(weights) <= 2
        assert set(because) <= known  # explained by the user's own history
        assert weights == sorted(weights, reverse=True)
    assert sorted(frame[RANK].unique()) == [1, 2, 3, 4]
