"""task=pretrain: augmentations, InfoNCE against a loop reference, the weighted composite, and every pretraining loss
decreasing on synthetic data with planted structure (successor chains, category-correlated successors)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from divrec import names
from divrec.data.datamodule import SeqDataModule
from divrec.data.preprocess import Preprocessing
from divrec.data.splits import LeaveOneOut
from divrec.data.synthetic import Synthetic
from divrec.data.types import ProcessedData
from divrec.models import TransformerBackbone
from divrec.tasks import (
    AssociatedAttributePrediction,
    Cloze,
    ContrastiveSequence,
    MaskedAttributePrediction,
    NextItemCE,
    Objective,
    Pretraining,
    TaskConfigError,
)
from divrec.tasks.contrastive import crop, info_nce, mask, reorder

ROWS = torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4], [11, 12, 13, 14, 15, 16, 17, 18], [0, 0, 0, 0, 0, 0, 7, 8]])


def real(row: torch.Tensor) -> list[int]:
    return [int(x) for x in row if x != 0]


# --- augmentations -----------------------------------------------------------------------------------------------


def test_crop_keeps_a_left_padded_contiguous_run_of_the_requested_length() -> None:
    torch.manual_seed(0)
    for _ in range(20):
        out = crop(ROWS, 0.5)
        for row, view in zip(ROWS, out, strict=True):
            items, kept = real(row), real(view)
            assert len(kept) == max(1, len(items) // 2)
            assert view[: len(view) - len(kept)].eq(0).all()  # left padding
            starts = [s for s in range(len(items)) if items[s : s + len(kept)] == kept]
            assert starts, (items, kept)


def test_mask_replaces_the_requested_number_of_real_items() -> None:
    torch.manual_seed(0)
    out = mask(ROWS, 0.5, mask_token=99)
    for row, view in zip(ROWS, out, strict=True):
        assert int((view == 99).sum()) == len(real(row)) // 2
        assert torch.equal(view[row == 0], row[row == 0])  # padding untouched
        assert torch.equal(view[(view != 99)], row[(view != 99)])


def test_reorder_permutes_one_contiguous_run_only() -> None:
    torch.manual_seed(0)
    moved_any = False
    for _ in range(20):
        out = reorder(ROWS, 0.5)
        for row, view in zip(ROWS, out, strict=True):
            assert sorted(view.tolist()) == sorted(row.tolist())
            changed = (view != row).nonzero().flatten().tolist()
            if changed:
                moved_any = True
                assert changed[-1] - changed[0] < len(real(row)) // 2  # within one run of ⌊0.5 n⌋
                assert all(row[c] != 0 for c in changed)
    assert moved_any


def test_info_nce_matches_a_loop_reference() -> None:
    torch.manual_seed(0)
    z, tau = torch.randn(6, 4), 0.5
    terms = []
    zn = F.normalize(z, dim=-1)
    for v in range(6):
        sims = torch.stack([zn[v] @ zn[u] / tau for u in range(6) if u != v])
        positive = zn[v] @ zn[v ^ 1] / tau
        terms.append(torch.logsumexp(sims, 0) - positive)
    torch.testing.assert_close(info_nce(z, tau), torch.stack(terms).mean())


# --- the composite --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProcessedData, torch.Tensor]:
    """Strongly structured sequences: each item has 2 likely successors (followed 90% of the time), mostly of its
    own category (90%); 10 categories = the items' attributes."""
    source = Synthetic(n_users=300, n_items=60, n_categories=10, mean_length=12.0, n_successors=2, follow_prob=0.9,
                       same_category_prob=0.9, seed=0)
    datamodule = SeqDataModule(source, Preprocessing(), LeaveOneOut(), data_dir=str(tmp_path_factory.mktemp("d")),
                               download=False, max_len=10, batch_size=64)
    datamodule.setup()
    return datamodule.load(), datamodule.tensors[names.TRAIN][names.ITEMS]


def tiny_backbone(n_items: int, causal: bool = False) -> TransformerBackbone:
    torch.manual_seed(0)
    return TransformerBackbone(n_items=n_items, max_len=10, hidden_size=32, n_heads=2, n_layers=1, ffn_size=64,
                               dropout=0.0, attn_dropout=0.0, causal=causal)


def fixed_seed_loss(objective: Objective, backbone: TransformerBackbone, windows: torch.Tensor) -> float:
    """The loss on the first 128 windows with the same random masks/views every time."""
    torch.manual_seed(123)
    with torch.no_grad():
        return float(objective.loss(backbone, {names.ITEMS: windows[:128]})[names.LOSS])


PARTS = {
    "cloze": lambda: Cloze(mask_prob=0.3),
    "aap": AssociatedAttributePrediction,
    "map": lambda: MaskedAttributePrediction(mask_prob=0.3),
    "contrastive": lambda: ContrastiveSequence(temperature=0.2),
}


@pytest.mark.parametrize("part", list(PARTS))
def test_each_pretraining_loss_decreases_on_planted_structure(part: str, synthetic) -> None:
    data, windows = synthetic
    backbone = tiny_backbone(data.n_items)
    objective = Pretraining({part: {"weight": 1.0, "objective": PARTS[part]()}})
    objective.bind(backbone, data)
    params = list(backbone.parameters()) + list(objective.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2)
    before = fixed_seed_loss(objective, backbone, windows)
    generator = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        for rows in torch.randperm(len(windows), generator=generator).split(64):
            losses = objective.loss(backbone, {names.ITEMS: windows[rows]})
            assert set(losses) == {names.LOSS, names.part_loss(part)}
            optimizer.zero_grad()
            losses[names.LOSS].backward()
            optimizer.step()
    after = fixed_seed_loss(objective, backbone, windows)
    assert after < 0.85 * before, (part, before, after)
    # below the best loss without the planted structure: the item marginal (cloze), the attribute marginals (AAP/MAP)
    assert after < NO_STRUCTURE.get(part, lambda d, w: before)(data, windows), (part, after)


def item_entropy(data: ProcessedData, windows: torch.Tensor) -> float:
    """Cross-entropy of the best context-free predictor of an item: its frequency."""
    counts = torch.bincount(windows[windows != 0], minlength=data.n_items + 1).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def attribute_entropy(data: ProcessedData, windows: torch.Tensor) -> float:
    """Mean BCE over attributes of the best item-free predictor: each attribute's frequency."""
    aap = AssociatedAttributePrediction()
    aap.bind(tiny_backbone(data.n_items), data)
    p = aap.item_attributes[windows[windows != 0]].double().mean(dim=0).clamp(1e-9, 1 - 1e-9)
    return float(-(p * p.log() + (1 - p) * (1 - p).log()).mean())


EPOCHS = 15
NO_STRUCTURE = {"cloze": item_entropy, "aap": attribute_entropy, "map": attribute_entropy}


def test_total_is_the_weighted_sum_and_disabled_parts_are_not_built(synthetic) -> None:
    data, windows = synthetic
    backbone = tiny_backbone(data.n_items)
    a, b = AssociatedAttributePrediction(), AssociatedAttributePrediction()  # deterministic losses
    objective = Pretraining({
        "a": {"weight": 0.5, "objective": a},
        "b": {"weight": 2.0, "objective": b},
        "off": {"weight": 0.0, "objective": Cloze()},
        "gone": {"weight": 1.0, "objective": None},
        "none": None,
    })
    assert list(objective.parts) == ["a", "b"]
    objective.bind(backbone, data)
    batch = {names.ITEMS: windows[:32]}
    out = objective.loss(backbone, batch)
    la, lb = (p.loss(backbone, batch)[names.LOSS] for p in (a, b))
    torch.testing.assert_close(out[names.LOSS], 0.5 * la + 2.0 * lb)
    torch.testing.assert_close(out[names.part_loss("a")], la.detach())
    assert objective.requires_causal is None and objective.query_from == "a"


def test_composite_queries_with_cloze_and_takes_its_attention_requirement() -> None:
    objective = Pretraining({"aap": {"weight": 1, "objective": AssociatedAttributePrediction()},
                             "cloze": {"weight": 1, "objective": Cloze()}})
    assert objective.query_from == "cloze" and objective.requires_causal is False
    backbone = tiny_backbone(20)
    history = torch.tensor([[0, 3, 4]])
    torch.testing.assert_close(objective.query(backbone, history), Cloze().query(backbone, history))


def test_composite_rejects_impossible_configurations(synthetic) -> None:
    with pytest.raises(TaskConfigError, match="no enabled part"):
        Pretraining({"cloze": {"weight": 0, "objective": Cloze()}})
    with pytest.raises(TaskConfigError, match="causal"):
        Pretraining({"c": {"weight": 1, "objective": Cloze()}, "n": {"weight": 1, "objective": NextItemCE()}})
    with pytest.raises(TaskConfigError, match="weight=-1"):
        Pretraining({"c": {"weight": -1, "objective": Cloze()}})
    with pytest.raises(TaskConfigError, match="query_from"):
        Pretraining({"c": {"weight": 1, "objective": Cloze()}}, query_from="map")
    with pytest.raises(TaskConfigError, match="pooling"):
        ContrastiveSequence(pooling="max")


def test_attribute_objectives_need_attributes(synthetic) -> None:
    data, _ = synthetic
    bare = ProcessedData(**{**data.__dict__, "category_names": data.category_names[:0]})
    with pytest.raises(TaskConfigError, match="needs item attributes"):
        MaskedAttributePrediction().bind(tiny_backbone(data.n_items), bare)


def test_attribute_head_scores_the_multi_hot_labels(synthetic, tmp_path: Path) -> None:
    data, _ = synthetic
    backbone = tiny_backbone(data.n_items)
    aap = AssociatedAttributePrediction()
    aap.bind(backbone, data)
    items = torch.tensor([1, 2, 3])
    x = backbone.tower.item_emb(items)
    expected = F.binary_cross_entropy_with_logits(aap.head(x), aap.item_attributes[items].float())
    torch.testing.assert_close(aap.attribute_loss(x, items), expected)
    assert aap.item_attributes[1 : data.n_items + 1].sum(dim=1).eq(1).all()  # synthetic: one category per item
    assert not aap.item_attributes[0].any() and not aap.item_attributes[backbone.mask_token].any()
