"""``divrec leaderboard`` end to end on tiny synthetic data: 2 models x 1 dataset x 2 seeds through real
``divrec train -m`` multiruns; one model cannot take the shared overrides and fails alone; a second command runs
nothing that is finished."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf
from runhelpers import TINY, run_divrec

from divrec import names
from divrec.leaderboard.cli import main

# TINY's data=synthetic is datasets=[synthetic] here. model.causal=true is SASRec's own value and a key BSARec's
# config does not have: Hydra refuses bsarec's multirun
ARGS = [
    "models=[sasrec,bsarec]", "datasets=[synthetic]", "seeds=[0,1]", "threads=1", "model.causal=true",
    *(o for o in TINY if o != "data=synthetic"), "trainer=cpu", "trainer.max_epochs=1", "logger=none",
]  # fmt: skip


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_leaderboard_runs_reports_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "board"
    args = [*ARGS, f"out={out}", f"paths.data_dir={tmp_path / 'data'}"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert (
        "[leaderboard] synthetic/sasrec seeds 0,1" in printed and "[leaderboard] synthetic/bsarec seeds 0,1" in printed
    )
    runs = out / "runs" / "synthetic"
    ndcg = [json.loads((runs / "sasrec" / f"seed{s}" / names.METRICS_FILE).read_text())["test/ndcg@10"] for s in (0, 1)]
    markdown = (out / "leaderboard.md").read_text()
    row = f"| sasrec | **{statistics.mean(ndcg):.4f} ± {statistics.stdev(ndcg):.4f}** | baseline |"
    assert row in markdown  # the only completed model is the best: bold, mean ± std over the 2 seeds
    assert "| bsarec | – | – | – | – |" in markdown
    assert "## Failed cells (2)" in markdown
    assert ("- synthetic/bsarec/seed0: not started: divrec train -m exited with status 2: Could not override "
            "'model.causal'") in markdown  # fmt: skip
    assert "- sasrec: full ranking, history excluded; NextItemCE, full softmax over all items; max_len 8;" in markdown
    table = pd.read_csv(out / "leaderboard.csv")
    assert list(table["row"]) == ["sasrec", "bsarec"] and list(table["synthetic/seeds"]) == [2, 0]
    assert table["synthetic/test/ndcg@10_mean"][0] == pytest.approx(statistics.mean(ndcg))
    assert table["synthetic/s_per_epoch"][0] > 0 and table["synthetic/wall_s"][0] > 0
    assert (out / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"

    before = _files(runs / "sasrec")
    assert main(args) == 0  # again: the finished cells are skipped, the failed ones tried afresh
    printed = capsys.readouterr().out
    assert "synthetic/sasrec seeds" not in printed and "[leaderboard] synthetic/bsarec seeds 0,1" in printed
    assert _files(runs / "sasrec") == before  # no new run, nothing rewritten
    assert (out / "previous" / "synthetic" / "bsarec" / "seed0.1" / names.STATUS_FILE).is_file()  # kept aside
    assert (out / "leaderboard.md").read_text().count(row) == 1


def test_console_script_reports_bad_arguments_in_one_line(tmp_path: Path) -> None:
    done = run_divrec(["leaderboard", "models=[sasrec,nosuch]", "datasets=[synthetic]", f"out={tmp_path}"], tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: models: unknown ['nosuch']; choose from [") and done.stderr.count("\n") == 1
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_an_ensemble_row_combines_the_members_cells_of_each_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "board"
    tiny_sasrec = [f"sasrec:{o}" for o in TINY if o.startswith("model.")]
    shared = [o for o in TINY if o != "data=synthetic" and not o.startswith("model.")]
    args = ["models=[sasrec,pop]", "datasets=[synthetic]", "seeds=[0,1]", "ensembles=[sasrec+pop]", "threads=1",
            *shared, *tiny_sasrec, "trainer=cpu", "trainer.max_epochs=1", "logger=none", f"out={out}",
            f"paths.data_dir={tmp_path / 'data'}"]  # fmt: skip
    assert main(args) == 0
    assert "[leaderboard] synthetic/sasrec+pop seeds 0,1 (4/6 cells run so far)" in capsys.readouterr().out
    runs = out / "runs" / "synthetic"
    for seed in (0, 1):  # each seed's ensemble is made of that seed's member cells, nothing shared across seeds
        stored = OmegaConf.load(runs / "sasrec+pop" / f"seed{seed}" / names.CONFIG_FILE)
        assert list(stored.model.members) == [str(runs / m / f"seed{seed}") for m in ("sasrec", "pop")]
        assert (stored.model.normalize, stored.model.weights) == ("zscore", "val")
        metrics = json.loads((runs / "sasrec+pop" / f"seed{seed}" / names.METRICS_FILE).read_text())
        assert metrics["fitted/weight_1"] + metrics["fitted/weight_2"] == pytest.approx(1.0)
    table = pd.read_csv(out / "leaderboard.csv")
    assert list(table["row"]) == ["sasrec", "pop", "sasrec+pop"] and list(table["synthetic/seeds"]) == [2, 2, 2]
    assert table["synthetic/users_paired"][2] > 0  # tested against sasrec over the same users
    markdown = (out / "leaderboard.md").read_text()
    assert ("- sasrec+pop: full ranking, history excluded; ensemble of sasrec+pop (zscore scores); max_len 8; "
            "LeaveOneOut (val_items 1); each member's epoch by its own validation, weights chosen on val/ndcg@10 "
            "(grid of 1/10)") in markdown  # fmt: skip
    recorded = json.loads((out / "leaderboard.json").read_text())
    assert recorded["synthetic/sasrec+pop"] == recorded["synthetic/pop"]  # the shared overrides; no scope of its own
