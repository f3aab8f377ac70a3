"""Re-score the runs of experiments/val_items/run.sh per evaluation row and summarise how validation tracks test.

For every run folder ``<runs>/k<val_items>_s<seed>`` and each of its checkpoints (best.ckpt = the reported model,
last.ckpt = the model 10 epochs later, when early stopping gave up), this computes NDCG@10 of every validation and
test row, exactly as evaluation does (full ranking, history excluded, pessimistic ties), and writes:

- ``results.json``: per run the reported metrics, and per checkpoint the mean val / test NDCG@10 and their bootstrap
  standard errors over USERS (users resampled, all of a user's rows kept together);
- ``results.md``: the tables quoted in README.md;
- ``per_row.csv.gz``: run, checkpoint, stage, user, history length, NDCG@10 of every row.

Validation of a val_items=3 model is also scored on its last validation row per user only ("k3 -> 1 row"): the same
model and the classic leave-one-out target, so the two standard errors differ only in how many rows are averaged.
    python experiments/val_items/analyze.py outputs/val_items --out experiments/val_items
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from divrec import names
from divrec.checkpointing import read_checkpoint
from divrec.metrics.ranking import mask_scores, target_ranks
from divrec.pipeline import build

K = 10
N_BOOT = 2000
RUN = re.compile(r"k(\d+)_s(\d+)")
NDCG = names.metric_key(names.VAL, "ndcg", K), names.metric_key(names.TEST, "ndcg", K)


def score_rows(datamodule: Any, module: Any, ckpt_path: Path) -> pd.DataFrame:
    """NDCG@K of every val / test row (user, history length) under the weights in ``ckpt_path``."""
    module.load_state_dict(read_checkpoint(ckpt_path)["state_dict"])
    module.eval()
    frames = []
    for stage, loader in ((names.VAL, datamodule.val_dataloader()), (names.TEST, datamodule.test_dataloader())):
        for batch in loader:
            with torch.no_grad():
                scores = module.scores(batch[names.HISTORY], batch[names.USER_INDEX])
            target, seen = batch[names.TARGET], batch[names.SEEN]
            ranks = target_ranks(mask_scores(scores, seen, target, inplace=True), target).double()
            ndcg = torch.where(ranks <= K, 1.0 / torch.log2(ranks + 1.0), 0.0)
            frames.append(
                pd.DataFrame(
                    {
                        "stage": stage,
                        "user": batch[names.USER_INDEX].numpy(),
                        "history": (seen != 0).sum(1).numpy(),
                        "ndcg": ndcg.numpy(),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def built(run_dir: Path) -> tuple[Any, Any]:
    """The run's datamodule (set up) and module, from its saved config."""
    datamodule, module = build(OmegaConf.load(run_dir / names.CONFIG_FILE))
    datamodule.setup()
    return datamodule, module


def rows_of(run_dir: Path) -> pd.DataFrame:
    """NDCG@K of every val / test row for best.ckpt and last.ckpt of one run."""
    datamodule, module = built(run_dir)
    frames = [
        score_rows(datamodule, module, run_dir / "checkpoints" / f"{ckpt}.ckpt").assign(ckpt=ckpt)
        for ckpt in ("best", "last")
    ]
    return pd.concat(frames, ignore_index=True)


def last_row_per_user(frame: pd.DataFrame) -> pd.DataFrame:
    """Each user's validation row with the longest history: the classic leave-one-out target."""
    return frame.loc[frame.groupby("user")["history"].idxmax()]


def user_matrix(frame: pd.DataFrame, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U,) per-user NDCG sums and row counts, aligned with ``users``."""
    grouped = frame.groupby("user")["ndcg"].agg(["sum", "count"]).reindex(users, fill_value=0)
    return grouped["sum"].to_numpy(), grouped["count"].to_numpy()


def bootstrap_se(parts: list[tuple[np.ndarray, np.ndarray]], weights: list[float], seed: int = 0) -> float:
    """Standard error of ``sum_i w_i * mean_i`` where each mean is a row mean (sum / count over users), resampling
    the SAME users for every part (paired)."""
    rng = np.random.default_rng(seed)
    n_users = len(parts[0][0])
    draws = rng.integers(0, n_users, size=(N_BOOT, n_users))
    stats = np.zeros(N_BOOT)
    for (sums, counts), weight in zip(parts, weights, strict=True):
        stats += weight * sums[draws].sum(1) / counts[draws].sum(1)
    return float(stats.std(ddof=1))


def checkpoint_summary(rows: pd.DataFrame, users: np.ndarray) -> dict[str, Any]:
    val, test = rows[rows.stage == names.VAL], rows[rows.stage == names.TEST]
    out: dict[str, Any] = {
        "val_rows": len(val),
        "val_ndcg": float(val.ndcg.mean()),
        "test_ndcg": float(test.ndcg.mean()),
        "val_se": bootstrap_se([user_matrix(val, users)], [1.0]),
        "test_se": bootstrap_se([user_matrix(test, users)], [1.0]),
    }
    last = last_row_per_user(val)
    out["val_last_row_ndcg"] = float(last.ndcg.mean())
    out["val_last_row_se"] = bootstrap_se([user_matrix(last, users)], [1.0])
    return out


def paired_se(a: pd.DataFrame, b: pd.DataFrame, users: np.ndarray, stage: str, last_only: bool = False) -> float:
    """Bootstrap SE (users resampled) of the difference of mean NDCG@K between two checkpoints on ``stage``."""
    pick = (lambda f: last_row_per_user(f)) if last_only else (lambda f: f)
    parts = [user_matrix(pick(f[f.stage == stage]), users) for f in (a, b)]
    return bootstrap_se(parts, [1.0, -1.0])


def analyse(runs: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    results: dict[str, Any] = {"runs": {}, "pairs": []}
    every: list[pd.DataFrame] = []
    for run_dir in sorted(p for p in runs.iterdir() if RUN.fullmatch(p.name) and (p / names.METRICS_FILE).is_file()):
        k, seed = (int(g) for g in RUN.fullmatch(run_dir.name).groups())  # type: ignore[union-attr]
        metrics = json.loads((run_dir / names.METRICS_FILE).read_text())
        rows = rows_of(run_dir).assign(run=run_dir.name)
        users = np.unique(rows.user)
        entry: dict[str, Any] = {"val_items": k, "seed": seed, "epochs": metrics.get(names.EPOCHS)}
        entry |= {"reported_val_ndcg": metrics[NDCG[0]], "reported_test_ndcg": metrics[NDCG[1]]}
        entry |= {ckpt: checkpoint_summary(rows[rows.ckpt == ckpt], users) for ckpt in ("best", "last")}
        for stage, key in zip(("val_ndcg", "test_ndcg"), NDCG, strict=True):  # re-scoring reproduces the run
            assert abs(entry["best"][stage] - metrics[key]) < 1e-5, (run_dir, stage, entry["best"][stage], metrics[key])
        results["runs"][run_dir.name] = entry
        every.append(rows)
        print(run_dir.name, json.dumps(entry), flush=True)
    table = pd.concat(every, ignore_index=True)
    results["pairs"] = model_pairs(table)
    return results, table


def model_pairs(table: pd.DataFrame) -> list[dict[str, Any]]:
    """For val_items=3 runs: the SE of a model-vs-model difference on validation (all rows / last row per user) and
    on test, for every pair of checkpoints (different seeds, and best vs last of one seed)."""
    models = [(run, ckpt) for run in sorted(table.run.unique()) if run.startswith("k3_") for ckpt in ("best", "last")]
    users = np.unique(table.user)
    out = []
    for i, (run_a, ckpt_a) in enumerate(models):
        for run_b, ckpt_b in models[i + 1 :]:
            a = table[(table.run == run_a) & (table.ckpt == ckpt_a)]
            b = table[(table.run == run_b) & (table.ckpt == ckpt_b)]
            means = {
                f"{s}_diff": float(a[a.stage == s].ndcg.mean() - b[b.stage == s].ndcg.mean())
                for s in (names.VAL, names.TEST)
            }
            last_diff = last_row_per_user(a[a.stage == names.VAL]).ndcg.mean()
            last_diff -= last_row_per_user(b[b.stage == names.VAL]).ndcg.mean()
            kind = "same run" if run_a == run_b else "/".join(sorted((ckpt_a, ckpt_b)))
            out.append(
                {
                    "kind": kind,  # last/last: neither side was chosen on this validation set (no selection bias)
                    "a": f"{run_a}/{ckpt_a}",
                    "b": f"{run_b}/{ckpt_b}",
                    **means,
                    "val_last_row_diff": float(last_diff),
                    "val_diff_se": paired_se(a, b, users, names.VAL),
                    "val_last_row_diff_se": paired_se(a, b, users, names.VAL, last_only=True),
                    "test_diff_se": paired_se(a, b, users, names.TEST),
                }
            )
    return out


def std(x: np.ndarray) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else float("nan")


def fmt(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    runs = results["runs"]
    lines = [
        "### Per run (best checkpoint = the reported model; SE = bootstrap over users)",
        "",
        "| val_items | seed | epochs | val NDCG@10 | test NDCG@10 | val - test | val SE | test SE "
        "| val, last row only | its SE |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs.values():
        best = r["best"]
        last_row = (fmt(best["val_last_row_ndcg"]), fmt(best["val_last_row_se"])) if r["val_items"] > 1 else ("", "")
        lines.append(
            f"| {r['val_items']} | {r['seed']} | {r['epochs']} | {fmt(r['reported_val_ndcg'])} "
            f"| {fmt(r['reported_test_ndcg'])} | {r['reported_val_ndcg'] - r['reported_test_ndcg']:+.4f} "
            f"| {fmt(best['val_se'])} | {fmt(best['test_se'])} | {last_row[0]} | {last_row[1]} |"
        )
    lines += ["", "### Across seeds (mean ± std over seeds of the reported numbers)", "",
              "| val_items | runs | val NDCG@10 | test NDCG@10 | mean abs(val - test) |", "|---|---|---|---|---|"]
    for k in sorted({r["val_items"] for r in runs.values()}):
        group = [r for r in runs.values() if r["val_items"] == k]
        val = np.array([r["reported_val_ndcg"] for r in group])
        test = np.array([r["reported_test_ndcg"] for r in group])
        lines.append(
            f"| {k} | {len(group)} | {fmt(val.mean())} ± {fmt(std(val))} | {fmt(test.mean())} ± {fmt(std(test))} "
            f"| {fmt(np.abs(val - test).mean())} |"
        )
    pairs = results["pairs"]
    if pairs:
        lines += ["", "### Model-vs-model differences among the val_items=3 checkpoints (± bootstrap SE over users)"]
        header = "| pair | a | b | val diff, 3 rows/user | val diff, last row only | test diff |"
        lines += ["", header, "|---" * 6 + "|"]
        for p in pairs:
            lines.append(
                f"| {p['kind']} | {p['a']} | {p['b']} | {p['val_diff']:+.4f} ± {fmt(p['val_diff_se'])} "
                f"| {p['val_last_row_diff']:+.4f} ± {fmt(p['val_last_row_diff_se'])} "
                f"| {p['test_diff']:+.4f} ± {fmt(p['test_diff_se'])} |"
            )
        ratio = np.mean([p["val_diff_se"] / p["val_last_row_diff_se"] for p in pairs if p["val_last_row_diff_se"] > 0])
        lines += ["", f"Mean SE ratio (3 rows / last row) of a difference: {ratio:.3f} over {len(pairs)} pairs."]
        for kind in sorted({p["kind"] for p in pairs}):
            group = [p for p in pairs if p["kind"] == kind]
            agree = {key: sum(np.sign(p[key]) == np.sign(p["test_diff"]) for p in group)
                     for key in ("val_diff", "val_last_row_diff")}
            lines.append(f"- {kind} pairs: the sign of the val difference agrees with test in {agree['val_diff']} "
                         f"(3 rows) and {agree['val_last_row_diff']} (last row) of {len(group)}.")
        clear = [p for p in pairs if abs(p["test_diff"]) > 2 * p["test_diff_se"]]  # test itself tells them apart
        agree = {key: sum(np.sign(p[key]) == np.sign(p["test_diff"]) for p in clear)
                 for key in ("val_diff", "val_last_row_diff")}
        lines.append(f"- pairs whose test difference exceeds 2 SE: the val sign agrees in {agree['val_diff']} (3 rows) "
                     f"and {agree['val_last_row_diff']} (last row) of {len(clear)} (pairs share models)")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Best checkpoint of every run: val vs test NDCG@10 with ±1 bootstrap SE bars, one colour per val_items."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for k, colour in ((1, "tab:blue"), (3, "tab:orange")):
        runs = [r for r in results["runs"].values() if r["val_items"] == k]
        if not runs:
            continue
        ax.errorbar(
            [r["reported_val_ndcg"] for r in runs], [r["reported_test_ndcg"] for r in runs],
            xerr=[r["best"]["val_se"] for r in runs], yerr=[r["best"]["test_se"] for r in runs],
            fmt="o", color=colour, capsize=3, label=f"val_items={k}",
        )
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--", label="val = test")
    ax.set_xlabel("best val NDCG@10 (± bootstrap SE over users)")
    ax.set_ylabel("test NDCG@10 (± SE)")
    ax.set_title("SASRec on ml-100k, one point per seed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    results, table = analyse(args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    table[["run", "ckpt", "stage", "user", "history", "ndcg"]].to_csv(
        args.out / "per_row.csv.gz", index=False, float_format="%.6g"
    )
    (args.out / "results.md").write_text(markdown(results))
    plot(results, args.out / "val_vs_test.png")
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
