"""Checkpoint selection across epochs (experiments/val_items/epochs.sh): which validation picks the better epoch?

Every epoch of every ``<runs>/k3_s<seed>`` run (val_items=3 training, weights saved each epoch) is scored on
validation with all 3 rows per user ("val3"), on validation's last row per user only ("val1": the classic
leave-one-out target of the same model) and on test. Per run: the epoch each validation picks (argmax) and its test
NDCG@10, the test-best epoch, and the rank correlation of each validation with test over the epochs. Writes
``epochs.json``, ``epochs.md`` and ``epochs.png``.
    python experiments/val_items/epochs.py outputs/val_items_epochs --out experiments/val_items
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from analyze import built, last_row_per_user, score_rows, user_matrix

from divrec import names

EPOCH = re.compile(r"epoch=(\d+)-step=\d+\.ckpt")
RUN = re.compile(r"k3_s(\d+)")
MEASURES = ("val3", "val1", "test")
KEY = names.metric_key(names.VAL, "ndcg", 10)
N_BOOT = 1000
WARMUP = 5  # correlations also over epochs >= WARMUP, where the curves are near their plateau


def epoch_sums(run_dir: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Saved epochs (E,) and, per measure (val3, val1, test), (E, U) per-user NDCG sums and (U,) row counts
    (keys ``<measure>`` and ``<measure>_rows``)."""
    datamodule, module = built(run_dir)
    n_users = datamodule.load().n_users
    found = {int(EPOCH.fullmatch(p.name).group(1)): p for p in (run_dir / "epochs").glob("*.ckpt")}  # type: ignore[union-attr]
    epochs = np.array(sorted(found))
    sums: dict[str, list[np.ndarray]] = {m: [] for m in MEASURES}
    rows: dict[str, np.ndarray] = {}
    for epoch in epochs:
        scored = score_rows(datamodule, module, found[epoch])
        val = scored[scored.stage == names.VAL]
        parts = {"val3": val, "val1": last_row_per_user(val), "test": scored[scored.stage == names.TEST]}
        for measure, frame in parts.items():
            sums[measure].append(user_matrix(frame, np.arange(n_users))[0])
            rows[f"{measure}_rows"] = np.bincount(frame.user.to_numpy(), minlength=n_users).astype(np.float64)
    return epochs, {m: np.stack(v) for m, v in sums.items()} | rows


def bootstrap_picks(sums: dict[str, np.ndarray], n_boot: int = N_BOOT, seed: int = 0) -> dict[str, float]:
    """Resample users: how often the val3-picked epoch is better / worse on test than the val1-picked one, and the
    mean test NDCG@10 at each pick (curves recomputed on every resample)."""
    n_users = sums["test"].shape[1]
    weights = np.random.default_rng(seed).multinomial(n_users, np.full(n_users, 1 / n_users), size=n_boot)  # (B, U)
    curves = {m: (weights @ sums[m].T) / (weights @ sums[f"{m}_rows"])[:, None] for m in MEASURES}  # (B, E)
    at = {v: np.take_along_axis(curves["test"], curves[v].argmax(1)[:, None], 1)[:, 0] for v in ("val3", "val1")}
    diff = at["val3"] - at["val1"]
    return {
        "val3_test": float(at["val3"].mean()),
        "val1_test": float(at["val1"].mean()),
        "p_val3_better": float((diff > 0).mean()),
        "p_val3_worse": float((diff < 0).mean()),
    }


def curves_of(epochs: np.ndarray, sums: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per saved epoch: mean NDCG@10 on val3, val1 and test."""
    means = {m: sums[m].sum(1) / sums[f"{m}_rows"].sum() for m in MEASURES}
    return pd.DataFrame({"epoch": epochs, **means})


def check_against_timeline(run_dir: Path, curves: pd.DataFrame) -> None:
    """Re-scoring reproduces the val NDCG@10 the run logged after every epoch (timeline.jsonl)."""
    logged = [json.loads(line) for line in (run_dir / "timeline.jsonl").read_text().splitlines() if line.strip()]
    by_epoch = {int(r["epoch"]): r[KEY] for r in logged if KEY in r}
    for epoch, val3 in zip(curves.epoch, curves.val3, strict=True):
        if epoch in by_epoch:
            assert abs(by_epoch[epoch] - val3) < 1e-5, (run_dir, epoch, by_epoch[epoch], val3)


def run_summary(curves: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {"epochs": len(curves), "test_best_epoch": int(curves.epoch[curves.test.idxmax()])}
    out["test_best"] = float(curves.test.max())
    late = curves[curves.epoch >= WARMUP]
    for val in ("val3", "val1"):
        pick = int(curves[val].idxmax())
        out[val] = {
            "epoch": int(curves.epoch[pick]),
            "val": float(curves[val][pick]),
            "test_at_pick": float(curves.test[pick]),
            "spearman_all": float(curves[val].corr(curves.test, method="spearman")),
            "spearman_late": float(late[val].corr(late.test, method="spearman")),
        }
    return out


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "| seed | epochs | test-best epoch (test) | val3 pick: epoch, test | val1 pick: epoch, test "
        f"| Spearman val3 / val1 vs test, all epochs | same, epochs >= {WARMUP} "
        "| bootstrap: test at val3 / val1 pick | P(val3 pick better / worse on test) |",
        "|---" * 9 + "|",
    ]
    for seed, s in summary["runs"].items():
        v3, v1, b = s["val3"], s["val1"], s["bootstrap"]
        lines.append(
            f"| {seed} | {s['epochs']} | {s['test_best_epoch']} ({s['test_best']:.4f}) "
            f"| {v3['epoch']}, {v3['test_at_pick']:.4f} | {v1['epoch']}, {v1['test_at_pick']:.4f} "
            f"| {v3['spearman_all']:.3f} / {v1['spearman_all']:.3f} "
            f"| {v3['spearman_late']:.3f} / {v1['spearman_late']:.3f} "
            f"| {b['val3_test']:.4f} / {b['val1_test']:.4f} | {b['p_val3_better']:.2f} / {b['p_val3_worse']:.2f} |"
        )
    m = summary["mean"]
    lines += [
        "",
        f"Mean over {len(summary['runs'])} seeds: test at the val3 pick {m['val3_test']:.4f}, at the val1 pick "
        f"{m['val1_test']:.4f}, at the test-best epoch {m['test_best']:.4f} (an optimistic oracle); Spearman over "
        f"epochs >= {WARMUP}: val3 {m['val3_spearman_late']:.3f}, val1 {m['val1_spearman_late']:.3f}.",
    ]
    return "\n".join(lines) + "\n"


def plot(curves: dict[str, pd.DataFrame], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3.2), sharey=True, squeeze=False)
    for ax, (seed, c) in zip(axes[0], curves.items(), strict=True):
        for column, colour in (("val3", "tab:orange"), ("val1", "tab:blue"), ("test", "black")):
            ax.plot(c.epoch, c[column], color=colour, lw=1.2, label=column)
            if column != "test":
                ax.axvline(c.epoch[c[column].idxmax()], color=colour, lw=0.8, ls="--")
        ax.set_title(f"seed {seed}")
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("NDCG@10")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    curves: dict[str, pd.DataFrame] = {}
    runs: dict[str, dict[str, Any]] = {}
    for run_dir in sorted(p for p in args.runs.iterdir() if RUN.fullmatch(p.name) and (p / "epochs").is_dir()):
        seed = RUN.fullmatch(run_dir.name).group(1)  # type: ignore[union-attr]
        epochs, sums = epoch_sums(run_dir)
        curves[seed] = curves_of(epochs, sums)
        check_against_timeline(run_dir, curves[seed])
        runs[seed] = run_summary(curves[seed]) | {"bootstrap": bootstrap_picks(sums)}
        print(run_dir.name, json.dumps(runs[seed]), flush=True)
    mean: dict[str, float] = {}
    for v in ("val3", "val1"):
        mean[f"{v}_test"] = float(np.mean([r[v]["test_at_pick"] for r in runs.values()]))
        mean[f"{v}_spearman_late"] = float(np.mean([r[v]["spearman_late"] for r in runs.values()]))
    mean["test_best"] = float(np.mean([r["test_best"] for r in runs.values()]))
    summary = {"runs": runs, "mean": mean, "curves": {s: c.to_dict(orient="list") for s, c in curves.items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "epochs.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "epochs.md").write_text(markdown(summary))
    plot(curves, args.out / "epochs.png")
    print(markdown(summary))


if __name__ == "__main__":
    main()
