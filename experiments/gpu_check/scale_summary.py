"""Summarise ``scale.sh``: step exit codes, training throughput (``timeline.jsonl``), test metrics, the FSDP checkpoint
re-evaluated on one device, wide-model bf16 vs fp32 and re-ranker users/s, as Markdown in ``<out>/scale.md``.

    python experiments/gpu_check/scale_summary.py /tmp/divrec-scale --out /tmp/out

Also writes ``runs.json`` (per run: timeline rows without the val metrics, metrics.json), ``rerank.json`` and
``tails.txt`` (the last lines of every failed or skipped step's log) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path
from typing import Any

from divrec import names

NDCG10 = names.metric_key(names.TEST, names.NDCG, 10)
HR10 = names.metric_key(names.TEST, names.HR, 10)
TRAININGS = {  # step name → what it checks (the device command; scale.sh swaps in CPU trainers for DRY_RUN=1)
    "fp32": "trainer=gpu trainer.precision=32-true",
    "ddp": "trainer=ddp trainer.devices=1 (NCCL)",
    "fsdp": "trainer=fsdp trainer.devices=1",
    "compile": "trainer=gpu trainer.precision=32-true compile=true",
    "wide_fp32": "wide (512/4 layers/8 heads, batch 1024), 32-true",
    "wide_bf16": "wide (512/4 layers/8 heads, batch 1024), bf16-mixed",
}
EQUAL_ABS = 1e-5  # the same weights on the same device: equal up to float summation order
TAIL_LINES = 40


def read_steps(work: Path) -> dict[str, dict[str, str]]:
    with (work / "steps.tsv").open() as f:
        return {row["step"]: row for row in csv.DictReader(f, delimiter="\t")}


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def timeline(run: Path) -> list[dict[str, Any]]:
    try:
        lines = (run / "timeline.jsonl").read_text().splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def run_row(step: str, work: Path, steps: dict[str, dict[str, str]]) -> dict[str, object]:
    rows = timeline(work / step)
    steady = rows[1:] or rows  # epoch 0 includes CUDA warm-up (and compilation)
    metrics = read_json(work / step / names.METRICS_FILE) or {}

    def median(key: str) -> float | None:
        return statistics.median(r[key] for r in steady) if steady else None

    status = steps.get(step, {})
    return {
        "step": step,
        "what": TRAININGS[step],
        "rc": status.get("rc", "not run"),
        "wall s": status.get("wall_s"),
        "epochs": len(rows),
        "epoch 0 train s": rows[0]["epoch_train_s"] if rows else None,
        "epoch train s (median ≥1)": median("epoch_train_s"),
        "sequences/s": median("sequences_per_s"),
        "positions/s": median("positions_per_s"),
        "val s": median("val_s"),
        "test NDCG@10": metrics.get(NDCG10),
        "test HR@10": metrics.get(HR10),
    }


def markdown(table: list[dict[str, object]]) -> list[str]:
    header = list(table[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(row[key]) for key in header) + " |" for row in table]
    return lines


def eval_check(work: Path, steps: dict[str, dict[str, str]]) -> list[str]:
    """scale.sh re-evaluates FSDP's checkpoint, or DDP's when the FSDP run left none."""
    run = "fsdp" if "fsdp_eval" in steps or "ddp_eval" not in steps else "ddp"
    trained = (read_json(work / run / names.METRICS_FILE) or {}).get(NDCG10)
    evaluated = (read_json(work / f"{run}_eval" / names.METRICS_FILE) or {}).get(NDCG10)
    what = f"{run.upper()} checkpoint (`best.ckpt`) → `divrec eval` on one device"
    rc = steps.get(f"{run}_eval", {}).get("rc", "not run")
    if trained is None or evaluated is None:
        return [f"{what}: rc {rc}; no comparison (a metrics.json is missing)."]
    diff = abs(trained - evaluated)
    verdict = "equal" if diff <= EQUAL_ABS else f"DIFFERENT (> {EQUAL_ABS:g})"
    return [
        f"{what}: rc {rc}; test NDCG@10 {trained:.6f} in the {run} run, {evaluated:.6f} re-evaluated, "
        f"|diff| {diff:.2e}: **{verdict}**."
    ]


def wide_speedup(table: list[dict[str, object]]) -> list[str]:
    by_step = {row["step"]: row for row in table}
    fp32, bf16 = (by_step[s]["epoch train s (median ≥1)"] for s in ("wide_fp32", "wide_bf16"))
    if not isinstance(fp32, float) or not isinstance(bf16, float) or bf16 <= 0:
        return ["Wide model bf16 vs fp32: no comparison (a run is missing)."]
    return [f"Wide model: bf16-mixed epoch {fp32 / bf16:.2f}× faster than fp32 (median epoch train s ≥ epoch 1)."]


def rerank(work: Path, steps: dict[str, dict[str, str]]) -> tuple[list[str], dict[str, Any] | None]:
    rc = steps.get("rerank", {}).get("rc", "not run")
    found = None
    log = work / "rerank.log"
    if log.is_file():
        found = next((json.loads(x) for x in reversed(log.read_text().splitlines()) if x.startswith("{")), None)
    if found is None:
        return [f"Re-ranker throughput: rc {rc}, no result."], None
    where = found.get("device", "cpu")
    lines = [
        f"Re-ranker throughput ({where}, {found['users']} users × {found['candidates']} candidates → top-"
        f"{found['k']}, rc {rc}):",
        "",
        "| re-ranker | users/s |",
        "|---|---|",
    ]
    lines += [f"| {k.removesuffix('_users_per_s')} | {v:,} |" for k, v in found.items() if k.endswith("_users_per_s")]
    return lines, found


def tails(work: Path, steps: dict[str, dict[str, str]]) -> str:
    parts = []
    for name, row in steps.items():
        if row["rc"] != "0":
            log = work / f"{name}.log"
            text = log.read_text(errors="replace").splitlines()[-TAIL_LINES:] if log.is_file() else []
            parts.append(f"===== {name} (rc {row['rc']}) =====\n" + "\n".join(text) + "\n")
    return "".join(parts) or "every step exited 0\n"


def run_record(run: Path) -> dict[str, object]:
    """A run's timeline rows without their val metrics (kept small), and its metrics.json."""
    rows = [{k: v for k, v in r.items() if "/" not in k} for r in timeline(run)]
    return {"timeline": rows, "metrics": read_json(run / names.METRICS_FILE)}


def summarize(work: Path, out: Path, dry_run: bool) -> str:
    steps = read_steps(work)
    table = [run_row(step, work, steps) for step in TRAININGS]
    rerank_lines, rerank_json = rerank(work, steps)
    lines = [
        "# divrec scale-out check" + (" (DRY RUN on the CPU: stand-in trainers, tiny limits)" if dry_run else ""),
        "",
        "Steps (rc 124/137 = timed out):",
        "",
        "| step | rc | wall s |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {row['rc']} | {row['wall_s']} |" for name, row in steps.items()]
    lines += ["", "SASRec Beauty, seed 0 (sequences/s etc.: medians over epochs ≥ 1):", "", *markdown(table), ""]
    lines += [*eval_check(work, steps), "", *wide_speedup(table), "", *rerank_lines, ""]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.md").write_text(text)
    runs = {step: run_record(work / step) for step in [*TRAININGS, "fsdp_eval", "ddp_eval"]}
    (out / "runs.json").write_text(json.dumps(runs, indent=1))
    (out / "rerank.json").write_text(json.dumps(rerank_json))
    (out / "tails.txt").write_text(tails(work, steps))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="scale.sh's work folder (steps.tsv, run folders, step logs)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dry-run", default="0", help="1: label the summary as a CPU dry run")
    args = parser.parse_args()
    print(summarize(args.work, args.out, args.dry_run == "1"))


if __name__ == "__main__":
    main()
