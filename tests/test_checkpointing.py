"""``divrec.checkpointing``: atomic writes leave the old file or the new one, never a partial one; loading runs no
pickled code and turns a bad file into one clear error; ``ckpt_path=last`` finds the run folder's last.ckpt."""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from runhelpers import leftovers

from divrec.checkpointing import (
    LAST_FILE,
    AtomicCheckpointIO,
    CheckpointError,
    check_resumable,
    read_checkpoint,
    resume_path,
    write_atomically,
)

CHECKPOINT = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3, "loops": {"a": [1, (2, None)]}}


class Boom(RuntimeError):
    pass


def fail_after_some_bytes(f: io.BufferedWriter) -> None:
    f.write(b"partial bytes")
    raise Boom("disk full")


def test_atomic_write_replaces_the_file_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "ckpts" / "last.ckpt"
    write_atomically(target, lambda f: f.write(b"first"))
    write_atomically(target, lambda f: f.write(b"second"))
    assert target.read_bytes() == b"second"
    assert leftovers(tmp_path / "ckpts") == ["last.ckpt"]


def test_failed_write_keeps_the_previous_file_and_leaves_no_partial_one(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    with pytest.raises(Boom):
        write_atomically(target, fail_after_some_bytes)
    assert leftovers(tmp_path) == []  # nothing, not even an empty or partial last.ckpt
    target.write_bytes(b"previous")
    with pytest.raises(Boom):
        write_atomically(target, fail_after_some_bytes)
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == ["last.ckpt"]


def test_a_write_killed_midway_leaves_the_old_file_and_the_next_write_cleans_up(tmp_path: Path) -> None:
    """What SIGKILL during a save leaves: the previous last.ckpt intact plus a hidden partial file, which is
    neither read as a checkpoint nor left behind by the next save."""
    target = tmp_path / LAST_FILE
    write_atomically(target, lambda f: torch.save(CHECKPOINT, f))
    (tmp_path / f".{LAST_FILE}.partial").write_bytes(b"half a checkpoint")  # the killed write
    assert read_checkpoint(target)["epoch"] == 3
    write_atomically(target, lambda f: torch.save({**CHECKPOINT, "epoch": 4}, f))
    assert read_checkpoint(target)["epoch"] == 4
    assert leftovers(tmp_path) == [LAST_FILE]


def test_checkpoint_io_round_trip_and_failed_save(tmp_path: Path) -> None:
    io_ = AtomicCheckpointIO()
    path = tmp_path / "run" / "best.ckpt"
    io_.save_checkpoint(CHECKPOINT, path)
    loaded = io_.load_checkpoint(path)
    assert torch.equal(loaded["state_dict"]["w"], CHECKPOINT["state_dict"]["w"])
    assert loaded["loops"] == CHECKPOINT["loops"] and loaded["epoch"] == 3
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):  # torch.save cannot pickle a lambda
        io_.save_checkpoint({**CHECKPOINT, "bad": lambda: 0}, path)
    assert torch.equal(io_.load_checkpoint(path)["state_dict"]["w"], CHECKPOINT["state_dict"]["w"])
    assert leftovers(tmp_path / "run") == ["best.ckpt"]


def test_truncated_or_foreign_files_are_one_clear_error_on_both_read_paths(tmp_path: Path) -> None:
    whole = tmp_path / "whole.ckpt"
    torch.save(CHECKPOINT, whole)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(whole.read_bytes()[:-200])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    empty = tmp_path / "empty.ckpt"
    empty.touch()
    for path in (truncated, garbage, empty):
        for read in (read_checkpoint, AtomicCheckpointIO().load_checkpoint):  # divrec's and Lightning's path
            with pytest.raises(CheckpointError, match="cannot read checkpoint") as err:
                read(path)
            assert str(path) in str(err.value) and "\n" not in str(err.value)
    weights_only = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, weights_only)
    with pytest.raises(CheckpointError, match="holds no model weights"):
        read_checkpoint(weights_only)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.ckpt")


class Payload:
    """Unpickling this would run code (create a file) if the loader allowed arbitrary globals."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_loading_never_runs_pickled_code(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.ckpt"
    torch.save({**CHECKPOINT, "payload": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        AtomicCheckpointIO().load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: an unrestricted load would have run it
    assert marker.exists()


def test_ckpt_path_last_means_this_run_folders_last_checkpoint(tmp_path: Path, caplog: Any) -> None:
    def cfg(ckpt_path: Any, dirpath: str | None = None) -> Any:
        node: dict[str, Any] = {"ckpt_path": ckpt_path, "paths": {"output_dir": str(tmp_path / "run")}}
        if dirpath:
            node["callbacks"] = {"last_checkpoint": {"dirpath": dirpath}}
        return OmegaConf.create(node)

    assert resume_path(cfg(None)) is None
    assert resume_path(cfg("/some/file.ckpt")) == "/some/file.ckpt"
    with caplog.at_level(logging.WARNING):
        assert resume_path(cfg("last")) is None  # nothing yet: train from scratch, and say so
    assert "training starts from scratch" in caplog.text
    last = tmp_path / "run" / "checkpoints" / LAST_FILE
    last.parent.mkdir(parents=True)
    last.touch()
    assert resume_path(cfg("last")) == str(last)
    elsewhere = tmp_path / "ckpts" / LAST_FILE
    elsewhere.parent.mkdir()
    elsewhere.touch()
    assert resume_path(cfg("last", dirpath=str(elsewhere.parent))) == str(elsewhere)


def test_resumable_only_under_the_same_training_config() -> None:
    stored = {
        "seed": 0,
        "data": {"batch_size": 32, "data_dir": "/a", "source": {"n_users": 60}},
        "model": {"hidden_size": 16},
        "trainer": {"max_epochs": 2},
    }
    checkpoint = {"divrec_config": stored}
    same_elsewhere = {**stored, "data": {**stored["data"], "data_dir": "/b"}, "trainer": {"max_epochs": 9}}
    check_resumable(OmegaConf.create(same_elsewhere), checkpoint, "x.ckpt")  # data location, epochs: fine
    check_resumable(OmegaConf.create({"seed": 1}), {"state_dict": {}}, "old.ckpt")  # no stored config: no check
    newer = {**stored, "model": {"hidden_size": 16, "option_added_later": 1}, "rerank": {"lambda_": 0.5}}
    check_resumable(OmegaConf.create(newer), checkpoint, "x.ckpt")  # keys the checkpoint predates are not compared
    other = {**stored, "data": {**stored["data"], "source": {"n_users": 61}}}
    with pytest.raises(CheckpointError, match=r"data\.source\.n_users=60 there, 61 now"):
        check_resumable(OmegaConf.create(other), checkpoint, "x.ckpt")
