"""Table (results.md) and plot (scaling.png) of the million-item benchmark from the per-size JSON files.

    python experiments/million_items/report.py experiments/million_items/results --out experiments/million_items
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

GiB = 1024.0


def load(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    sampled = sorted((r for r in runs if r["args"]["mode"] == "sampled"), key=lambda r: r["n_interactions"])
    chunked = [r for r in runs if r["args"]["mode"] == "chunked_ce"]
    return sampled, chunked


def peak(run: dict[str, Any], phase: str) -> str:
    value = run["peak_rss_mib"].get(phase)
    return "–" if value is None else f"{value / GiB:.2f}"


def table(sampled: list[dict[str, Any]], chunked: list[dict[str, Any]]) -> str:
    base = sampled[0]
    rows = [
        "| interactions (after dedup) | users | catalog (with ≥1 interaction) | data prep s | train steps | "
        "epoch s | epoch s per M interactions | eval users timed | eval s (timed) | eval s, all users | "
        "peak RSS GiB data / train / eval | ru_maxrss GiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sampled:
        m = r["n_interactions"] / 1e6
        rows.append(
            f"| {r['n_interactions']:,} | {r['n_users']:,} | {r['catalog']:,} ({r['items_with_interactions']:,}) "
            f"| {r['data_s']:.1f} | {r['train_steps']:,} | {r['epoch_s']:.0f} | {r['epoch_s'] / m:.0f} "
            f"| {r.get('eval_users', 0):,} | {r.get('eval_s', float('nan')):.0f} "
            f"| {r.get('eval_all_users_s', float('nan')):.0f} "
            f"| {peak(r, 'data')} / {peak(r, 'train')} / {peak(r, 'eval')} | {r['ru_maxrss_mib'] / GiB:.2f} |"
        )
    lines = [
        "# Million-item benchmark: results",
        "",
        "Sampled softmax (log-Q corrected, popularity^0.75 sampler, "
        f"{base['args']['negatives']} shared negatives), batch {base['args']['batch_size']} windows, "
        f"chunked full-ranking test (chunk {base['args']['chunk']} items, running top-20), "
        "SASRec 2 layers, D=64, max_len 50, 1M-item catalog. One training epoch per size.",
        "",
        *rows,
        "",
        "Popularity of the generated data (training sequences): "
        + "; ".join(
            f"{r['n_interactions'] / 1e6:.1f}M: top 1% of items = {100 * r['top1pct_share']:.0f}% of interactions, "
            f"top 20% = {100 * r['top20pct_share']:.0f}%"
            for r in sampled
        ),
    ]
    for r in chunked:
        per_step = r["train_s"] / r["train_steps"]
        lines += [
            "",
            f"Chunked full-softmax CE (chunk {r['args']['chunk']}) at {r['n_interactions']:,} interactions, "
            f"batch {r['args']['batch_size']} windows: {r['train_steps']} steps timed, {per_step:.1f} s/step, "
            f"{r['steps_per_epoch']:,} steps per epoch → one epoch ≈ {r['epoch_s'] / 3600:.1f} h (extrapolated); "
            f"peak RSS in training {peak(r, 'train')} GiB.",
        ]
    return "\n".join(lines) + "\n"


def plot(sampled: list[dict[str, Any]], path: Path) -> None:
    x = [r["n_interactions"] / 1e6 for r in sampled]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    ax_t.plot(x, [r["epoch_s"] for r in sampled], "o-", label="training epoch (sampled softmax + log-Q)")
    ax_t.plot(x, [r["eval_all_users_s"] for r in sampled], "s-", label="full-ranking test, all users")
    ax_t.plot(x, [r["data_s"] for r in sampled], "^-", label="data: generate + preprocess + split + windows")
    slope = sampled[0]["epoch_s"] / x[0]
    ax_t.plot(x, [slope * v for v in x], "k:", label="linear from the smallest size")
    ax_t.set(xlabel="interactions (millions)", ylabel="seconds", title="time vs interactions (1M items)")
    ax_t.legend(fontsize=7)
    for phase, marker in (("data", "^-"), ("train", "o-"), ("eval", "s-")):
        ax_m.plot(x, [r["peak_rss_mib"].get(phase, float("nan")) / GiB for r in sampled], marker, label=phase)
    ax_m.axhline(24, color="r", ls="--", label="24 GiB machine")
    ax_m.set(xlabel="interactions (millions)", ylabel="peak RSS (GiB)", title="peak resident memory per phase")
    ax_m.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sampled, chunked = load(args.folder)
    (args.out / "results.md").write_text(table(sampled, chunked))
    plot(sampled, args.out / "scaling.png")


if __name__ == "__main__":
    main()
