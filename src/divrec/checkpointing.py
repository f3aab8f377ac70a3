"""Checkpoint files: written atomically, read with safe deserialisation, and found for ``ckpt_path=last``.

Writing: the bytes go to a hidden temporary file next to the target, are flushed and fsync'ed, then
``os.replace`` swaps them in (atomic on POSIX) and the folder entry is fsync'ed, so a crash or SIGKILL at any point
leaves either the previous checkpoint or the new one, never a partial file under the checkpoint's name.

Reading: ``torch.load(weights_only=True)`` only rebuilds tensors and plain containers (no pickled code runs);
``SAFE_GLOBALS`` lists the few extra classes a divrec checkpoint needs (none so far). A truncated, corrupt or
unsafe file becomes a one-line :class:`CheckpointError`, and so does a file of the wrong kind (a warm-start
``backbone.pt``, a checkpoint without divrec's stored config, one trained on another catalog).
"""

from __future__ import annotations

import logging
import os
import re
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
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # torch colours parts of its load errors

SAFE_GLOBALS: list[Any] = []  # classes allowed in a checkpoint beyond tensors, numbers, strings and containers
LAST = "last"  # ckpt_path=last: this run folder's latest checkpoint
LAST_FILE = "last.ckpt"  # what conf/callbacks/default.yaml's last_checkpoint writes after every epoch
PARTIAL_GLOB = ".*.partial"  # write_atomically's temporaries (.<name>.partial), left behind by a killed write


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
        reason = f"{err.__class__.__name__}: {load_failure(err)}"
        raise CheckpointError(
            f"cannot read checkpoint {path} ({reason}); it is truncated, corrupt or not a divrec checkpoint: "
            "use another one (e.g. <run folder>/checkpoints/best.ckpt) or retrain"
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} holds no model weights ('state_dict'); is it a divrec/Lightning checkpoint?")
    return checkpoint


def load_failure(err: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in a few words: the unpickler's own reason (e.g. ``Unsupported
    operand 205`` for random bytes, ``Unsupported global: GLOBAL datetime.date ...``) without torch's advice to
    retry with ``weights_only=False``, which would run whatever code the file carries."""
    text = ANSI_ESCAPE.sub("", str(err))
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n")[0]
        return " ".join(detail.split(". ")[0].split()).rstrip(".") or "not a weights-only file"
    if text.startswith("Weights only load failed"):
        return "not a weights-only file"
    return " ".join(text.split("\n")[0].split())


def write_atomically(path: _PATH, write: Callable[[Any], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it and move it to ``path`` in one step.

    If ``write`` fails (or the process dies) ``path`` keeps its previous content; the temporary file is removed
    (after a SIGKILL, the hidden ``.<name>.partial`` is removed when a run next starts there: ``remove_partials``).
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
    optimizer, schedule or seed): the resumed run would silently differ from the interrupted one. A warm-start
    backbone file has no trainer state to resume: refused with how to use it (``init_from=``)."""
    stored = checkpoint.get(names.CONFIG_KEY)
    if stored is None:
        if is_backbone_file(checkpoint):
            raise CheckpointError(
                f"ckpt_path={path} is a warm-start backbone file (backbone weights and item ids, no trainer state) "
                f"and cannot be resumed: start from its weights with init_from={path}; ckpt_path= resumes a run from "
                "<run folder>/checkpoints/last.ckpt"
            )
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


def is_backbone_file(checkpoint: dict[str, Any]) -> bool:
    """Whether ``checkpoint`` is a warm-start backbone file (``models.warmstart.save_backbone``, ``backbone.pt``)."""
    from divrec.models.warmstart import FORMAT

    return checkpoint.get("format") == FORMAT


def stored_config(checkpoint: dict[str, Any], path: str) -> dict[str, Any]:
    """The resolved config of the run that wrote ``checkpoint``, from which eval and recommend rebuild its data,
    model and objective. A file without one is refused, saying what it is (never a silent fall back to the default
    dataset): a warm-start backbone file, or a Lightning checkpoint not written by divrec."""
    stored = checkpoint.get(names.CONFIG_KEY)
    if isinstance(stored, dict):
        return stored
    if is_backbone_file(checkpoint):
        raise CheckpointError(
            f"{path} is a warm-start backbone file (backbone weights and item ids, no run config), not a run "
            f"checkpoint: train from it with `divrec train init_from={path}`, or pass the checkpoint of the run that "
            "wrote it (<run folder>/checkpoints/best.ckpt)"
        )
    raise CheckpointError(
        f"{path} has weights but no divrec run config ('{names.CONFIG_KEY}'), so the data, model and objective to "
        "rebuild are unknown: pass a checkpoint written by divrec train (<run folder>/checkpoints/best.ckpt)"
    )


def load_weights(module: torch.nn.Module, checkpoint: dict[str, Any], path: str, n_items: int) -> None:
    """Load ``checkpoint``'s weights into ``module``, built for data of ``n_items`` items, once the data is loaded
    and before anything is written. A checkpoint trained on another catalog is refused with both sizes; one that
    does not fit the model otherwise, with the first tensor that differs."""
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(_misfit(module.state_dict(), checkpoint["state_dict"], path, n_items)) from err


def _misfit(ours: dict[str, Any], theirs: dict[str, Any], path: str, n_items: int) -> str:
    from divrec.models.tower import ITEM_TABLE

    shapes = {
        key: (tuple(theirs[key].shape), tuple(tensor.shape))
        for key, tensor in ours.items()
        if isinstance(theirs.get(key), torch.Tensor) and theirs[key].shape != tensor.shape
    }
    trained = _trained_items(shapes, n_items, f"backbone.{ITEM_TABLE}")
    if trained is not None:
        return (
            f"checkpoint {path} was trained on a catalog of {trained} items but this data has {n_items}: evaluate "
            "it on the data it was trained on (drop data= and data.* overrides: the checkpoint's own data config is "
            "used) or train a model on this data (divrec train data=...)"
        )
    fix = "drop the model= / model.* / task= overrides: the checkpoint's own config is used"
    if shapes:
        key, (theirs_shape, ours_shape) = next(iter(shapes.items()))
        return (
            f"checkpoint {path} does not fit the model built for it: {key} has shape {theirs_shape} in the "
            f"checkpoint but {ours_shape} in this model; {fix}"
        )
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    return (
        f"checkpoint {path} does not fit the model built for it: tensors missing from it {missing[:3]}, extra in "
        f"it {extra[:3]}; {fix}"
    )


def _trained_items(shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]], n_items: int, table: str) -> int | None:
    """The checkpoint's catalog size, from the tensors whose shape differs: the item table's rows (n_items + a fixed
    number of special rows), else an axis of width n_items + 1 (a closed-form model's item ids); None: neither."""
    if table in shapes:
        theirs, ours = shapes[table]
        return theirs[0] - ours[0] + n_items
    for theirs, ours in shapes.values():
        if len(theirs) == len(ours):
            for a, b in zip(theirs, ours, strict=True):
                if b == n_items + 1 and a != b:
                    return a - 1
    return None


def remove_partials(cfg: DictConfig) -> list[Path]:
    """Remove the ``.<name>.partial`` temporaries a killed :func:`write_atomically` left in this run's folder and
    its checkpoint folders; logs one line when there were some."""
    output_dir = Path(cfg.paths.output_dir)
    folders = {output_dir, output_dir / "checkpoints"}
    for callback in (cfg.get("callbacks") or {}).values():
        dirpath = callback.get("dirpath") if isinstance(callback, DictConfig) else None
        if dirpath:
            folders.add(Path(str(dirpath)))
    removed = [p for folder in sorted(folders) if folder.is_dir() for p in sorted(folder.glob(PARTIAL_GLOB))]
    for partial in removed:
        partial.unlink(missing_ok=True)
    if removed:
        log.warning("removed %d unfinished checkpoint write(s) of a killed run: %s", len(removed), removed)
    return removed
