"""Hyperparameters with final metrics: in each run's event files, and compared across runs by TensorBoard's own
hparams plugin (what its HPARAMS tab shows for one TensorBoard over a multirun folder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from runhelpers import TINY_TRAIN, Run, compose_config, read_metrics, run_paths
from tbreader import events, hparams_api
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from divrec import names
from divrec.inspection.hparams import flat_hparams
from divrec.pipeline import train

NDCG10 = {stage: names.metric_key(stage, names.NDCG, 10) for stage in (names.VAL, names.TEST)}
STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def test_run_events_hold_session_records_and_every_final_metric(tiny_run: Run) -> None:
    run = events(tiny_run.run_dir)
    content = run.PluginTagToContent(metadata.PLUGIN_NAME)
    assert metadata.EXPERIMENT_TAG not in content  # TensorBoard builds the experiment from all runs' sessions
    start = plugin_data_pb2.HParamsPluginData.FromString(content[metadata.SESSION_START_INFO_TAG])
    hparams = start.session_start_info.hparams
    composed = compose_config("train", tiny_run.overrides)
    assert hparams["model.hidden_size"].number_value == composed.model.hidden_size
    assert hparams["model.causal"].bool_value is True  # a bool stays a bool, not 1.0
    assert hparams["optim.betas"].string_value == str(list(composed.optim.betas))  # a list becomes a string
    assert hparams["seed"].number_value == composed.seed
    assert not {k for k in hparams if k.endswith(("data_dir", "cache_dir", "mirror", "_partial_"))}
    end = plugin_data_pb2.HParamsPluginData.FromString(content[metadata.SESSION_END_INFO_TAG])
    assert end.session_end_info.status == api_pb2.STATUS_SUCCESS
    on_disk = read_metrics(tiny_run.run_dir)
    scalars = set(run.Tags()["scalars"])
    for key, value in on_disk.items():
        if key == "seed":
            continue
        assert key in scalars, key  # every metric the hparams tab can show exists as a scalar...
        assert run.Scalars(key)[-1].value == pytest.approx(value, rel=1e-6)  # ...whose last value is the final one


def test_final_metrics_do_not_erase_the_curves(tiny_run: Run) -> None:
    """Final values are logged at the last step: a step-0 point after later ones would make TensorBoard's loader
    drop the earlier points of the curve."""
    curve = events(tiny_run.run_dir).Scalars(NDCG10[names.VAL])
    steps = [e.step for e in curve]
    assert steps == sorted(steps)
    assert len(set(steps)) >= tiny_run.metrics[names.EPOCHS] + 1  # every epoch, then the best checkpoint's


def test_flat_hparams_are_scalars_only() -> None:
    flat = flat_hparams(compose_config("train", ["scheduler=warmup_cosine", "rerank=mmr"]))
    assert all(isinstance(v, bool | int | float | str) for v in flat.values())
    assert flat["rerank.lambda_"] == compose_config("train", ["rerank=mmr"]).rerank.lambda_
    assert flat["scheduler.warmup_ratio"] == compose_config("train", ["scheduler=warmup_cosine"]).scheduler.warmup_ratio
    assert "data.data_dir" not in flat and "optim._partial_" not in flat


def test_hparams_plugin_compares_the_runs_of_a_sweep(tmp_path: Path) -> None:
    """Two runs with different keys (one with a scheduler) in one sweep folder, read by the hparams plugin."""
    sweep = tmp_path / "sweep"
    jobs = {"0": ["model.dropout=0.1"], "1": ["model.dropout=0.3", "scheduler=warmup_cosine"]}
    results = {}
    for job, extra in jobs.items():
        overrides = [*TINY_TRAIN, "trainer.max_epochs=1", *extra, *run_paths(sweep / job, tmp_path / "data")]
        results[job] = train(compose_config("train", overrides))
    experiment = hparams_api(sweep, "/experiment", {"experimentName": ""})
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    assert experiment["hparamInfos"][0]["name"] == "model.dropout"  # what differs comes first
    assert infos["model.dropout"]["differs"] and not infos["model.hidden_size"]["differs"]
    assert any(name.startswith("scheduler.") for name in infos)  # the second run's own keys are kept
    metric_tags = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {*NDCG10.values(), names.TRAIN_TIME, names.EPOCHS} <= metric_tags

    request = {
        "experimentName": "",
        "allowedStatuses": STATUSES,
        "startIndex": 0,
        "sliceSize": 10,
        "colParams": [{"metric": {"tag": NDCG10[names.TEST], "group": ""}, "order": "ORDER_DESC"}],
    }
    groups = hparams_api(sweep, "/session_groups", request)["sessionGroups"]
    assert len(groups) == 2
    shown = {}
    for group in groups:
        job = group["name"].split("/")[0]
        assert group["hparams"]["model.dropout"] == float(jobs[job][0].split("=")[1])
        assert [s["status"] for s in group["sessions"]] == ["STATUS_SUCCESS"]
        shown[job] = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        for key in (*NDCG10.values(), names.TRAIN_TIME):
            assert shown[job][key] == pytest.approx(results[job][key], rel=1e-6)
    test_values = [shown[g["name"].split("/")[0]][NDCG10[names.TEST]] for g in groups]
    assert test_values == sorted(test_values, reverse=True)  # the tab's sort
