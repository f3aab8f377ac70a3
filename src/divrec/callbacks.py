"""Small callbacks divrec adds to Lightning's own: wall-clock bookkeeping of each validation, and the random states
that make a resumed run continue exactly like an uninterrupted one."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
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
    positions) seen in the epoch, and both per second of ``epoch_train_s``. A resumed run appends to the file; its
    elapsed times restart from its own process and fit start.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._fit_start = self._epoch_start = self._val_start = time.perf_counter()
        self.train_seconds = 0.0
        self._sequences = 0
        self._positions: torch.Tensor | int = 0  # summed on the batch's device: no host sync per step

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A resumed run continues the file: rows of epochs it is about to redo (written after its checkpoint,
        before the interruption) are dropped."""
        if not trainer.is_global_zero or not self.path.is_file():
            return
        rows = self.path.read_text().splitlines()
        kept = [row for row in rows if row.strip() and json.loads(row)["epoch"] < trainer.current_epoch]
        if len(kept) < len(rows):
            self.path.write_text("".join(f"{row}\n" for row in kept))

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


class RandomState(pl.Callback):
    """Stores the Python, numpy, torch and CUDA random states in every checkpoint and restores them when training
    resumes from it (Lightning saves neither), so dropout masks and sampled negatives after a resume are the ones
    the uninterrupted run would have drawn. The data order needs no state: it is a function of (seed, epoch).

    In a multi-process run the checkpoint carries rank 0's states, which every rank restores.
    """

    def state_dict(self) -> dict[str, Any]:
        kind, key, pos, has_gauss, gauss = np.random.get_state()
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": {
                "kind": kind,
                "key": torch.from_numpy(key.astype(np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "gauss": float(gauss),
            },
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version, internal, gauss_next = state_dict["python"]
        random.setstate((version, tuple(internal), gauss_next))
        n = state_dict["numpy"]
        np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            for device, cuda_state in enumerate(state_dict["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(cuda_state, device)
