"""Pretrain → fine-tune through ``divrec.pipeline.train``: backbone.pt, per-part TensorBoard losses, init_from with
matching and mismatching item vocabularies, and the clear error for another model shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from runhelpers import QUIET, TINY_TRAIN, compose_config, read_metrics, run_paths
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from divrec import names
from divrec.models.tower import ITEM_TABLE
from divrec.models.warmstart import WarmStartError
from divrec.pipeline import evaluate, train

PARTS = ("cloze", "aap", "map", "contrastive")


def cfg(run_dir: Path, data_dir: Path, *extra: str) -> DictConfig:
    return compose_config("train", [*TINY_TRAIN, *run_paths(run_dir, data_dir), *extra])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-epoch tiny pretraining run with every part enabled: (run folder, data folder)."""
    base = tmp_path_factory.mktemp("pretrain")
    train(cfg(base / "run", base / "data", "model=bert4rec", "task=pretrain"))
    return base / "run", base / "data"


def test_pretraining_writes_a_safe_backbone_file_and_logs_every_part(pretrained: tuple[Path, Path]) -> None:
    run, _ = pretrained
    payload = torch.load(run / names.BACKBONE_FILE, map_location="cpu", weights_only=True)
    assert payload["config"]["hidden_size"] == 16 and payload["config"]["causal"] is False
    assert len(payload["item_ids"]) == payload["n_items"] + 1 == payload["state_dict"][ITEM_TABLE].shape[0] - 1
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for part in PARTS:
        assert names.metric_key(names.TRAIN, names.part_loss(part)) in scalars, part
    assert names.metric_key(names.TRAIN, names.LOSS) in scalars
    assert 0.0 <= read_metrics(run)[names.MONITOR] <= 1.0  # model selection by the cloze head's val NDCG@10


def test_finetune_warm_starts_from_the_pretrained_backbone(pretrained: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = pretrained
    extra = ("task=finetune", f"init_from={run / names.BACKBONE_FILE}", "task.layer_decay=0.8", "task.freeze_blocks=1")
    metrics = train(cfg(tmp_path / "ft", data, *extra, "scheduler=warmup_cosine"))
    n_items = torch.load(run / names.BACKBONE_FILE, weights_only=True)["n_items"]
    assert (metrics[names.INIT_MATCHED], metrics[names.INIT_FRESH], metrics[names.INIT_UNUSED]) == (n_items, 0, 0)
    assert 0.0 <= metrics[names.MONITOR] <= 1.0
    tuned = torch.load(tmp_path / "ft" / names.BACKBONE_FILE, weights_only=True)["state_dict"]
    source = torch.load(run / names.BACKBONE_FILE, weights_only=True)["state_dict"]
    for key in source:  # the frozen first block is still the pretrained one; the rest was trained
        assert torch.equal(tuned[key], source[key]) == key.startswith("blocks.0."), key


def test_finetune_on_another_item_vocabulary_matches_raw_ids(pretrained: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = pretrained
    other = ("data.source.n_items=60", f"init_from={run / names.BACKBONE_FILE}")  # raw ids 0..59 vs 0..39
    metrics = train(cfg(tmp_path / "ft", tmp_path / "data", "task=finetune", *other))
    old_ids = set(torch.load(run / names.BACKBONE_FILE, weights_only=True)["item_ids"][1:])
    new_ids = torch.load(tmp_path / "ft" / names.BACKBONE_FILE, weights_only=True)["item_ids"][1:]
    shared = len(old_ids & set(new_ids))
    assert 0 < shared < len(new_ids)
    assert metrics[names.INIT_MATCHED] == shared
    assert metrics[names.INIT_FRESH] == len(new_ids) - shared
    assert metrics[names.INIT_UNUSED] == len(old_ids) - shared


def test_backbone_of_another_shape_fails_before_training(pretrained: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = pretrained
    bad = cfg(tmp_path / "run", data, "model.hidden_size=32", f"init_from={run / names.BACKBONE_FILE}")
    with pytest.raises(WarmStartError, match=r"in the checkpoint but .*32\) in this model.*hidden_size=16"):
        train(bad)
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_pretraining_checkpoint_evaluates_with_its_heads(pretrained: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = pretrained
    eval_cfg = compose_config("eval", [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", *QUIET, "trainer=cpu",
                                       *run_paths(tmp_path / "eval", data)])
    metrics = evaluate(eval_cfg)
    stored = read_metrics(run)
    assert metrics[names.MONITOR] == pytest.approx(stored[names.MONITOR])  # same weights, same cloze query


def test_item_attribute_side_features_train_and_evaluate(tmp_path: Path) -> None:
    run = tmp_path / "side"
    metrics = train(cfg(run, tmp_path / "data", "model.item_attribute_fusion=gate"))
    state = torch.load(run / names.BACKBONE_FILE, weights_only=True)["state_dict"]
    assert any(key.startswith("tower.item_side.") for key in state)
    eval_cfg = compose_config("eval", [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", *QUIET, "trainer=cpu",
                                       *run_paths(tmp_path / "eval", tmp_path / "data")])
    assert evaluate(eval_cfg)[names.MONITOR] == pytest.approx(metrics[names.MONITOR])
