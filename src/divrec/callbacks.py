"""Small callbacks divrec adds to Lightning's own: wall-clock bookkeeping of each validation."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn

from divrec import names


def process_elapsed() -> float:
    """Seconds since this process started (Linux /proc; elsewhere since divrec was imported)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


_IMPORTED = time.monotonic()


class ValidationTimeline(pl.Callback):
    """After every validation during fit, append one JSON line: epoch, wall seconds since the process started
    (``process_elapsed_s``: imports and data loading included) and since fit started (``fit_elapsed_s``; the one to
    read in a multirun, whose jobs share a process), this epoch's train/val seconds, and the val metrics.

    The file (``timeline.jsonl`` in the run folder) answers "how long until val NDCG@10 first reached x". Each row
    also carries this process's training throughput: ``train_sequences`` and ``train_positions`` (non-padding input
    positions) seen in the epoch, and both per second of ``epoch_train_s``.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._fit_start = self._epoch_start = self._val_start = time.perf_counter()
        self.train_seconds = 0.0
        self._sequences = 0
        self._positions: torch.Tensor | int = 0  # summed on the batch's device: no host sync per step

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._sequences, self._positions = 0, 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        items = batch[names.ITEMS]  # (B, L)
        self._sequences += items.shape[0]
        self._positions = self._positions + (items != 0).sum()

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = time.perf_counter()
        self.train_seconds = self._val_start - self._epoch_start  # Lightning validates inside the train epoch

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != TrainerFn.FITTING:
            return
        row = {
            "epoch": trainer.current_epoch,
            "process_elapsed_s": round(process_elapsed(), 3),
            "fit_elapsed_s": round(time.perf_counter() - self._fit_start, 3),
            "epoch_train_s": round(self.train_seconds, 3),
            "val_s": round(time.perf_counter() - self._val_start, 3),
            **self._throughput(),
        }
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(names.VAL + "/")})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def _throughput(self) -> dict[str, float]:
        positions = int(self._positions)
        seconds = max(self.train_seconds, 1e-9)
        return {
            "train_sequences": self._sequences,
            "train_positions": positions,
            "sequences_per_s": round(self._sequences / seconds, 1),
            "positions_per_s": round(positions / seconds, 1),
        }
