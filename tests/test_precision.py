"""bf16-mixed end to end: ``trainer.precision=auto`` resolves by hardware, a bf16 run trains and evaluates, its
evaluation ranks exactly like fp32 scoring of the same queries, and scores never stay in bf16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from runhelpers import compose_config, run_paths, tiny_train

from divrec import names, precision
from divrec.metrics import mask_scores, target_ranks, top_k_scored
from divrec.pipeline import build


@pytest.fixture
def hardware(monkeypatch: pytest.MonkeyPatch):
    def set_bf16(native: bool) -> None:
        monkeypatch.setattr(precision, "bf16_supported", lambda device="cpu": native)

    return set_bf16


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_precision_follows_the_hardware(hardware, native: bool, expected: str) -> None:
    hardware(native)
    cfg = OmegaConf.create({"trainer": {"precision": "auto", "accelerator": "cpu"}})
    assert precision.trainer_precision(cfg) == expected


@pytest.mark.parametrize("value", ["32-true", "bf16-mixed", "64-true"])
def test_an_explicit_precision_is_kept(hardware, value: str) -> None:
    hardware(True)
    assert precision.trainer_precision(OmegaConf.create({"trainer": {"precision": value}})) == value


def test_the_default_trainer_asks_for_auto() -> None:
    assert compose_config("train").trainer.precision == precision.AUTO


def test_trainer_device_maps_accelerators() -> None:
    assert precision.trainer_device("cpu") == "cpu"
    assert precision.trainer_device("gpu") == "cuda"
    assert precision.trainer_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("bf16")
    return tiny_train(base / "run", base / "data", seed=0, extra=["trainer.precision=bf16-mixed"])


def test_a_bf16_run_trains_evaluates_and_records_its_precision(bf16_run) -> None:
    assert 0.0 <= bf16_run.metrics["test/ndcg@10"] <= 1.0
    assert (bf16_run.run_dir / "checkpoints" / "best.ckpt").is_file()
    assert OmegaConf.load(bf16_run.run_dir / "config.yaml").trainer.precision == "bf16-mixed"
    state = torch.load(bf16_run.run_dir / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    assert all(t.dtype == torch.float32 for t in state.values() if t.is_floating_point())  # fp32 master weights


def test_bf16_evaluation_ranks_exactly_like_fp32_scores_of_the_same_queries(bf16_run, tmp_path: Path) -> None:
    cfg = compose_config("train", [*bf16_run.overrides[:-2], *run_paths(tmp_path / "out", bf16_run.data_dir)])
    datamodule, module = build(cfg)
    assert module.mixed_precision
    state = torch.load(bf16_run.run_dir / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    module.load_state_dict(state)
    module.eval()
    datamodule.setup("test")
    for batch in datamodule.test_dataloader():
        ranks, vals, ids = module._mixed_ranking(batch, 10)
        scores = module.scores(batch[names.HISTORY], batch.get(names.USER_INDEX))  # the same bf16-encoded queries
        assert scores.dtype == torch.float32
        masked = mask_scores(scores, batch[names.SEEN], batch[names.TARGET])
        torch.testing.assert_close(ranks, target_ranks(masked, batch[names.TARGET]), rtol=0, atol=0)
        want_vals, want_ids = top_k_scored(masked, 10)
        assert torch.equal(ids, want_ids)
        torch.testing.assert_close(vals, want_vals, rtol=1e-6, atol=1e-6)


def test_scores_are_fp32_even_inside_a_bf16_autocast(bf16_run, tmp_path: Path) -> None:
    cfg = compose_config("train", [*bf16_run.overrides[:-2], *run_paths(tmp_path / "out", bf16_run.data_dir)])
    _, module = build(cfg)
    module.eval()
    history = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    outside = module.scores(history)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = module.scores(history)
    assert inside.dtype == outside.dtype == torch.float32
    torch.testing.assert_close(inside, outside, rtol=0, atol=0)
    module.mixed_precision = False  # fp32 encoding: a different (not bf16-rounded) query
    assert module.query(history).dtype == torch.float32


def test_closed_form_baselines_rank_in_fp32_under_bf16(bf16_run, tmp_path: Path) -> None:
    """A fitted item-item model has nothing to gain from bf16 and its wide rows would defeat the bf16 ranker."""
    shared = [o for o in bf16_run.overrides[:-2] if not o.startswith(("model.", "task."))]
    overrides = [*shared, "model=ease", *run_paths(tmp_path / "out", bf16_run.data_dir)]
    _, module = build(compose_config("train", overrides))
    assert not module.backbone.trainable and not module.mixed_precision
