"""Read the logs of experiments/speed_vs_peers/run.sh and write results.md / results.json next to this file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean

from divrec import names

TARGET = 0.06
VAL_NDCG = names.metric_key(names.VAL, names.NDCG, 10)


def json_lines(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def divrec_row(run: Path) -> dict:
    rows = json_lines(run / "timeline.jsonl")
    reached = next((r["process_elapsed_s"] for r in rows if r[VAL_NDCG] >= TARGET), None)
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    return {
        "seconds_to_target": reached,
        "epoch_train_s": mean(r["epoch_train_s"] for r in rows) if rows else None,
        "eval_s": mean(r["val_s"] for r in rows) if rows else None,
        "test_eval_s": None,
        "best_val_ndcg@10": max((r[VAL_NDCG] for r in rows), default=None),
        "test_ndcg@10": metrics.get(names.metric_key(names.TEST, names.NDCG, 10)),
    }


def peer_row(log: Path, epoch_key: str) -> dict:
    rows = json_lines(log)
    epochs = [r for r in rows if "epoch" in r]
    final = next((r for r in reversed(rows) if "dataset" in r), {})
    return {
        "seconds_to_target": final.get("seconds_to_target"),
        "epoch_train_s": mean(r[epoch_key] for r in epochs) if epochs else None,
        "eval_s": mean(r["val_s"] for r in epochs) if epochs and "val_s" in epochs[0] else None,
        "test_eval_s": final.get("test_eval_s"),
        "best_val_ndcg@10": max((r["val_ndcg@10"] for r in epochs), default=None),
        "test_ndcg@10": (final.get("test") or {}).get("ndcg@10"),
    }


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("logs", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    results = {
        "ml-100k": {
            "divrec": divrec_row(args.logs / "divrec-ml-100k"),
            "RecTools 0.19": peer_row(args.logs / "rectools-ml-100k.log", "epoch_train_s"),
            "RecBole 1.2.1": peer_row(args.logs / "recbole-ml-100k.log", "epoch_s"),
        },
        "beauty": {
            "divrec": divrec_row(args.logs / "divrec-beauty"),
            "divrec, + diversity metrics": divrec_row(args.logs / "divrec-beauty-diversity"),
            "RecTools 0.19": peer_row(args.logs / "rectools-beauty.log", "epoch_train_s"),
        },
    }
    note = "Seconds are wall-clock on this machine; RecBole's epoch time includes its validation."
    lines = [f"Logs: `{args.logs}`. {note}", ""]
    for dataset, rows in results.items():
        header = f"| library | s to val NDCG@10 ≥ {TARGET} | s / epoch | s validation pass | s test eval | best val |"
        lines += [f"### {dataset}", "", header + " test NDCG@10 |", "|---|---|---|---|---|---|---|"]
        for lib, r in rows.items():
            lines.append(f"| {lib} | {fmt(r['seconds_to_target'])} | {fmt(r['epoch_train_s'], 2)} | "
                         f"{fmt(r['eval_s'], 2)} | {fmt(r['test_eval_s'], 2)} | {fmt(r['best_val_ndcg@10'], 4)} | "
                         f"{fmt(r['test_ndcg@10'], 4)} |")
        lines.append("")
    (args.out / "results.md").write_text("\n".join(lines))
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
