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
        "| interactions generated / after dedup | users | items with ≥1 interaction (of 1M) | data prep s | "
        "train steps timed / per epoch | epoch s | epoch CPU-s | epoch CPU-s per 1M interactions | "
        "eval users timed | eval s all users (extrap.) | eval CPU-s all users (extrap.) | eval CPU-ms per user | "
        "peak RSS GiB data / train / eval | ru_maxrss GiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sampled:
        m = r["n_interactions"] / 1e6
        users = r.get("eval_users", 0)
        per_user = 1000 * r["eval_cpu_s"] / users if users else float("nan")
        rows.append(
            f"| {int(r['args']['interactions']):,} / {r['n_interactions']:,} | {r['n_users']:,} "
            f"| {r['items_with_interactions']:,} | {r['data_s']:.0f} ({r['data_cpu_s']:.0f} CPU) "
            f"| {r['train_steps']:,} / {r['steps_per_epoch']:,} | {r['epoch_s']:,.0f} | {r['epoch_cpu_s']:,.0f} "
            f"| {r['epoch_cpu_s'] / m:,.0f} | {users:,} of {r['test_users']:,} "
            f"| {r.get('eval_all_users_s', float('nan')):,.0f} | {r.get('eval_all_users_cpu_s', float('nan')):,.0f} "
            f"| {per_user:.1f} | {peak(r, 'data')} / {peak(r, 'train')} / {peak(r, 'eval')} "
            f"| {r['ru_maxrss_mib'] / GiB:.2f} |"
        )
    lines = [
        "# Million-item benchmark: results",
        "",
        "Sampled softmax (log-Q corrected, popularity^0.75 sampler, "
        f"{base['args']['negatives']} shared negatives), batch {base['args']['batch_size']} windows, "
        f"chunked full-ranking test (chunk {base['args']['chunk']} items, running top-20, 1024 users per batch), "
        "SASRec 2 layers, D=64, max_len 50, catalog = 1,000,000 items. 2-core machine shared with other jobs: "
        "wall seconds (s) are inflated by their load; CPU-s = this process's CPU seconds over all threads. "
        "'epoch' = the timed steps scaled to the epoch's step count (the whole epoch was timed where the two agree).",
        "",
        *rows,
        "",
        "Load average (1 min) at start / end of each size: "
        + "; ".join(f"{r['n_interactions'] / 1e6:.1f}M: {r['load_start']} / {r['load_end']}" for r in sampled),
        "",
        "Popularity of the generated training sequences: "
        + "; ".join(
            f"{r['n_interactions'] / 1e6:.1f}M: top 1% of items = {100 * r['top1pct_share']:.0f}% of interactions, "
            f"top 20% = {100 * r['top20pct_share']:.0f}%, most popular item {r['max_item_count']:,}"
            for r in sampled
        ),
    ]
    for r in chunked:
        per_step, cpu_step = r["train_s"] / r["train_steps"], r["train_cpu_s"] / r["train_steps"]
        lines += [
            "",
            f"Chunked full-softmax CE (exact, chunk {r['args']['chunk']} items) at {r['n_interactions']:,} "
            f"interactions, batch {r['args']['batch_size']} windows: {r['train_steps']} steps timed, "
            f"{per_step:.0f} s/step ({cpu_step:.0f} CPU-s/step), {r['steps_per_epoch']:,} steps per epoch → one "
            f"epoch ≈ {r['epoch_s'] / 3600:.0f} h wall here, {r['epoch_cpu_s'] / 3600:.0f} CPU-h (extrapolated); "
            f"peak RSS in training {peak(r, 'train')} GiB.",
        ]
    return "\n".join(lines) + "\n"


def plot(sampled: list[dict[str, Any]], path: Path) -> None:
    x = [r["n_interactions"] / 1e6 for r in sampled]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = [
        ("training epoch", "epoch_cpu_s", "epoch_s", "o", "C0"),
        ("full-ranking test, all users", "eval_all_users_cpu_s", "eval_all_users_s", "s", "C1"),
        ("data: generate → windows", "data_cpu_s", "data_s", "^", "C2"),
    ]
    for label, cpu, wall, marker, color in series:
        ax_t.plot(x, [r[cpu] for r in sampled], marker + "-", color=color, label=f"{label} (CPU-s)")
        ax_t.plot(x, [r[wall] for r in sampled], marker + "--", color=color, alpha=0.5, label=f"{label} (wall s)")
    slope = sampled[-1]["epoch_cpu_s"] / x[-1]
    ax_t.plot([0, x[-1]], [0, slope * x[-1]], "k:", label="proportional (epoch CPU-s)")
    ax_t.set(xlabel="interactions after dedup (millions)", ylabel="seconds",
             title="time vs interactions (1M-item catalog)")
    ax_t.legend(fontsize=6)
    for phase, marker in (("data", "^-"), ("train", "o-"), ("eval", "s-")):
        ax_m.plot(x, [r["peak_rss_mib"].get(phase, float("nan")) / GiB for r in sampled], marker, label=phase)
    ax_m.axhline(24, color="r", ls="--", label="24 GB machine")
    ax_m.set(xlabel="interactions after dedup (millions)", ylabel="peak RSS (GiB)", ylim=(0, 25),
             title="peak resident memory per phase")
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
