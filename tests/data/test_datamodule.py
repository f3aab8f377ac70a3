"""SeqDataModule tensors: training windows carry the internal index of the user they were cut from."""

from __future__ import annotations

from pathlib import Path

from divrec import names
from divrec.data.datamodule import SeqDataModule
from divrec.data.preprocess import Preprocessing
from divrec.data.splits import LeaveOneOut
from divrec.data.synthetic import Synthetic


def test_training_windows_carry_their_users_index(tmp_path: Path) -> None:
    dm = SeqDataModule(Synthetic(n_users=40, n_items=30, mean_length=14, seed=0), Preprocessing(), LeaveOneOut(),
                       data_dir=str(tmp_path), download=False, max_len=5, stride=3)
    dm.setup()
    data, train = dm.load(), dm.tensors[names.TRAIN]
    windows, users = train[names.ITEMS].numpy(), train[names.USER_INDEX].numpy()
    assert len(users) == len(windows) and len(set(users.tolist())) > 1
    for window, user in zip(windows, users, strict=True):  # each window is a contiguous run of its user's items
        run, seq = window[window != 0].tolist(), data.train_sequence(int(user)).tolist()
        assert any(seq[s : s + len(run)] == run for s in range(len(seq) - len(run) + 1))
