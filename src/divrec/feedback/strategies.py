"""How a deployed model is updated when a window of feedback arrives: one class per strategy, chosen in config.

Each strategy gets the checkpoint of the model served so far and the window [lo, hi) of new interactions, and
returns the model to serve from ``hi`` on. The loop times ``update`` (the strategy's cost) and checkpoints its result.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from divrec.feedback.rounds import known_before, recent_window
from divrec.lit.module import SeqRecModule

if TYPE_CHECKING:
    from divrec.feedback.loop import FeedbackRunner


class UpdateStrategy:
    """Base class; ``name`` labels the strategy's rows, curves and checkpoints."""

    name: ClassVar[str] = "strategy"

    def update(self, runner: FeedbackRunner, previous: Path, lo: float, hi: float) -> SeqRecModule:
        raise NotImplementedError


@dataclasses.dataclass(kw_only=True)
class NoUpdate(UpdateStrategy):
    """Keep serving the initial model: its weights never see the feedback, though its inputs (histories) do."""

    name: ClassVar[str] = "no_update"

    def update(self, runner: FeedbackRunner, previous: Path, lo: float, hi: float) -> SeqRecModule:
        return runner.restore(previous)


@dataclasses.dataclass(kw_only=True)
class Incremental(UpdateStrategy):
    """Fine-tune the previous checkpoint for ``epochs`` epochs on the window's users only: their new interactions
    as targets, with up to ``context`` older items before them as input. Cost grows with the window, not with
    everything seen so far."""

    epochs: int = 3
    context: int = 50
    name: ClassVar[str] = "incremental"

    def update(self, runner: FeedbackRunner, previous: Path, lo: float, hi: float) -> SeqRecModule:
        warm = runner.restore(previous)
        runner.fit(warm, recent_window(runner.seqs, lo, hi, self.context), self.epochs)
        return warm


@dataclasses.dataclass(kw_only=True)
class FullRetrain(UpdateStrategy):
    """Train a fresh model on everything before ``hi`` for ``epochs`` epochs (None = as long as the initial model)."""

    epochs: int | None = None
    name: ClassVar[str] = "full_retrain"

    def update(self, runner: FeedbackRunner, previous: Path, lo: float, hi: float) -> SeqRecModule:
        fresh = runner.new_model()
        runner.fit(fresh, known_before(runner.seqs, hi), self.epochs or runner.initial_epochs)
        return fresh
