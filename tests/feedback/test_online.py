"""``divrec feedback source=<db>``: stored events → the next checkpoint, trained only on what it has not seen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from runhelpers import TINY_DATA, TINY_MODEL, Run, compose_config, run_paths

from divrec import names
from divrec.data.types import ProcessedData
from divrec.errors import UserError
from divrec.feedback import run_feedback
from divrec.feedback.online import CURSOR_KEY, apply_events
from divrec.pipeline import load_checkpoint
from divrec.serving.store import FeedbackEvent, FeedbackStore

ONLINE = [*TINY_DATA, *TINY_MODEL, "trainer=cpu", "data.batch_size=32", "feedback.online.epochs=1",
          "feedback.progress_bars=false"]


def _update(run: Run, url: str, ckpt: Path, out: Path) -> dict[str, float]:
    cfg = compose_config("feedback", [*ONLINE, f"source={url}", f"ckpt_path={ckpt}", *run_paths(out, run.data_dir)])
    return run_feedback(cfg)


@pytest.fixture(scope="module")
def data(tiny_run: Run) -> ProcessedData:
    cfg = compose_config("train", [*TINY_DATA, *run_paths(tiny_run.run_dir, tiny_run.data_dir)])
    return instantiate(cfg.data).load()


def _events(data: ProcessedData, n: int, unknown: int = 0) -> list[FeedbackEvent]:
    """``n`` events of a dataset user, 2 of a user the dataset does not have, ``unknown`` on items it lacks."""
    user, items = str(data.user_raw_ids[0]), [str(i) for i in data.item_raw_ids[1:]]
    known = [FeedbackEvent(user=user, item=items[i % len(items)], timestamp=1e9 + i) for i in range(n)]
    fresh = [FeedbackEvent(user="new-user", item=items[2]), FeedbackEvent(user="new-user", item=items[4])]
    return known + fresh + [FeedbackEvent(user=user, item=f"no-such-item-{i}") for i in range(unknown)]


def test_an_update_trains_on_new_events_records_the_cursor_and_skips_unknown_items(
    tiny_run: Run, data: ProcessedData, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.sqlite'}"
    store = FeedbackStore(url)
    store.append(_events(data, 6, unknown=2))
    served = tiny_run.run_dir / "checkpoints" / "best.ckpt"
    metrics = _update(tiny_run, url, served, tmp_path / "u1")
    assert metrics["feedback/new_events"] == 8  # 6 known-user events + 2 of a new user
    assert metrics["feedback/unknown_item_events"] == 2 and metrics["feedback/new_users"] == 1
    new = tmp_path / "u1" / "checkpoints" / f"feedback-{store.count()}.ckpt"
    checkpoint = load_checkpoint(str(new))
    assert checkpoint[CURSOR_KEY] == store.count()
    before = load_checkpoint(str(served))["state_dict"]
    assert any(not torch.equal(before[k], v) for k, v in checkpoint["state_dict"].items())  # it did train
    # the new checkpoint has seen every stored event: nothing to do until more arrive
    assert _update(tiny_run, url, new, tmp_path / "u2") == {}
    store.append([FeedbackEvent(user=str(data.user_raw_ids[1]), item=str(data.item_raw_ids[7]))])
    assert _update(tiny_run, url, new, tmp_path / "u3")["feedback/new_events"] == 1
    store.close()


def test_only_unknown_items_is_refused_with_the_fix(tiny_run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.sqlite'}"
    store = FeedbackStore(url)
    store.append([FeedbackEvent(user="0", item="not-in-catalog")])
    store.close()
    with pytest.raises(UserError, match="outside the checkpoint's catalog"):
        _update(tiny_run, url, tiny_run.run_dir / "checkpoints" / "best.ckpt", tmp_path / "out")
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_apply_events_appends_every_event_and_windows_only_the_new_ones(data: ProcessedData) -> None:
    user0, item = str(data.user_raw_ids[0]), str(data.item_raw_ids[1])
    events = pd.DataFrame({"id": [1, 2, 3], names.USER: [user0, user0, "stranger"], names.ITEM: [item] * 3})
    applied = apply_events(data, events, cursor=1, context=2)
    offsets, _ = data.known_sequences()
    n0 = offsets[1] - offsets[0]
    assert applied.seqs.lengths[0] == n0 + 2  # both events appended to user 0's history
    window0 = applied.train[1][applied.train[0][0] : applied.train[0][1]]
    assert len(window0) == 1 + 2  # one new event (id 2 > cursor 1) + 2 items of context
    np.testing.assert_array_equal(window0[-1:], [1])
    assert applied.n_new_users == 1 and applied.n_new_events == 2 and applied.last_id == 3
