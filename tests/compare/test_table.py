"""``divrec compare`` on hand-made run folders: values, order, varying parameters, status, seed groups."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from divrec import names
from divrec.compare import CompareError, load_runs, runs_frame, varying_params
from divrec.compare.cli import main as compare_main
from divrec.compare.report import compare, render_markdown
from divrec.compare.table import group_by_config

from .runfolders import TEST, VAL, config, lr_seed_sweep, make_run


def test_runs_table_values_order_status_and_varying_params(tmp_path: Path) -> None:
    runs = load_runs([lr_seed_sweep(tmp_path)])
    assert varying_params(runs) == ["optim.lr", "seed"]  # model.n_layers is the same everywhere: not shown
    frame = runs_frame(runs, VAL)
    assert list(frame["run"]) == ["1", "0", "3", "2", "4", "5"]  # best val first; failed, incomplete last
    assert list(frame["status"]) == [names.COMPLETED] * 4 + [names.FAILED, names.INCOMPLETE]
    assert list(frame[VAL][:4]) == [0.34, 0.30, 0.22, 0.20]
    assert list(frame["optim.lr"]) == [0.01, 0.01, 0.001, 0.001, 0.5, 0.1]
    assert frame[TEST][0] == pytest.approx(3.1 / 6)
    assert list(frame["error"]) == ["", "", "", "", "UserError: bad lr", ""]
    assert math.isnan(frame[VAL][4]) and math.isnan(frame[VAL][5])
    assert "seed" in frame and list(frame["seed"][:4]) == [1, 0, 1, 0]  # a parameter, not a metric
    ascending = runs_frame(runs, VAL, maximize=False)
    assert list(ascending["run"][:4]) == ["2", "3", "0", "1"]


def test_seed_groups_give_mean_and_std(tmp_path: Path) -> None:
    frame = runs_frame(load_runs([lr_seed_sweep(tmp_path)]), VAL)
    groups = group_by_config(frame, VAL)
    assert list(groups["config"]) == ["optim.lr=0.01", "optim.lr=0.001"]  # failed/incomplete runs are no group
    assert list(groups["n_runs"]) == [2, 2]
    assert groups[f"{VAL}_mean"].tolist() == pytest.approx([0.32, 0.21])
    assert groups[f"{VAL}_std"].tolist() == pytest.approx([0.04 / math.sqrt(2), 0.02 / math.sqrt(2)])  # ddof=1
    assert groups[f"{names.TRAIN_TIME}_mean"].tolist() == pytest.approx([10.5, 12.5])
    report = render_markdown(compare(load_runs([tmp_path]), VAL))
    assert "| optim.lr=0.01 | 2 | 0.3200 ± 0.0283 |" in report
    assert "4 completed, 1 failed, 1 incomplete" in report
    assert "| 4 | 0.5 | 0 | UserError: bad lr |" in report  # the failed-runs table


def test_single_runs_from_several_paths_and_group_choices(tmp_path: Path) -> None:
    """Two single runs given one by one: the overridden group (model=…) and key differ; values come from the
    resolved config where the run did not override the key."""
    a = make_run(tmp_path / "runs" / "a", ["model=bert4rec"], config(0.002, 42), {VAL: 0.1, TEST: 0.09})
    b = make_run(tmp_path / "runs" / "b", ["optim.lr=0.01"], config(0.01, 42), {VAL: 0.2, TEST: 0.19})
    (b / ".hydra" / "hydra.yaml").write_text("hydra:\n  runtime:\n    choices:\n      model: sasrec\n")
    runs = load_runs([a, b])
    assert varying_params(runs) == ["model", "optim.lr"]
    frame = runs_frame(runs, VAL)
    assert list(frame["run"]) == ["b", "a"]
    assert list(frame["model"]) == ["sasrec", "bert4rec"] and list(frame["optim.lr"]) == [0.01, 0.002]
    groups = group_by_config(frame, VAL)
    assert list(groups["n_runs"]) == [1, 1] and groups[f"{VAL}_std"].isna().all()


def test_bad_input_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CompareError, match="no such run or sweep folder"):
        load_runs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError, match="no run folders"):
        load_runs([tmp_path / "empty"])
    sweep = lr_seed_sweep(tmp_path)
    with pytest.raises(CompareError, match="metric 'val/nope@10' is in no run"):
        runs_frame(load_runs([sweep]), "val/nope@10")
    assert compare_main([str(sweep), "--metric", "val/nope@10", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("error: metric 'val/nope@10'")
    assert not (tmp_path / "o").exists()  # nothing written


def test_cli_writes_csv_markdown_significance_and_plots(tmp_path: Path) -> None:
    sweep = lr_seed_sweep(tmp_path)
    out = tmp_path / "out"
    assert compare_main([str(sweep), "--metric", VAL, "--out", str(out)]) == 0
    table = pd.read_csv(out / names.COMPARE_RUNS_CSV, dtype={"run": str})
    assert list(table["run"]) == ["1", "0", "3", "2", "4", "5"]
    assert set(table.columns) >= {"run", "status", "optim.lr", "seed", VAL, TEST, names.TRAIN_TIME, "error"}
    assert len(pd.read_csv(out / names.COMPARE_GROUPS_CSV)) == 2
    report = (out / names.COMPARE_REPORT).read_text()
    assert "sorted by val/ndcg@10" in report and "paired permutation test (exact): p = 0.0312" in report
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["metrics_vs_optim.lr.png", "metrics_vs_seed.png"]  # no diversity metrics: no scatter
    assert all((out / p).stat().st_size > 1000 for p in pngs)
