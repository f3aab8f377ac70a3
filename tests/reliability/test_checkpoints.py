"""Checkpoints of the wrong kind or shape, unreadable ones, and leftovers of killed writes (issue 16, "Reliability").

``divrec eval`` / ``divrec recommend`` refuse a warm-start ``backbone.pt`` and a Lightning checkpoint without divrec's
stored config before any data is loaded (no silent fall back to the default dataset), a checkpoint trained on
another catalog once the data is loaded but before anything is written; ``divrec train`` refuses to resume a
backbone file. Unreadable files keep a short reason without torch's "weights_only=False" advice, and the
``.<name>.partial`` temporaries of a killed write are removed when a run starts again in that folder.
"""

from __future__ import annotations

import datetime
import logging
import re
from pathlib import Path

import pytest
import torch
from runhelpers import QUIET, TINY_TRAIN, Run, compose_config, leftovers, run_paths
from torch import nn

from divrec import names
from divrec.checkpointing import LAST_FILE, CheckpointError, load_weights, read_checkpoint
from divrec.pipeline import evaluate, train
from divrec.recommend import recommend

EVAL = ["trainer=cpu", "logger=none", *QUIET]
OTHER_CATALOG = "data.source.n_items=50"  # the tiny run's synthetic data has 40 items (this one: 48 of 50 kept)


def eval_cfg(ckpt: Path, tmp_path: Path, *extra: str, data_dir: Path | None = None):
    paths = run_paths(tmp_path / "eval", data_dir or tmp_path / "data")
    return compose_config("eval", [f"ckpt_path={ckpt}", *EVAL, *paths, *extra])


def recommend_cfg(ckpt: Path, tmp_path: Path, *extra: str, data_dir: Path | None = None):
    paths = run_paths(tmp_path / "rec", data_dir or tmp_path / "data")
    return compose_config("recommend", [f"ckpt_path={ckpt}", f"output={tmp_path / 'recs.csv'}", *paths, *extra])


def trained_items(run: Run) -> int:
    """The tiny run's catalog size, as its backbone file records it."""
    return int(read_checkpoint(run.run_dir / names.BACKBONE_FILE)["n_items"])


def foreign_checkpoint(tiny_run: Run, tmp_path: Path) -> Path:
    """The tiny run's best.ckpt without divrec's stored config: what plain Lightning writes."""
    checkpoint = read_checkpoint(tiny_run.run_dir / "checkpoints" / "best.ckpt")
    checkpoint.pop(names.CONFIG_KEY)
    path = tmp_path / "foreign.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("command", ["eval", "recommend"])
def test_a_backbone_file_is_refused_with_how_to_use_it(command: str, tmp_path: Path, tiny_run: Run) -> None:
    backbone = tiny_run.run_dir / names.BACKBONE_FILE
    with pytest.raises(CheckpointError) as err:
        if command == "eval":
            evaluate(eval_cfg(backbone, tmp_path))
        else:
            recommend(recommend_cfg(backbone, tmp_path))
    message = str(err.value)
    assert "warm-start backbone file" in message and f"init_from={backbone}" in message
    assert leftovers(tmp_path) == []  # no default dataset loaded, no cache, no output


def test_a_checkpoint_without_divrec_config_is_refused(tmp_path: Path, tiny_run: Run) -> None:
    foreign = foreign_checkpoint(tiny_run, tmp_path)
    with pytest.raises(CheckpointError, match=f"no divrec run config \\('{names.CONFIG_KEY}'\\)"):
        evaluate(eval_cfg(foreign, tmp_path))
    assert leftovers(tmp_path) == ["foreign.ckpt"]


def test_resuming_a_backbone_file_is_refused_with_init_from(tmp_path: Path, tiny_run: Run) -> None:
    backbone = tiny_run.run_dir / names.BACKBONE_FILE
    cfg = compose_config("train", [*TINY_TRAIN, f"ckpt_path={backbone}", *run_paths(tmp_path / "run", tmp_path / "d")])
    with pytest.raises(CheckpointError, match="cannot be resumed") as err:
        train(cfg)
    assert f"init_from={backbone}" in str(err.value)
    assert leftovers(tmp_path) == []


def test_eval_on_another_catalog_names_both_sizes_and_writes_nothing(tmp_path: Path, tiny_run: Run) -> None:
    best = tiny_run.run_dir / "checkpoints" / "best.ckpt"
    cfg = eval_cfg(best, tmp_path, "data=synthetic", OTHER_CATALOG)
    with pytest.raises(CheckpointError) as err:
        evaluate(cfg, overrides=[OTHER_CATALOG])  # a key override on the checkpoint's own data config
    sizes = re.search(r"trained on a catalog of (\d+) items but this data has (\d+):", str(err.value))
    assert sizes is not None, err.value
    assert int(sizes[1]) == trained_items(tiny_run) and int(sizes[2]) != int(sizes[1])
    assert "drop data= and data.* overrides" in str(err.value)
    assert leftovers(tmp_path / "eval") == []  # no config.yaml, no metrics


def test_recommend_on_another_catalog_is_the_same_refusal(tmp_path: Path, tiny_run: Run) -> None:
    best = tiny_run.run_dir / "checkpoints" / "best.ckpt"
    with pytest.raises(CheckpointError, match=f"trained on a catalog of {trained_items(tiny_run)} items but this data"):
        recommend(recommend_cfg(best, tmp_path, "data=synthetic", OTHER_CATALOG), overrides=[OTHER_CATALOG])
    assert not (tmp_path / "recs.csv").exists()


class ClosedForm(nn.Module):
    """The shape of a closed-form model's state: (D, n_items + 1) item-id columns, no item table."""

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.register_buffer("weights", torch.zeros(3, n_items + 1))


def test_a_closed_form_checkpoint_of_another_catalog_names_both_sizes() -> None:
    checkpoint = {"state_dict": ClosedForm(40).state_dict()}
    with pytest.raises(CheckpointError, match="trained on a catalog of 40 items but this data has 50"):
        load_weights(ClosedForm(50), checkpoint, "pop.ckpt", n_items=50)
    other = {"state_dict": {"backbone.other": torch.zeros(2)}}
    with pytest.raises(CheckpointError, match=r"tensors missing from it \['backbone.weights'\]"):
        load_weights(ClosedForm(50), other, "x.ckpt", n_items=50)


def unsafe_checkpoint(path: Path) -> Path:
    torch.save({"state_dict": {}, "when": datetime.date(2020, 1, 1)}, path)  # a class outside the allowlist
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(bytes(range(256)) * 20) and p, "Unsupported operand"),  # random bytes
        (unsafe_checkpoint, "datetime.date"),
    ],
    ids=["random-bytes", "unsafe-global"],
)
def test_an_unreadable_file_keeps_the_reason_without_torchs_advice(make, reason: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.ckpt"
    make(path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as err:
        read_checkpoint(path)
    message = str(err.value)
    assert reason in message and "\n" not in message
    for advice in ("weights_only", "will likely succeed", "add_safe_globals", "\x1b["):
        assert advice not in message


def test_leftover_partials_are_removed_when_the_run_starts_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    partials = [run / "checkpoints" / ".last.ckpt.partial", run / "checkpoints" / ".best.ckpt.partial"]
    for partial in partials:
        partial.write_bytes(b"half a checkpoint")
    kept = run / "checkpoints" / ".keep"
    kept.write_text("not a temporary")
    cfg = compose_config("train", [*TINY_TRAIN, "trainer.max_epochs=1", "logger=none", "ckpt_path=last",
                                   *run_paths(run, tmp_path / "data")])
    with caplog.at_level(logging.WARNING, logger="divrec.checkpointing"):
        train(cfg)
    assert not any(p.exists() for p in partials) and kept.exists()
    removed = [r.getMessage() for r in caplog.records if "unfinished checkpoint write" in r.getMessage()]
    assert len(removed) == 1 and removed[0].startswith("removed 2 unfinished checkpoint write(s)")
    assert (run / "checkpoints" / LAST_FILE).is_file()  # and the run trained as usual
