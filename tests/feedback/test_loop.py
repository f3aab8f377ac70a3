"""The feedback loop end to end on tiny synthetic data: outputs, shared start, checkpoints chained per strategy."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from runhelpers import TINY_DATA, TINY_MODEL, compose_config, run_paths
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from divrec import names
from divrec.cli import RUNNERS
from divrec.data.errors import DataError
from divrec.feedback import run_feedback
from divrec.feedback.report import PLOT, TABLE_CSV, TABLE_MD, UPDATE_S
from divrec.pipeline import load_checkpoint

NDCG10 = names.metric_key(names.TEST, names.NDCG, 10)
WINDOWS = 3
LOOP = [
    *TINY_DATA,
    *TINY_MODEL,
    "data.source.n_users=120",
    "trainer=cpu",
    "data.batch_size=32",
    "feedback.initial_epochs=2",
    f"feedback.n_windows={WINDOWS}",
    "feedback.start_quantile=0.6",
    "feedback.strategies.incremental.epochs=1",
    "feedback.progress_bars=false",
]


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    out = tmp_path_factory.mktemp("feedback")
    cfg = compose_config("feedback", [*LOOP, *run_paths(out / "run", out / "data")])
    return out / "run", run_feedback(cfg)


def test_feedback_is_a_cli_command() -> None:
    assert "feedback" in RUNNERS


def test_writes_table_plot_curves_metrics_and_checkpoints(loop_run: tuple[Path, dict[str, float]]) -> None:
    run_dir, metrics = loop_run
    for name in (TABLE_CSV, TABLE_MD, PLOT, names.METRICS_FILE, "config.yaml", "checkpoints/initial.ckpt"):
        assert (run_dir / name).is_file(), name
    table = pd.read_csv(run_dir / TABLE_CSV)
    strategies = ["no_update", "incremental", "full_retrain"]
    assert sorted(table.strategy.unique()) == sorted(strategies)
    assert sorted(table.window.unique()) == list(range(1, WINDOWS + 1))
    assert json.loads((run_dir / names.METRICS_FILE).read_text()) == pytest.approx(metrics, nan_ok=True)
    for strategy in strategies:
        assert 0.0 <= metrics[f"{strategy}/w{WINDOWS}/{NDCG10}"] <= 1.0
        assert metrics[f"{strategy}/{UPDATE_S}"] >= 0.0
        events = EventAccumulator(str(run_dir / "tensorboard" / strategy))
        events.Reload()
        assert [e.step for e in events.Scalars(NDCG10)] == list(range(1, WINDOWS + 1))
        for window in range(2, WINDOWS + 1):
            assert (run_dir / "checkpoints" / f"{strategy}-w{window}.ckpt").is_file()


def test_window_one_is_the_same_initial_model_for_every_strategy(loop_run: tuple[Path, dict[str, float]]) -> None:
    table = pd.read_csv(loop_run[0] / TABLE_CSV)
    first = table[table.window == 1]
    assert first[NDCG10].nunique() == 1 and first.users.nunique() == 1
    assert (first[UPDATE_S] == 0).all()


def test_no_update_serves_the_initial_weights_and_updates_change_them(
    loop_run: tuple[Path, dict[str, float]],
) -> None:
    folder = loop_run[0] / "checkpoints"

    def weights(name: str) -> dict[str, torch.Tensor]:
        return load_checkpoint(str(folder / f"{name}.ckpt"))["state_dict"]

    initial = weights("initial")
    last = f"w{WINDOWS}"
    assert all(torch.equal(initial[k], v) for k, v in weights(f"no_update-{last}").items())
    for strategy in ("incremental", "full_retrain"):
        changed = weights(f"{strategy}-{last}")
        assert any(not torch.equal(initial[k], v) for k, v in changed.items())


def test_a_dataset_without_timestamps_is_refused_before_training(tmp_path: Path) -> None:
    data = ["data=csv", f"data.source.path={tmp_path / 'x.csv'}", "data.source.time_col=null"]
    cfg = compose_config("feedback", [*data, *TINY_MODEL, "trainer=cpu", *run_paths(tmp_path / "r", tmp_path)])
    (tmp_path / "x.csv").write_text("user_id,item_id\n1,1\n1,2\n2,1\n")
    with pytest.raises(DataError, match="timestamps"):
        run_feedback(cfg)
    assert not (tmp_path / "r").exists()


def test_side_features_reach_the_loops_models(tmp_path: Path) -> None:
    overrides = [*LOOP, "feedback.n_windows=2", "model.item_attribute_fusion=sum", "feedback.initial_epochs=1",
                 "model.user_features=token", "data.source.n_user_groups=3"]
    cfg = compose_config("feedback", [*overrides, *run_paths(tmp_path / "run", tmp_path / "data")])
    run_feedback(cfg)
    weights = load_checkpoint(str(tmp_path / "run" / "checkpoints" / "initial.ckpt"))["state_dict"]
    assert any("item_side" in key for key in weights)
    assert any("user_side" in key for key in weights)


@pytest.mark.parametrize("model", ["gru4rec", "itemknn"])
def test_any_zoo_model_runs_the_loop_through_the_one_assembly_path(model: str, tmp_path: Path) -> None:
    """The loop builds models through ``pipeline.build_module``: a recurrent model trains, a closed-form baseline is
    refitted by ``bind`` on each window's sequences; both are evaluated on every window."""
    tiny = [o for o in LOOP if not o.startswith("model.")]  # TINY_MODEL's keys are the Transformer's
    width = ["model.hidden_size=16"] if model != "itemknn" else []
    overrides = [*tiny, f"model={model}", *width, "feedback.n_windows=2", "feedback.initial_epochs=1"]
    metrics = run_feedback(compose_config("feedback", [*overrides, *run_paths(tmp_path / "run", tmp_path / "data")]))
    rows = pd.read_csv(tmp_path / "run" / TABLE_CSV)
    assert len(rows) > 0 and rows[NDCG10].between(0, 1).all()
    assert (rows.groupby("strategy")[NDCG10].max() > 0).all()  # every served model ranks (none restored empty)
    assert metrics
