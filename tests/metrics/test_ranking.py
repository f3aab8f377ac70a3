"""Ranking metrics: closed forms, a brute-force reference with ties and seen items, masking, coverage, evaluator
accumulation/reset and exact multi-process merge semantics."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from divrec import names
from divrec.metrics import (
    MAP,
    MRR,
    NDCG,
    RANK_METRICS,
    HitRate,
    ItemCoverage,
    Precision,
    RankingEvaluator,
    RankMetric,
    Recall,
    mask_scores,
    target_ranks,
    top_k,
)

INF = float("inf")
KS = (1, 3, 5, 10, 20)
ALL_NAMES = [*RANK_METRICS, names.ITEM_COVERAGE]


# --- brute-force reference ---------------------------------------------------------------------------------------


def _reference_lists(scores: Tensor, target: Tensor, seen: Tensor) -> list[list[int]]:
    """Per user: rankable items sorted best first by (-score, target last among ties) — pessimistic ranking."""
    lists = []
    for b in range(scores.shape[0]):
        t = int(target[b])
        excluded = {0, *(int(j) for j in seen[b])} - {t}
        cands = [j for j in range(scores.shape[1]) if j not in excluded]
        lists.append(sorted(cands, key=lambda j, b=b, t=t: (-float(scores[b, j]), j == t)))
    return lists


def _reference_metrics(order: list[int], relevant: set[int], k: int) -> dict[str, float]:
    """Metric values of one ranked list from the general (any relevant set) definitions."""
    rel = [int(j in relevant) for j in order[:k]]
    hits = sum(rel)
    dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel))
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    rr = next((1 / (i + 1) for i, r in enumerate(rel) if r), 0.0)
    ap = sum(sum(rel[: i + 1]) / (i + 1) for i, r in enumerate(rel) if r) / min(len(relevant), k)
    return {
        names.HR: float(hits > 0),
        names.RECALL: hits / len(relevant),
        names.PRECISION: hits / k,
        names.NDCG: dcg / idcg,
        names.MRR: rr,
        names.MAP: ap,
    }


def _random_batch(
    gen: torch.Generator, batch: int, n_items: int, ties: bool, max_seen: int = 6
) -> tuple[Tensor, Tensor, Tensor]:
    if ties:  # a small integer set: many ties, including with the target
        scores = torch.randint(0, 4, (batch, n_items + 1), generator=gen).float()
    else:
        scores = torch.rand(batch, n_items + 1, generator=gen, dtype=torch.float64)
    target = torch.randint(1, n_items + 1, (batch,), generator=gen)
    seen = torch.zeros(batch, max_seen, dtype=torch.long)
    for b in range(batch):
        n = int(torch.randint(0, max_seen + 1, (1,), generator=gen))
        seen[b, :n] = torch.randint(1, n_items + 1, (n,), generator=gen)
        if b % 3 == 0 and n:  # the target is in the history for some users
            seen[b, 0] = target[b]
    return scores, target, seen


# --- functional core ---------------------------------------------------------------------------------------------


def test_mask_scores_keeps_target_masks_padding_and_seen() -> None:
    scores = torch.tensor([[9.0, 1.0, 2.0, 3.0, 4.0], [9.0, 5.0, 4.0, 3.0, 2.0]])
    target = torch.tensor([2, 1])
    seen = torch.tensor([[2, 4, 0], [3, 1, 0]])  # target in seen for both users, right-padded with 0
    out = mask_scores(scores, seen, target)
    expected = torch.tensor([[-INF, 1.0, 2.0, 3.0, -INF], [-INF, 5.0, 4.0, -INF, 2.0]])
    assert torch.equal(out, expected)
    assert scores[0, 0] == 9.0  # not in place by default
    # column 0 never ranked even though its raw score is the highest
    assert target_ranks(out, target).tolist() == [2, 1]
    assert 0 not in top_k(out, 4).tolist()[0][:3]


def test_mask_scores_inplace_and_empty_seen() -> None:
    scores = torch.tensor([[1.0, 2.0, 3.0]])
    out = mask_scores(scores, torch.zeros(1, 0, dtype=torch.long), torch.tensor([1]), inplace=True)
    assert out is scores
    assert scores.tolist() == [[-INF, 2.0, 3.0]]
    with pytest.raises(TypeError):
        mask_scores(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long), torch.tensor([1]))


def test_target_ranks_pessimistic_ties() -> None:
    scores = torch.tensor(
        [
            [-INF, 1.0, 3.0, 3.0, 2.0],  # target 2 tied with item 3 → behind it
            [-INF, 5.0, 5.0, 5.0, 5.0],  # constant model → worst rank
            [-INF, 1.0, -INF, 7.0, 2.0],  # masked items (-inf) never count
            [-INF, -INF, 1.0, 2.0, 3.0],  # target itself at -inf → last among the 3 rankable items
            [-INF, float("nan"), 1.0, 2.0, 3.0],  # NaN target → last
        ]
    )
    target = torch.tensor([2, 3, 1, 1, 1])
    ranks = target_ranks(scores, target)
    assert ranks.dtype == torch.long
    assert ranks.tolist() == [2, 4, 3, 4, 4]


def test_top_k_fills_unrankable_with_padding() -> None:
    scores = torch.tensor([[-INF, 1.0, -INF, 3.0]])
    assert top_k(scores, 3).tolist() == [[3, 1, 0]]
    assert top_k(scores, 6).tolist() == [[3, 1, 0, 0, 0, 0]]
    assert top_k(scores, 1).tolist() == [[3]]


# --- closed forms ------------------------------------------------------------------------------------------------

RANKS = torch.tensor([1, 2, 3, 11])
CLOSED_FORMS_AT_10: dict[type[RankMetric], float] = {
    HitRate: 3 / 4,
    Recall: 3 / 4,
    Precision: 3 / (4 * 10),
    NDCG: (1 + 1 / math.log2(3) + 1 / 2 + 0) / 4,
    MRR: (1 + 1 / 2 + 1 / 3 + 0) / 4,
    MAP: (1 + 1 / 2 + 1 / 3 + 0) / 4,
}


@pytest.mark.parametrize("cls", list(CLOSED_FORMS_AT_10))
def test_rank_metric_closed_form(cls: type[RankMetric]) -> None:
    metric = cls(k=10)
    metric.update(RANKS[:2])
    metric.update(RANKS[2:])
    assert metric.compute().dtype == torch.float64
    assert float(metric.compute()) == pytest.approx(CLOSED_FORMS_AT_10[cls], abs=1e-15)
    assert metric.per_user().shape == (4,)
    assert float(metric.per_user()[3]) == 0.0  # rank 11 > K


def test_rank_metric_zero_users_is_zero() -> None:
    with pytest.warns(UserWarning):
        assert float(NDCG(k=5).compute()) == 0.0
    assert NDCG(k=5).per_user().numel() == 0


def test_item_coverage_closed_form() -> None:
    cov2, cov1 = ItemCoverage(n_items=5, k=2), ItemCoverage(n_items=5, k=1)
    items = torch.tensor([[1, 2], [2, 3], [2, 0]])  # 0 = padding, ignored
    cov2.update(items)
    cov1.update(items)
    assert float(cov2.compute()) == pytest.approx(3 / 5)
    assert float(cov1.compute()) == pytest.approx(2 / 5)
    with pytest.raises(ValueError):
        cov2.update(torch.tensor([[6, 1]]))


# --- brute-force reference on random scores with ties and seen items ---------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_brute_force_with_ties(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    n_items = 15  # < max K: top-K lists run out of rankable items
    scores, target, seen = _random_batch(gen, batch=40, n_items=n_items, ties=True)
    lists = _reference_lists(scores, target, seen)
    ranks = target_ranks(mask_scores(scores, seen, target), target)
    assert ranks.tolist() == [order.index(int(t)) + 1 for order, t in zip(lists, target, strict=True)]
    for k in KS:
        refs = [_reference_metrics(order, {int(t)}, k) for order, t in zip(lists, target, strict=True)]
        for name, cls in RANK_METRICS.items():
            metric = cls(k=k)
            metric.update(ranks)
            expected = torch.tensor([r[name] for r in refs], dtype=torch.float64)
            assert torch.allclose(metric.per_user(), expected, rtol=0, atol=1e-9), (name, k)
            assert float(metric.compute()) == pytest.approx(float(expected.mean()), abs=1e-9)


def test_evaluator_matches_brute_force_including_coverage() -> None:
    gen = torch.Generator().manual_seed(7)
    n_items = 30
    scores, target, seen = _random_batch(gen, batch=25, n_items=n_items, ties=False)  # distinct: top-K is unique
    lists = _reference_lists(scores, target, seen)
    evaluator = RankingEvaluator(stage=names.TEST, n_items=n_items, ks=KS)
    evaluator.update(scores, target, seen)
    result = evaluator.compute()
    for k in KS:
        refs = [_reference_metrics(order, {int(t)}, k) for order, t in zip(lists, target, strict=True)]
        for name in RANK_METRICS:
            expected = sum(r[name] for r in refs) / len(refs)
            assert result[names.metric_key(names.TEST, name, k)] == pytest.approx(expected, abs=1e-9)
        covered = set().union(*(order[:k] for order in lists))
        expected_cov = len(covered) / n_items
        assert result[names.metric_key(names.TEST, names.ITEM_COVERAGE, k)] == pytest.approx(expected_cov)


# --- evaluator -----------------------------------------------------------------------------------------------------


def test_evaluator_keys_and_defaults() -> None:
    evaluator = RankingEvaluator(stage=names.VAL, n_items=50)
    gen = torch.Generator().manual_seed(0)
    evaluator.update(*_random_batch(gen, batch=8, n_items=50, ties=True))
    result = evaluator.compute()
    expected = {names.metric_key(names.VAL, name, k) for name in ALL_NAMES for k in (5, 10, 20)}
    assert set(result) == expected
    assert list(result) == evaluator.metric_keys()
    assert names.MONITOR in result
    assert all(isinstance(v, float) for v in result.values())
    assert set(evaluator.per_user()) == {names.metric_key(names.VAL, n, k) for n in RANK_METRICS for k in (5, 10, 20)}


def test_evaluator_two_batches_equal_one_and_reset() -> None:
    gen = torch.Generator().manual_seed(3)
    scores, target, seen = _random_batch(gen, batch=30, n_items=40, ties=True)
    whole = RankingEvaluator(stage=names.VAL, n_items=40)
    whole.update(scores, target, seen)
    split = RankingEvaluator(stage=names.VAL, n_items=40)
    split.update(scores[:11], target[:11], seen[:11])
    split.update(scores[11:], target[11:], seen[11:])
    expected = whole.compute()
    assert split.compute() == pytest.approx(expected, abs=1e-12)
    split.reset()
    assert all(v.numel() == 0 for v in split.per_user().values())
    split.update(scores, target, seen)
    assert split.compute() == pytest.approx(expected, abs=1e-12)


def test_evaluator_user_index_and_inplace() -> None:
    gen = torch.Generator().manual_seed(5)
    scores, target, seen = _random_batch(gen, batch=6, n_items=20, ties=True)
    evaluator = RankingEvaluator(stage=names.TEST, n_items=20, ks=(10,), metrics=[names.NDCG], coverage=False)
    original = scores.clone()
    ranks = evaluator.update(scores, target, seen, user_index=torch.arange(6) + 100)
    assert torch.equal(scores, original)
    per_user = evaluator.per_user()
    assert per_user[names.USER_INDEX].tolist() == list(range(100, 106))
    ndcg = per_user[names.metric_key(names.TEST, names.NDCG, 10)]
    assert torch.allclose(ndcg, (ranks <= 10).double() / torch.log2(ranks.double() + 1))
    assert evaluator.compute().keys() == {names.metric_key(names.TEST, names.NDCG, 10)}
    evaluator.reset()
    evaluator.update(scores, target, seen, inplace=True)
    assert torch.isinf(scores[:, 0]).all()
    assert evaluator.compute() == pytest.approx({names.metric_key(names.TEST, names.NDCG, 10): float(ndcg.mean())})


def test_evaluator_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        RankingEvaluator(stage=names.VAL, n_items=5, metrics=["nope"])
    with pytest.raises(ValueError):
        RankingEvaluator(stage=names.VAL, n_items=5, ks=())
    evaluator = RankingEvaluator(stage=names.VAL, n_items=5)
    with pytest.raises(ValueError):
        evaluator.update(torch.zeros(2, 4), torch.tensor([1, 2]), torch.zeros(2, 1, dtype=torch.long))


# --- exact multi-process semantics ---------------------------------------------------------------------------------


def test_merge_state_two_halves_equals_one_process() -> None:
    gen = torch.Generator().manual_seed(11)
    scores, target, seen = _random_batch(gen, batch=37, n_items=60, ties=True)
    whole = RankingEvaluator(stage=names.VAL, n_items=60)
    whole.update(scores, target, seen)
    rank0, rank1 = RankingEvaluator(stage=names.VAL, n_items=60), RankingEvaluator(stage=names.VAL, n_items=60)
    rank0.update(scores[:20], target[:20], seen[:20])
    rank1.update(scores[20:], target[20:], seen[20:])
    for key in rank0.metric_keys():
        rank0.metrics[key].merge_state(rank1.metrics[key])
    merged, expected = rank0.compute(), whole.compute()
    assert merged.keys() == expected.keys()
    for key, value in expected.items():
        assert merged[key] == pytest.approx(value, abs=1e-12), key
    for key, values in whole.per_user().items():
        assert torch.equal(rank0.per_user()[key].sort().values, values.sort().values)


def _fake_two_rank_sync(other: Callable[[], Tensor]) -> Callable[..., list[Tensor]]:
    """A ``dist_sync_fn`` standing in for ``all_gather`` in a 2-process world: [this rank's state, other's]."""

    def gather(tensor: Tensor, group: object = None) -> list[Tensor]:
        return [tensor, other()]

    return gather


@pytest.mark.parametrize("cls", list(RANK_METRICS.values()))
def test_simulated_distributed_sync_is_exact(cls: type[RankMetric]) -> None:
    gen = torch.Generator().manual_seed(13)
    ranks = torch.randint(1, 30, (41,), generator=gen)
    single, other = cls(k=10), cls(k=10)
    single.update(ranks)
    other.update(ranks[25:])
    synced = cls(
        k=10,
        dist_sync_fn=_fake_two_rank_sync(lambda: torch.cat(other.values)),
        distributed_available_fn=lambda: True,
    )
    synced.update(ranks[:10])
    synced.update(ranks[10:25])
    assert float(synced.compute()) == pytest.approx(float(single.compute()), abs=1e-12)
    assert torch.equal(synced.per_user(), single.per_user())  # rank-major order = original order here
    assert len(synced.values) == 2  # local state restored after the sync: accumulation can go on


def test_simulated_distributed_sync_coverage() -> None:
    items = torch.tensor([[1, 2], [3, 0], [2, 5], [5, 5]])
    single, other = ItemCoverage(n_items=6, k=2), ItemCoverage(n_items=6, k=2)
    single.update(items)
    other.update(items[2:])
    synced = ItemCoverage(
        n_items=6, k=2, dist_sync_fn=_fake_two_rank_sync(lambda: other.counts), distributed_available_fn=lambda: True
    )
    synced.update(items[:2])
    assert float(synced.compute()) == pytest.approx(float(single.compute()), abs=1e-12) == pytest.approx(4 / 6)


# --- Lightning integration -------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*LeafSpec")
def test_usable_from_lightning_module() -> None:
    pl = pytest.importorskip("pytorch_lightning")
    n_items = 12
    gen = torch.Generator().manual_seed(17)
    scores, target, seen = _random_batch(gen, batch=16, n_items=n_items, ties=True)

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)
            self.val_metrics = RankingEvaluator(stage=names.VAL, n_items=n_items, ks=(5, 10))

        def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
            self.val_metrics.update(*batch)

        def on_validation_epoch_end(self) -> None:
            self.log_dict(self.val_metrics.compute())
            self.val_metrics.reset()

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(scores, target, seen), batch_size=5)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(Module(), dataloaders=loader, verbose=False)
    reference = RankingEvaluator(stage=names.VAL, n_items=n_items, ks=(5, 10))
    reference.update(scores, target, seen)
    expected = reference.compute()
    logged = {key: float(value) for key, value in trainer.callback_metrics.items()}
    assert logged.keys() == expected.keys()
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, abs=1e-6), key  # Lightning logs float32
