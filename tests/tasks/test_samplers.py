"""Negative samplers and sampled softmax with log-Q correction, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from divrec import names
from divrec.data.types import EvalSplit, ProcessedData
from divrec.models import TransformerBackbone
from divrec.tasks import NextItemBCE, NextItemSampledSoftmax, PopularitySampler, UniformSampler
from divrec.tasks.base import TaskConfigError
from divrec.tasks.samplers import SamplerError

# item table: row 0 = padding, items 1..4
TABLE = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [0.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
HIDDEN = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
TARGETS = torch.tensor([1, 3])
NEG = torch.tensor([2, 3, 4, 2])  # shared; 3 is an accidental hit for row 2, 2 is drawn twice


def popularity(counts: list[float], alpha: float = 1.0) -> PopularitySampler:
    sampler = PopularitySampler(alpha=alpha)
    sampler.set_counts(torch.tensor(counts, dtype=torch.float64))
    return sampler


def test_logq_sampled_softmax_matches_a_hand_computed_case() -> None:
    # q = counts / 8 = [0, 1/2, 1/4, 1/8, 1/8]; expected counts Q = 4 q = [-, 2, 1, 1/2, 1/2]
    task = NextItemSampledSoftmax(n_negatives=4, sampler=popularity([0, 4, 2, 1, 1]))
    loss = task.sampled_loss(HIDDEN, TARGETS, NEG, TABLE[TARGETS], TABLE[NEG], n_items=4)
    ln2, e = math.log(2), math.e
    # row 1: s_pos = 1 - ln 2; negatives 2, 3, 4, 2 → 2 - ln 1, 0 + ln 2, 1 + ln 2, 2 - ln 1
    row1 = -(1 - ln2) + math.log(e / 2 + 2 * e**2 + 2 + 2 * e)
    # row 2: s_pos = 2 + ln 2; negatives 2, 4, 2 (3 removed) → 0, -2 + ln 2, 0
    row2 = -(2 + ln2) + math.log(2 * e**2 + 2 + 2 * math.exp(-2))
    assert loss.item() == pytest.approx((row1 + row2) / 2, abs=1e-12)


def test_without_correction_the_same_case_is_plain_sampled_softmax() -> None:
    task = NextItemSampledSoftmax(n_negatives=4, sampler=popularity([0, 4, 2, 1, 1]), logq_correction=False)
    loss = task.sampled_loss(HIDDEN, TARGETS, NEG, TABLE[TARGETS], TABLE[NEG], n_items=4)
    e = math.e
    row1 = -1 + math.log(e + 2 * e**2 + 1 + e)
    row2 = -2 + math.log(e**2 + 2 + math.exp(-2))
    assert loss.item() == pytest.approx((row1 + row2) / 2, abs=1e-12)


def test_uniform_logq_is_a_constant_that_cancels() -> None:
    on = NextItemSampledSoftmax(n_negatives=4, sampler=UniformSampler())
    off = NextItemSampledSoftmax(n_negatives=4, sampler=UniformSampler(), logq_correction=False)
    args = (HIDDEN, TARGETS, NEG, TABLE[TARGETS], TABLE[NEG], 4)
    torch.testing.assert_close(on.sampled_loss(*args), off.sampled_loss(*args))


def test_per_position_negatives_equal_the_shared_case_when_every_row_draws_the_same_set() -> None:
    task = NextItemSampledSoftmax(n_negatives=4, sampler=popularity([0, 4, 2, 1, 1]), share="position")
    rows = NEG.expand(2, -1)  # (N, n): both positions drew 2, 3, 4, 2
    per_row = task.sampled_loss(HIDDEN, TARGETS, rows, TABLE[TARGETS], TABLE[rows], n_items=4)
    shared = task.sampled_loss(HIDDEN, TARGETS, NEG, TABLE[TARGETS], TABLE[NEG], n_items=4)
    torch.testing.assert_close(per_row, shared)


def test_per_position_negatives_score_each_row_against_its_own_set() -> None:
    task = NextItemSampledSoftmax(n_negatives=2, sampler=UniformSampler(), share="position")
    rows = torch.tensor([[2, 1], [4, 2]])  # row 1 hits its positive (1): removed; row 2: negatives 4 and 2
    loss = task.sampled_loss(HIDDEN, TARGETS, rows, TABLE[TARGETS], TABLE[rows], n_items=4)
    e = math.e
    row1 = -1 + math.log(e + e**2)  # s_pos = 1, negative 2: 2
    row2 = -2 + math.log(e**2 + math.exp(-2) + 1)  # s_pos = 2, negatives 4: -2, 2: 0
    assert loss.item() == pytest.approx((row1 + row2) / 2, abs=1e-12)


def test_share_is_checked() -> None:
    with pytest.raises(TaskConfigError, match=r"task\.share='user' is not one of \['batch', 'position'\]"):
        NextItemSampledSoftmax(share="user")


def test_popularity_sampler_draws_by_count_to_the_alpha() -> None:
    sampler = popularity([0, 9, 0, 4, 1], alpha=0.5)  # weights 3, 0, 2, 1 → q = 1/2, 0, 1/3, 1/6
    torch.manual_seed(0)
    ids = sampler.sample((120_000,), 4, torch.device("cpu"))
    freq = torch.bincount(ids, minlength=5).double() / len(ids)
    torch.testing.assert_close(freq, torch.tensor([0, 1 / 2, 0, 1 / 3, 1 / 6], dtype=torch.float64), atol=0.006, rtol=0)
    torch.testing.assert_close(sampler.log_q(torch.tensor([1, 3, 4]), 4).double().exp(),
                               torch.tensor([1 / 2, 1 / 3, 1 / 6], dtype=torch.float64))


def test_popularity_counts_come_from_the_training_sequences() -> None:
    empty = EvalSplit(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    data = ProcessedData(n_users=2, n_items=4, train_offsets=np.array([0, 3, 5]), train_items=np.array([1, 1, 3, 1, 4]),
                         val=empty, test=empty, item_raw_ids=np.array(["", "a", "b", "c", "d"]),
                         user_raw_ids=np.array(["u", "v"]))
    task = NextItemSampledSoftmax(n_negatives=4, sampler=PopularitySampler(alpha=1.0))
    task.bind(TransformerBackbone(n_items=4, max_len=2, hidden_size=4, n_heads=1, n_layers=1, ffn_size=4), data)
    q = task.sampler.log_q(torch.arange(1, 5), 4).exp()
    torch.testing.assert_close(q, torch.tensor([3 / 5, 0, 1 / 5, 1 / 5], dtype=torch.float64))


def test_popularity_sampler_without_data_is_a_clear_error() -> None:
    with pytest.raises(SamplerError, match="bind"):
        PopularitySampler().sample((3,), 4, torch.device("cpu"))
    with pytest.raises(SamplerError, match="no item"):
        popularity([0, 0, 0])


def test_sampled_objectives_train_through_a_backbone_with_either_sampler() -> None:
    torch.manual_seed(0)
    model = TransformerBackbone(n_items=4, max_len=4, hidden_size=8, n_heads=2, n_layers=1, ffn_size=16)
    batch = {names.ITEMS: torch.tensor([[0, 1, 2, 3, 4], [1, 3, 1, 3, 2]])}
    for task in (NextItemSampledSoftmax(8, popularity([0, 1, 2, 3, 4])), NextItemBCE(2, popularity([0, 1, 1, 1, 1]))):
        loss = task.loss(model, batch)[names.LOSS]
        loss.backward()
        assert torch.isfinite(loss)
    assert "sampler.cdf" not in NextItemSampledSoftmax(8, PopularitySampler()).state_dict()  # not in checkpoints
