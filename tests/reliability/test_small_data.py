"""Too little data is said in data terms (how many users have how many interactions, the minimum the split needs,
the option that would help), before any trainer or device count is involved; nothing is cached."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from runhelpers import leftovers

from divrec import cli
from divrec.data import prepare
from divrec.data.datamodule import SeqDataModule
from divrec.data.distributed import EvalShardBatchSampler, ShardError
from divrec.data.errors import DataError
from divrec.data.preprocess import Preprocessing
from divrec.data.sources import TabularInteractions
from divrec.data.splits import GlobalTemporal, LeaveOneOut, Split


def write_csv(path: Path, sequences: dict[str, list[str]], rating: int = 5) -> TabularInteractions:
    """One row per (user, item) in order, timestamps increasing; every rating = ``rating``."""
    rows = [f"{u},{i},{t},{rating}" for t, (u, i) in enumerate((u, i) for u, seq in sequences.items() for i in seq)]
    path.write_text("user_id,item_id,timestamp,rating\n" + "\n".join(rows) + "\n")
    return TabularInteractions(path=str(path), time_col="timestamp", rating_col="rating")


def prepare_error(
    tmp_path: Path, sequences: dict[str, list[str]], preprocessing: Preprocessing, split: Split | None = None
) -> str:
    source = write_csv(tmp_path / "i.csv", sequences)
    with pytest.raises(DataError) as err:
        prepare.prepare_dataset(source, preprocessing, split or LeaveOneOut(), tmp_path, None, tmp_path / "cache")
    assert leftovers(tmp_path / "cache") == []  # nothing cached for a dataset a run cannot use
    assert "\n" not in str(err.value) and "devices" not in str(err.value)
    return str(err.value)


def test_one_row(tmp_path: Path) -> None:
    message = prepare_error(tmp_path, {"u": ["a"]}, Preprocessing())
    assert message == (
        "too little data for leave-one-out (data.split): no user has the 3 interactions it needs (a training, a "
        "validation and a test item); after preprocessing 1 user has 1 interaction (most: 1); add interactions "
        "(at least 3 per user)"
    )


def test_one_or_two_items_per_user(tmp_path: Path) -> None:
    sequences = {"u1": ["a"], "u2": ["b"], "u3": ["a"], "u4": ["a", "b"], "u5": ["c", "a"]}
    message = prepare_error(tmp_path, sequences, Preprocessing())
    assert "after preprocessing 3 users have 1 interaction, 2 have 2 (most: 2)" in message


def test_k_core_that_removes_everything(tmp_path: Path) -> None:
    sequences = {f"u{k}": ["a", "b", "c"] for k in range(4)}
    message = prepare_error(tmp_path, sequences, Preprocessing(user_core=5))
    assert message.startswith(
        "no interactions left after preprocessing: the k-core filter (data.preprocessing.user_core=5, item_core=0) "
        "removes all 12 interactions: before it, 0 of 4 users have >= 5 interactions (most: 3)"
    )
    assert message.endswith("lower data.preprocessing.user_core / data.preprocessing.item_core (0 = off)")


def test_item_core_that_leaves_users_too_short(tmp_path: Path) -> None:
    sequences = {"u1": ["a", "b", "x"], "u2": ["a", "b", "y"], "u3": ["a", "z", "w"]}  # x, y, z, w: one user each
    message = prepare_error(tmp_path, sequences, Preprocessing(item_core=2))
    assert "after preprocessing 1 user has 1 interaction, 2 have 2 (most: 2)" in message
    assert "keep more per user (lower data.preprocessing.item_core (now 2)) or add interactions" in message


def test_duplicates_that_leave_users_too_short(tmp_path: Path) -> None:
    message = prepare_error(tmp_path, {"u1": ["a", "a", "a", "b"], "u2": ["c", "c", "c"]}, Preprocessing())
    assert "set data.preprocessing.drop_duplicates=false (keeps repeated interactions)" in message


def test_rating_threshold_above_every_rating(tmp_path: Path) -> None:
    message = prepare_error(tmp_path, {"u": ["a", "b", "c"]}, Preprocessing(rating_threshold=6))
    assert message == (
        "no interactions left after preprocessing: data.preprocessing.rating_threshold=6 keeps none of the 3 "
        "interactions (ratings 5..5); lower it or set data.preprocessing.rating_threshold=null"
    )


def test_global_temporal_without_validation_rows(tmp_path: Path) -> None:
    sequences = {f"u{k}": ["a", "b"] for k in range(3)}  # min_history=5: no row anywhere
    message = prepare_error(tmp_path, sequences, Preprocessing(), GlobalTemporal(min_history=5))
    assert message.startswith("too little data for the global temporal split (data.split): 0 validation and 0 test")
    assert "lower data.split.min_history" in message


def test_a_legacy_cache_without_evaluation_rows_gets_the_data_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache written before the check existed (simulated by switching it off) is refused in the same terms."""
    source = write_csv(tmp_path / "i.csv", {"u": ["a", "b"]})
    with monkeypatch.context() as patch:
        patch.setattr(prepare, "check_evaluable", lambda *args, **kwargs: None)
        prepare.prepare_dataset(source, Preprocessing(), LeaveOneOut(), tmp_path, None, tmp_path / "cache")
    assert len(leftovers(tmp_path / "cache")) == 1
    with pytest.raises(DataError, match=r"^too little data for leave-one-out .*1 user has 2 interactions"):
        prepare.prepare_dataset(source, Preprocessing(), LeaveOneOut(), tmp_path, None, tmp_path / "cache")


def test_no_training_window(tmp_path: Path) -> None:
    """3 interactions per user are evaluated, but leave one training item each: nothing to train on."""
    source = write_csv(tmp_path / "i.csv", {f"u{k}": ["a", "b", "c"] for k in range(4)})
    datamodule = SeqDataModule(source, Preprocessing(), LeaveOneOut(), data_dir=str(tmp_path), max_len=4)
    with pytest.raises(DataError, match=r"^too little data to train: .* the longest has 1 \(leave-one-out needs 4"):
        datamodule.train_dataloader()
    assert len(datamodule.val_dataloader()) == 1  # evaluation itself is fine (e.g. a closed-form baseline)


def test_no_evaluation_rows_on_any_number_of_processes_is_a_data_message() -> None:
    for world in (1, 2):
        with pytest.raises(ShardError, match=r"^no val users to evaluate: no user has enough interactions") as err:
            EvalShardBatchSampler(0, 8, rank=0, world_size=world, what="val users")
        assert "devices" not in str(err.value)


@pytest.mark.parametrize("trainer", ["debug", "ddp_cpu"])
def test_cli_reports_the_data_before_devices(
    trainer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One interaction, one or two processes: the data message, exit 2, no cache (before: 'use fewer devices')."""
    write_csv(tmp_path / "i.csv", {"u": ["a"]})
    monkeypatch.setattr(sys, "argv", [
        "divrec", "train", "data=csv", f"data.source.path={tmp_path / 'i.csv'}", f"trainer={trainer}",
        "trainer.max_epochs=1", f"paths.data_dir={tmp_path}/data", f"hydra.run.dir={tmp_path}/run",
    ])  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    line = [line for line in capsys.readouterr().err.splitlines() if line.strip()][-1]
    assert re.match(r"error: too little data for leave-one-out \(data\.split\): .*1 user has 1 interaction", line)
    assert leftovers(tmp_path / "data") == []
