"""A test-only callback for the kill-and-resume test (imported by the ``divrec`` subprocess through PYTHONPATH).

At a chosen epoch and batch it writes a marker file and then waits, so the test can SIGKILL the run at a known point
in the middle of an epoch instead of sleeping and hoping. It gives up (exit 3) after ``max_wait_s`` so that a test
that failed to kill it leaves no process behind.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class PauseAt(pl.Callback):
    def __init__(self, epoch: int, batch: int, marker: str, max_wait_s: float = 120.0) -> None:
        self.epoch, self.batch, self.marker, self.max_wait_s = epoch, batch, Path(marker), max_wait_s

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.current_epoch != self.epoch or batch_idx != self.batch:
            return
        self.marker.write_text(str(os.getpid()))
        deadline = time.monotonic() + self.max_wait_s
        while time.monotonic() < deadline:
            time.sleep(0.02)
        os._exit(3)
