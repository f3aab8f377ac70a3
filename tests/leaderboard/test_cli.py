"""``divrec leaderboard`` end to end on tiny synthetic data: 2 models x 1 dataset x 2 seeds through real
``divrec train -m`` multiruns; one model cannot take the shared overrides and fails alone; a second command runs
nothing that is finished."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd
import pytest
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
