"""The leaderboard report on hand-made run folders: mean ± std, bold best, the paired test against the baseline,
timings, the protocol of each row, failed and unfinished cells, the CSV and the PNG."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from compare.runfolders import make_run

from divrec import names
from divrec.leaderboard.cells import Cell, Plan, Row
from divrec.leaderboard.render import write_report
from divrec.leaderboard.report import NDCG10, VAL_NDCG10, protocol_line

SASREC = [[0.5, 0.4, 0.3, 0.6, 0.2, 0.7], [0.5, 0.6, 0.3, 0.6, 0.4, 0.7]]  # per-user test NDCG@10, seeds 0 and 1


def _config(seed: int, shuffled: bool = False) -> dict:
    return {
        "seed": seed, "monitor": names.MONITOR, "trainer": {"max_epochs": 30},
        "task": {"_target_": "divrec.tasks.NextItemCE"},
        "data": {"max_len": 50, "shuffle_sequences": shuffled,
                 "split": {"_target_": "divrec.data.splits.LeaveOneOut", "val_items": 1}},
    }  # fmt: skip


def _cell(
    out: Path, dataset: str, row: Row, seed: int, users: list[float], epochs: list[float], val: float | None = None
) -> None:
    metrics = {NDCG10: sum(users) / len(users), names.EPOCHS: len(epochs), names.TRAIN_TIME: sum(epochs)}
    folder = make_run(Cell(dataset, row, seed).folder(out), [], _config(seed, row.control is not None),
                      metrics | ({} if val is None else {VAL_NDCG10: val}), per_user={NDCG10: users})  # fmt: skip
    (folder / names.TIMELINE_FILE).write_text("".join(json.dumps({"epoch_train_s": s}) + "\n" for s in epochs))
    (folder / ".hydra" / "config.yaml").write_text("{}\n")
    os.utime(folder / ".hydra" / "config.yaml", (1000, 1000))  # Hydra's job start ...
    os.utime(folder / names.STATUS_FILE, (1030, 1030))  # ... to the final status: 30 s


def _leaderboard(out: Path) -> Plan:
    """beauty: bsarec beats sasrec by 0.1 on every user; the shuffled control scores highest of all but is a control
    (its seed 1 never ran); bsarec+shuffled never ran. ml-100k: sasrec best; bsarec's seed 0 failed."""
    sasrec, bsarec, control = Row("sasrec"), Row("bsarec"), Row("sasrec", "shuffled")
    for seed, users in enumerate(SASREC):
        _cell(out, "beauty", sasrec, seed, users, [2.0, 4.0, 3.0] if seed == 0 else [5.0])
        _cell(out, "beauty", bsarec, seed, [u + 0.1 for u in users], [10.0])
        _cell(out, "ml-100k", sasrec, seed, users, [1.0])
        _cell(out, "ml-100k", control, seed, [u / 2 for u in users], [1.0])
    _cell(out, "beauty", control, 0, [0.9] * 6, [1.0])
    _cell(out, "ml-100k", bsarec, 1, [0.1] * 6, [1.0])
    make_run(Cell("ml-100k", bsarec, 0).folder(out), [], _config(0), status=names.FAILED, error="UserError: bad c")
    return Plan(models=["sasrec", "bsarec"], datasets=["beauty", "ml-100k"], seeds=[0, 1], out=out,
                controls=["shuffled"])  # fmt: skip


def test_table_bold_best_paired_test_timings_and_failed_cells(tmp_path: Path) -> None:
    written, markdown, results = write_report(_leaderboard(tmp_path))
    assert [p.name for p in written] == ["leaderboard.md", "leaderboard.csv", "leaderboard.png"]
    assert written[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "leaderboard.md").read_text() == markdown
    lines = markdown.splitlines()
    assert "| model | beauty NDCG@10 | beauty Δ vs sasrec (p) | beauty s/epoch | beauty wall s | ml-100k NDCG@10 |" in (
        lines[4])  # fmt: skip
    mean = sum(map(sum, SASREC)) / 12  # 0.4833
    # sasrec: seeds 0.45 and 0.5167 → std 0.0471; s/epoch = median over seeds of (median 3.0, 5.0) = 4.0
    sasrec = f"| sasrec | {mean:.4f} ± 0.0471 | baseline | 4.0 | 60 | **{mean:.4f} ± 0.0471** | baseline | 1.0 | 60 |"
    assert sasrec in lines
    # bsarec: +0.1 on each of the 6 users → exact sign-flip p = 2 / 2**6; on ml-100k only seed 1 (seed 0 failed)
    assert (f"| bsarec | **{mean + 0.1:.4f} ± 0.0471** | +0.1000 (p 0.031*) | 10.0 | 60 | 0.1000 (1/2 seeds) | "
            f"{0.1 - sum(SASREC[1]) / 6:+.4f} (p 0.031*) | 1.0 | 30 |") in lines  # fmt: skip
    # the control scores highest on beauty, but is not bold (a diagnostic, not a model); paired on seed 0 only
    assert f"| sasrec+shuffled | 0.9000 (1/2 seeds) | {0.9 - sum(SASREC[0]) / 6:+.4f} (p 0.031*) |" in markdown
    assert "| bsarec+shuffled | – | – | – | – | – | – | – | – |" in lines
    assert "**pooled over seeds**" in markdown
    assert ("- sasrec: full ranking, history excluded; NextItemCE, full softmax over all items; max_len 50; "
            "LeaveOneOut (val_items 1); best epoch by val/ndcg@10, <= 30 epochs") in lines  # fmt: skip
    control = [line for line in lines if line.startswith("- sasrec+shuffled: ")]
    assert len(control) == 1 and control[0].endswith("; training sequences shuffled")
    failed = lines.index("## Failed cells (1)")
    assert lines[failed + 2] == "- ml-100k/bsarec/seed0: UserError: bad c"
    unfinished = lines[lines.index("## Not finished (5)") + 2 :]
    assert unfinished[0] == "- beauty/sasrec+shuffled/seed1: missing" and len(unfinished) == 5
    assert sum(r.state == names.COMPLETED for r in results) == 10  # + 1 failed + 5 missing = 16 cells


def test_csv_one_line_per_row_one_column_group_per_dataset(tmp_path: Path) -> None:
    write_report(_leaderboard(tmp_path))
    table = pd.read_csv(tmp_path / "leaderboard.csv", keep_default_na=False, na_values=[""])
    assert list(table["row"]) == ["sasrec", "sasrec+shuffled", "bsarec", "bsarec+shuffled"]
    bsarec = table.set_index("row").loc["bsarec"]
    assert bsarec[f"beauty/{NDCG10}_mean"] == pytest.approx(sum(map(sum, SASREC)) / 12 + 0.1)
    assert bsarec["beauty/diff_vs_sasrec"] == pytest.approx(0.1)
    assert bsarec["beauty/p_vs_sasrec"] == pytest.approx(2 / 64)
    assert (bsarec["beauty/users_paired"], bsarec["ml-100k/seeds"], bsarec["beauty/wall_s"]) == (6, 1, 60)
    assert pd.isna(table.set_index("row").loc["sasrec", "beauty/p_vs_sasrec"])
    assert table["protocol"].iloc[3] == "no completed run"


def test_protocol_line_reports_objective_negatives_and_selection() -> None:
    sampled = {"task": {"_target_": "divrec.tasks.GBCE", "n_negatives": 256, "positions": "all",
                        "sampler": {"_target_": "divrec.tasks.UniformSampler"}},
               "data": {"max_len": 200, "split": {"_target_": "divrec.data.splits.LeaveOneOut", "val_items": 3}},
               "trainer": {"max_epochs": 50}, "monitor": "test/ndcg@10",
               "rerank": {"_target_": "divrec.rerank.MMR"}}  # fmt: skip
    assert protocol_line(sampled) == (
        "full ranking, history excluded, re-ranked by MMR; GBCE (positions=all), 256 negatives, UniformSampler; "
        "max_len 200; LeaveOneOut (val_items 3); best epoch by test/ndcg@10 (NOT a validation metric), <= 50 epochs"
    )
    fitted = {"task": {"_target_": "divrec.tasks.Fitted"}, "data": {"max_len": 50}, "trainer": {"fast_dev_run": True}}
    assert "closed form (no loss)" in protocol_line(fitted)
    assert "fitted on training (no epochs)" in protocol_line(fitted)
    debug = {"task": {"_target_": "divrec.tasks.NextItemCE"}, "trainer": {"fast_dev_run": True}}
    assert protocol_line(debug).endswith("fast_dev_run: one batch, no model selection")


def test_the_row_chosen_on_validation_is_named_with_its_test_score(tmp_path: Path) -> None:
    """beauty: bsarec is best on test, sasrec on validation, and the control highest of all (never chosen);
    ml-100k: no row has a validation score."""
    sasrec, bsarec, control = Row("sasrec"), Row("bsarec"), Row("sasrec", "shuffled")
    for seed, users in enumerate(SASREC):
        _cell(tmp_path, "beauty", sasrec, seed, users, [1.0], val=0.30 + 0.02 * seed)  # mean 0.31
        _cell(tmp_path, "beauty", bsarec, seed, [u + 0.1 for u in users], [1.0], val=0.30)
        _cell(tmp_path, "beauty", control, seed, users, [1.0], val=0.9)
        _cell(tmp_path, "ml-100k", sasrec, seed, users, [1.0])
    plan = Plan(models=["sasrec", "bsarec"], datasets=["beauty", "ml-100k"], seeds=[0, 1], out=tmp_path,
                controls=["shuffled"])  # fmt: skip
    _, markdown, _ = write_report(plan)
    lines = markdown.splitlines()
    assert lines[lines.index("## Chosen on validation") + 4:][:2] == [
        f"- beauty: sasrec (val 0.3100, test {sum(map(sum, SASREC)) / 12:.4f} ± 0.0471)", "- ml-100k: no completed row"]
    table = pd.read_csv(tmp_path / "leaderboard.csv")
    val = table[f"beauty/{VAL_NDCG10}_mean"]  # rows sasrec, sasrec+shuffled, bsarec, bsarec+shuffled (never ran)
    assert list(val[:3]) == pytest.approx([0.31, 0.9, 0.30]) and pd.isna(val[3])
