"""Checkpoint files: written atomically, read with safe deserialisation, and found for ``ckpt_path=last``.

Writing: the bytes go to a hidden temporary file next to the target, are flushed and fsync'ed, then
``os.replace`` swaps them in (atomic on POSIX) and the folder entry is fsync'ed, so a crash or SIGKILL at any point
leaves either the previous checkpoint or the new one, never a partial file under the checkpoint's name.

Reading: ``torch.load(weights_only=True)`` only rebuilds tensors and plain containers (no pickled code runs);
``SAFE_GLOBALS`` lists the few extra classes a divrec checkpoint needs (none so far). A truncated, corrupt or
unsafe file becomes a one-line :class:`CheckpointError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.types import _PATH
from omegaconf import DictConfig, OmegaConf

from divrec import names
from divrec.errors import UserError

log = logging.getLogger(__name__)

SAFE_GLOBALS: list[Any] = []  # classes allowed in a checkpoint beyond tensors, numbers, strings and containers
LAST = "last"  # ckpt_path=last: this run folder's latest checkpoint
LAST_FILE = "last.ckpt"  # what conf/callbacks/default.yaml's last_checkpoint writes after every epoch


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or does not belong to the run resuming from it."""


def read_checkpoint(path: _PATH, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded with ``weights_only=True`` (``mmap``: tensors are read lazily)."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}; pass ckpt_path=<run folder>/checkpoints/<file>.ckpt")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # truncated, not a zip/pickle file, or a class outside the allowlist
        reason = f"{err.__class__.__name__}: {err}".splitlines()[0]
        raise CheckpointError(
            f"cannot read checkpoint {path} ({reason}); it is truncated, corrupt or not a divrec checkpoint: "
            "use another one (e.g. <run folder>/checkpoints/best.ckpt) or retrain"
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} holds no model weights ('state_dict'); is it a divrec/Lightning checkpoint?")
    return checkpoint


def write_atomically(path: _PATH, write: Callable[[Any], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it and move it to ``path`` in one step.

    If ``write`` fails (or the process dies) ``path`` keeps its previous content; the temporary file is removed
    (after a SIGKILL, the hidden ``.<name>.partial`` is overwritten by the next write).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_local(path: _PATH) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic, fsync'ed local writes and safe loading (for every Trainer path:
    ``fit(ckpt_path=...)``, ``validate/test(ckpt_path=...)``). Remote (fsspec) paths keep Lightning's own writer
    but are still loaded with ``weights_only=True``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_atomically(str(path).removeprefix("file://"), lambda f: torch.save(checkpoint, f))

    def load_checkpoint(
        self, path: _PATH, map_location: Any = lambda storage, loc: storage, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if not _is_local(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return read_checkpoint(str(path).removeprefix("file://"), map_location=map_location)


def resume_path(cfg: DictConfig) -> str | None:
    """The checkpoint ``divrec train`` resumes from: ``ckpt_path=last`` means ``last.ckpt`` in this run's checkpoint
    folder (``callbacks.last_checkpoint.dirpath``, else ``<output_dir>/checkpoints``; run again with
    ``hydra.run.dir=<run folder>`` to resume in place); if there is none yet, training starts from scratch (so a
    requeued job can always pass ``ckpt_path=last``). Any other value is a checkpoint file."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path:
        return None
    if ckpt_path != LAST:
        return str(ckpt_path)
    folder = OmegaConf.select(cfg, "callbacks.last_checkpoint.dirpath", default=None)
    last = Path(folder or Path(cfg.paths.output_dir) / "checkpoints") / LAST_FILE
    if last.is_file():
        return str(last)
    log.warning("ckpt_path=last: no %s yet, so training starts from scratch", last)
    return None


# What must match between a checkpoint's stored config and the run resuming from it (data locations may differ).
RESUME_GROUPS = ("data", "model", "task", "optim", "scheduler", "seed")
MACHINE_KEYS = {"data_dir", "mirror", "cache_dir", "download", "num_workers", "eval_batch_size"}


def check_resumable(cfg: DictConfig, checkpoint: dict[str, Any], path: str) -> None:
    """Refuse to resume ``path`` under a config that trains something else (another dataset, model, objective,
    optimizer, schedule or seed): the resumed run would silently differ from the interrupted one."""
    stored = checkpoint.get(names.CONFIG_KEY)
    if stored is None:
        return
    diffs = [
        f"{key}={old!r} there, {new!r} now"
        for group in RESUME_GROUPS
        if group in stored
        for key, old, new in _differences(group, stored[group], _plain(cfg.get(group)))
    ]
    if diffs:
        shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        raise CheckpointError(
            f"cannot resume {path} with a different config ({shown}); rerun with the interrupted run's overrides "
            "(its config.yaml is in its run folder) or start a new run without ckpt_path"
        )


def _differences(key: str, old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    """(key, stored, current) for every stored key whose value changed; keys only the current config has (options
    added to divrec after the checkpoint was written) are not compared."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            diff
            for k in sorted(old, key=str)
            if k not in MACHINE_KEYS
            for diff in _differences(f"{key}.{k}", old.get(k), new.get(k))
        ]
    return [] if old == new else [(key, old, new)]


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
