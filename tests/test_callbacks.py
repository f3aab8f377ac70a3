"""``divrec.callbacks``: random states survive a (safe) checkpoint round trip; a resumed timeline lists each epoch
once."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from divrec.callbacks import RandomState, ValidationTimeline
from divrec.checkpointing import AtomicCheckpointIO


def draws() -> tuple[Any, ...]:
    cuda = torch.rand(3, device="cuda").tolist() if torch.cuda.is_available() else None  # CUDA: where there is one
    return random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist(), cuda


def test_random_states_round_trip_through_a_safely_loaded_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    np.random.randn()  # numpy caches the second Gaussian of a pair: part of its state
    draws()  # initialises CUDA where there is one
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {}, "callbacks": {"RandomState": RandomState().state_dict()}}, tmp_path / "c")
    expected = draws()
    assert draws() != expected  # the generators moved on
    RandomState().load_state_dict(io.load_checkpoint(tmp_path / "c")["callbacks"]["RandomState"])
    assert draws() == expected


def test_resumed_timeline_drops_the_epochs_it_redoes(tmp_path: Path) -> None:
    path = tmp_path / "timeline.jsonl"
    path.write_text("".join(json.dumps({"epoch": e, "val/ndcg@10": e / 10}) + "\n" for e in range(3)))
    trainer: Any = SimpleNamespace(is_global_zero=True, current_epoch=2)  # resumed from epoch 1's checkpoint
    ValidationTimeline(str(path)).on_train_start(trainer, None)  # type: ignore[arg-type]
    assert [json.loads(line)["epoch"] for line in path.read_text().splitlines()] == [0, 1]
