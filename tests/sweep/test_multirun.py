"""Multiruns through the real ``divrec`` entry point (in-process): a failing job does not stop the others, every
job records its status, the sweep reports progress, and an Optuna study in SQLite continues across reruns."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from runhelpers import TINY_DATA, TINY_MODEL

from divrec import cli, names
from divrec.compare.cli import main as compare_main

# 1 epoch of the tiny model, heads left to the sweep: 3 heads on a 16-wide model is impossible (ModelConfigError)
FAST = [
    *TINY_DATA, *(o for o in TINY_MODEL if not o.startswith("model.n_heads=")), "callbacks.progress_bar.refresh_rate=0",
    "trainer=cpu", "trainer.max_epochs=1", "logger=none", "data.batch_size=32",
]  # fmt: skip


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``divrec <args>`` in this process (Hydra's own sweep and launch machinery; no interpreter start-up)."""
    monkeypatch.setattr(sys, "argv", ["divrec", *args])
    cli.main()


def only_sweep(log_dir: Path) -> Path:
    (sweep,) = sorted((log_dir / "train" / "multiruns").iterdir())
    return sweep


def test_failed_job_is_recorded_and_the_others_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    args = ["train", "-m", *FAST, "model.n_heads=1,3,2", f"paths.log_dir={logs}", f"paths.data_dir={tmp_path}/data"]
    run_cli(args, monkeypatch)  # returns normally: the failure did not end the sweep
    sweep = only_sweep(logs)
    statuses = [json.loads((sweep / str(j) / names.STATUS_FILE).read_text()) for j in range(3)]
    assert [s["status"] for s in statuses] == [names.COMPLETED, names.FAILED, names.COMPLETED]
    assert statuses[1]["error"].startswith("ModelConfigError: invalid model config: model.hidden_size=16")
    assert "\n" not in statuses[1]["error"]
    assert (sweep / "0" / names.METRICS_FILE).is_file() and (sweep / "2" / names.METRICS_FILE).is_file()
    assert not (sweep / "1" / names.METRICS_FILE).exists()

    progress = json.loads((sweep / names.PROGRESS_FILE).read_text())
    assert (progress["done"], progress["failed"], progress["total"]) == (3, 1, 3)
    best = max((json.loads((sweep / j / names.METRICS_FILE).read_text())[names.MONITOR], j) for j in ("0", "2"))
    assert progress["best_value"] == pytest.approx(best[0]) and progress["best_job"] == best[1]
    assert progress["best_overrides"] == [f"model.n_heads={1 if best[1] == '0' else 2}"]  # only the swept key
    out = capsys.readouterr().out
    assert "[sweep] 1/3 jobs done (0 failed)" in out and "[sweep] 3/3 jobs done (1 failed)" in out

    assert compare_main([str(sweep), "--out", str(tmp_path / "cmp"), "--no-plots"]) == 0
    table = pd.read_csv(tmp_path / "cmp" / names.COMPARE_RUNS_CSV, dtype={"run": str})
    assert list(table["run"]) == [best[1], "2" if best[1] == "0" else "0", "1"]  # best first, failed last
    failed = table[table["status"] == names.FAILED]
    assert list(failed["model.n_heads"]) == [3] and failed["error"].iloc[0] == statuses[1]["error"]
    assert table[names.MONITOR].iloc[0] == pytest.approx(best[0])
    report = (tmp_path / "cmp" / names.COMPARE_REPORT).read_text()
    assert "1 failed" in report and "## Failed runs" in report and "ModelConfigError" in report


def test_optuna_study_in_sqlite_continues_on_rerun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    optuna = pytest.importorskip("optuna")
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    logs = tmp_path / "logs"
    args = [
        "train", "sweep=sasrec_ml100k_optuna", *FAST, "task_name=train", "hydra.sweeper.n_trials=2",
        "model.n_heads=choice(2,3)", f"paths.log_dir={logs}", f"paths.data_dir={tmp_path}/data",
    ]  # fmt: skip
    storage = f"sqlite:///{logs}/train/optuna/sasrec_ml100k.db"
    run_cli(args, monkeypatch)
    first = optuna.load_study(study_name="sasrec_ml100k", storage=storage).trials
    run_cli(args, monkeypatch)  # the same command again: the same study, two more trials
    trials = optuna.load_study(study_name="sasrec_ml100k", storage=storage).trials
    assert len(first) == 2 and len(trials) == 4
    assert [t.params for t in trials[:2]] == [t.params for t in first]
    assert [t.params for t in trials[2:]] != [t.params for t in first]  # new draws, not a replay of the first two
    states = {t.state.name for t in trials}
    assert states <= {"COMPLETE", "FAIL"}
    sweeps = sorted((logs / "train" / "multiruns").iterdir())
    jobs = [job for sweep in sweeps for job in sorted(p for p in sweep.iterdir() if p.is_dir())]
    recorded = [json.loads((job / names.STATUS_FILE).read_text())["status"] for job in jobs]
    # every trial has its job folder, and Optuna's verdict matches the folder's: failed <=> 3 heads (invalid)
    assert recorded == [names.COMPLETED if t.state.name == "COMPLETE" else names.FAILED for t in trials]
    assert all((t.state.name == "FAIL") == (t.params["model.n_heads"] == 3) for t in trials)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    for trial, job in zip(trials, jobs, strict=True):
        if trial in complete:
            assert trial.value == pytest.approx(json.loads((job / names.METRICS_FILE).read_text())[names.MONITOR])
