"""Every ``model=`` option trains (or fits) for one epoch through ``divrec train`` with the real TensorBoard logger and
the default callbacks, writes the run folder, and ``divrec eval`` of its checkpoint gives the same metrics; and what
a model cannot serve is refused from the config alone, before any data is loaded. No edit here for a new model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from runhelpers import QUIET, TINY_DATA, compose_config, run_paths

from divrec import names
from divrec.cli import config_dir
from divrec.models import ModelConfigError, check_model_config
from divrec.pipeline import evaluate, train

MODELS = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml") if not p.name.startswith("_"))
ONE_EPOCH = [*TINY_DATA, *QUIET, "trainer=cpu", "trainer.max_epochs=1", "data.batch_size=32"]


def overrides(name: str, tmp_path: Path, *extra: str) -> list[str]:
    cfg = compose_config("train", [f"model={name}"])
    width = ["model.hidden_size=16"] if "hidden_size" in cfg.model else []  # closed-form baselines have none
    return [f"model={name}", *ONE_EPOCH, *width, *extra, *run_paths(tmp_path / "run", tmp_path / "data")]


@pytest.mark.parametrize("name", MODELS)
def test_every_model_trains_one_epoch_and_its_checkpoint_evaluates_the_same(name: str, tmp_path: Path) -> None:
    metrics = train(compose_config("train", overrides(name, tmp_path)))
    run = tmp_path / "run"
    stored = json.loads((run / names.METRICS_FILE).read_text())
    assert math.isfinite(stored[names.MONITOR]) and 0.0 <= stored["test/ndcg@10"] <= 1.0
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))  # the real logger wrote
    trainable = check_model_config(compose_config("train", [f"model={name}"]).model).trainable
    assert stored[names.EPOCHS] == (1 if trainable else 0)
    assert (run / names.BACKBONE_FILE).is_file() == trainable  # warm-start files only for learned models
    eval_cfg = compose_config("eval", [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", *QUIET, "trainer=cpu",
                                       *run_paths(tmp_path / "eval", tmp_path / "data")])
    again = evaluate(eval_cfg)
    assert again[names.MONITOR] == pytest.approx(metrics[names.MONITOR], abs=1e-6)
    assert again["test/ndcg@10"] == pytest.approx(metrics["test/ndcg@10"], abs=1e-6)


def refused(tmp_path: Path, *extra: str) -> str:
    with pytest.raises(ModelConfigError) as err:
        train(compose_config("train", [*ONE_EPOCH, *extra, *run_paths(tmp_path / "run", tmp_path / "data")]))
    assert not (tmp_path / "data").exists()  # refused before any data was loaded or cached
    message = str(err.value)
    assert "\n" not in message
    return message


def test_what_a_model_cannot_serve_is_refused_before_any_data(tmp_path: Path) -> None:
    assert "bidirectional" in refused(tmp_path, "model=gru4rec", "task=cloze")  # cloze on a recurrent model
    contrastive_only = [f"task.parts.{p}.weight=0" for p in ("cloze", "aap", "map")]
    assert "[MASK]" in refused(tmp_path, "model=gru4rec", "task=pretrain", *contrastive_only)  # mask augmentation
    assert "attention_maps" in refused(tmp_path, "model=lrurec", "callbacks.attention_maps.users=4")
    assert "task=fitted" in refused(tmp_path, "model=ease", "task=next_item_ce")  # closed form, not gradients
    assert "fits closed-form" in refused(tmp_path, "model=sasrec", "task=fitted")
    assert "causal" in refused(tmp_path, "model=bsarec", "task=next_item_ce")  # every position of a filter model
    assert "hiden_size" in refused(tmp_path, "model=gru4rec", "+model.hiden_size=3")  # its own Config's keys
    assert "init_from" in refused(tmp_path, "model=ease", "init_from=/nowhere/backbone.pt")  # nothing to warm-start


def test_a_models_yaml_selects_the_objective_it_needs_and_the_command_line_still_wins() -> None:
    assert compose_config("train", ["model=ease"]).task._target_ == "divrec.tasks.Fitted"
    assert compose_config("train", ["model=bsarec"]).task.positions == "last"
    assert compose_config("train", ["model=bsarec", "task=gbce", "task.positions=last"]).task.n_negatives == 256
    assert compose_config("train", ["model=gru4rec"]).task._target_ == "divrec.tasks.NextItemCE"


def test_explanations_of_a_closed_form_model_are_refused_before_any_data(tmp_path: Path) -> None:
    from divrec.recommend import recommend

    train(compose_config("train", overrides("pop", tmp_path)))
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    paths = run_paths(tmp_path / "rec", tmp_path / "d2")
    cfg = compose_config("recommend", [f"ckpt_path={ckpt}", "explain=true", *paths])
    with pytest.raises(ModelConfigError, match="no learned item embeddings"):
        recommend(cfg)
    assert not (tmp_path / "d2").exists() and not (tmp_path / "rec").exists()
    cfg = compose_config("recommend", [f"ckpt_path={ckpt}", f"output={tmp_path / 'recs.csv'}", "k=3",
                                       *run_paths(tmp_path / "rec", tmp_path / "data")])
    recommend(cfg)  # the same checkpoint serves plain lists
    assert (tmp_path / "recs.csv").read_text().count("\n") > 1
