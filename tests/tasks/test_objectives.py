import pytest
import torch
import torch.nn.functional as F

from divrec import names
from divrec.models import ModelConfigError, ModelSpec, TransformerBackbone
from divrec.tasks import Cloze, NextItemBCE, NextItemCE, NextItemSampledSoftmax
from divrec.tasks.base import TaskConfigError


def backbone(causal: bool = True) -> TransformerBackbone:
    torch.manual_seed(0)
    return TransformerBackbone(n_items=20, max_len=6, hidden_size=8, n_heads=2, n_layers=1, ffn_size=16,
                               dropout=0.0, attn_dropout=0.0, causal=causal)


WINDOWS = torch.tensor([[0, 0, 0, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7]])


def test_full_ce_only_at_real_positions_matches_a_loop_reference() -> None:
    model = backbone()
    loss = NextItemCE().loss(model, {names.ITEMS: WINDOWS})[names.LOSS]
    terms = []
    for row in WINDOWS:
        hidden = model(row[None, :-1])[0]
        for t in range(6):
            if row[t] != 0 and row[t + 1] != 0:
                logits = model.item_logits(hidden[t : t + 1])
                terms.append(F.cross_entropy(logits, row[t + 1 : t + 2] - 1))
    assert len(terms) == 3 + 6
    torch.testing.assert_close(loss, torch.stack(terms).mean())


@pytest.mark.parametrize(
    "objective",
    [NextItemBCE(n_negatives=2), NextItemSampledSoftmax(n_negatives=5),
     NextItemSampledSoftmax(n_negatives=5, share="position")],
)
def test_sampled_objectives_give_finite_gradients(objective) -> None:
    model = backbone()
    loss = objective.loss(model, {names.ITEMS: WINDOWS})[names.LOSS]
    loss.backward()
    assert torch.isfinite(loss) and model.tower.item_emb.weight.grad is not None


def test_cloze_masks_at_least_one_item_and_queries_with_a_mask_token() -> None:
    model = backbone(causal=False)
    torch.manual_seed(1)
    loss = Cloze(mask_prob=0.01).loss(model, {names.ITEMS: WINDOWS})[names.LOSS]
    assert torch.isfinite(loss) and loss > 0
    q = Cloze().query(model, torch.tensor([[1, 2, 3]]))
    torch.testing.assert_close(q, model(torch.tensor([[2, 3, model.mask_token]]))[:, -1])


def spec(causal: bool, mask_token: bool = True, trainable: bool = True) -> ModelSpec:
    return ModelSpec("M", causal=causal, mask_token=mask_token, attention_maps=False, trainable=trainable)


def test_objective_rejects_the_wrong_attention_kind() -> None:
    with pytest.raises(ModelConfigError, match="bidirectional"):
        Cloze().check_backbone(spec(causal=True))
    with pytest.raises(ModelConfigError, match="causal"):
        NextItemCE().check_backbone(spec(causal=False))
    Cloze().check_backbone(spec(causal=False))


def test_objective_rejects_a_model_without_mask_token_or_a_closed_form_model() -> None:
    with pytest.raises(ModelConfigError, match=r"\[MASK\] token"):
        Cloze().check_backbone(spec(causal=False, mask_token=False))
    with pytest.raises(ModelConfigError, match="task=fitted"):
        NextItemCE().check_backbone(spec(causal=True, trainable=False))


def loss_and_grads(objective: NextItemSampledSoftmax) -> tuple[torch.Tensor, list]:
    model = backbone()
    torch.manual_seed(3)  # the same negatives on both paths
    loss = objective.loss(model, {names.ITEMS: WINDOWS})[names.LOSS]
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_per_position_logits_through_the_table_equal_the_gather_in_loss_and_gradients() -> None:
    from divrec.tasks import next_item

    gather = NextItemSampledSoftmax(n_negatives=7, share="position", position_logits="gather")
    table = NextItemSampledSoftmax(n_negatives=7, share="position", position_logits="table")
    assert not gather.through_table(9, 20) and table.through_table(9, 20)
    (a, grads_a), (b, grads_b) = loss_and_grads(gather), loss_and_grads(table)
    torch.testing.assert_close(a, b)
    assert len(grads_a) == len(grads_b) > 0
    for x, y in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    rows, next_item.TABLE_BLOCK_ROWS = next_item.TABLE_BLOCK_ROWS, 2  # several blocks: 9 positions in 5 products
    try:
        torch.testing.assert_close(loss_and_grads(table)[0], a)
    finally:
        next_item.TABLE_BLOCK_ROWS = rows


def test_auto_takes_the_table_only_for_small_catalogs_and_bounded_memory() -> None:
    auto = NextItemSampledSoftmax(n_negatives=256, share="position")
    assert auto.through_table(900, 12_101)  # Beauty: 12k items <= 64 x 256
    assert not auto.through_table(900, 1_000_000)  # a million items: gather 256 rows per position instead
    assert not auto.through_table(10**6, 12_101)  # (N, V) fp32 logits over 1 GiB
    assert not NextItemSampledSoftmax(n_negatives=256).through_table(900, 100)  # shared sets: one product anyway
    with pytest.raises(TaskConfigError, match=r"task\.position_logits='dense' is not one of"):
        NextItemSampledSoftmax(position_logits="dense")
