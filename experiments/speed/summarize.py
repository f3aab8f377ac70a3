"""Tables of experiments/speed/run.sh's runs (timeline.jsonl and metrics.json of each run folder) → results.md.

    .venv/bin/python experiments/speed/summarize.py --runs outputs/speed --out experiments/speed/results.md

Epoch time = mean ``epoch_train_s`` of the epochs after the first (the first pays one-off costs: allocator warm-up,
torch.compile); evaluation = mean ``val_s`` (all 22,363 Beauty users per pass). Model FLOPs per epoch are an
estimate: positions x (6 V D for the output layer's three products + 6 n_layers (8 D^2 + 4 D F) for the blocks'
projections and FFN, forward + backward), attention's O(L) part left out; "% of peak" divides the achieved rate by
the best bf16 matrix-product rate measured by gemm_peak.py in the same invocation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean

import yaml

VARIANTS = ("fp32-plain", "fp32-fused", "bf16-plain", "bf16-fused", "bf16-fused-compiled")
NDCG = "val/ndcg@10"


def timeline(run: Path) -> list[dict]:
    path = run / "timeline.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


BEAUTY_ITEMS = 12_101  # the S3-Rec Beauty catalog (the epoch part runs on Beauty only)


def model_flops(run: Path, positions: int) -> float:
    model = yaml.safe_load((run / "config.yaml").read_text())["model"]
    d, f, layers = model["hidden_size"], model["ffn_size"], model["n_layers"]
    return positions * (6.0 * BEAUTY_ITEMS * d + 6.0 * layers * (8 * d * d + 4 * d * f))


def epoch_table(runs: Path, peak: float | None) -> list[str]:
    rows = ["| variant | s / training epoch | vs fp32 plain | s / full evaluation (22,363 users) | vs fp32 plain "
            "| model GFLOP/s | % of bf16 GEMM peak | val NDCG@10 after 3 epochs |", "|---" * 8 + "|"]
    base_epoch = base_val = None
    for name in VARIANTS:
        run = runs / "epoch" / name
        epochs = timeline(run)
        if len(epochs) < 2:
            continue
        train_s = mean(e["epoch_train_s"] for e in epochs[1:])
        val_s = mean(e["val_s"] for e in epochs)
        base_epoch, base_val = (train_s, val_s) if base_epoch is None else (base_epoch, base_val)
        rate = model_flops(run, epochs[-1]["train_positions"]) / train_s / 1e9
        share = f"{100 * rate / peak:.0f} %" if peak else "—"
        rows.append(f"| {name} | {train_s:.2f} | {base_epoch / train_s:.2f}x | {val_s:.2f} | {base_val / val_s:.2f}x "
                    f"| {rate:.0f} | {share} | {epochs[-1][NDCG]:.4f} |")
    return rows


def first_reaching(epochs: list[dict], threshold: float) -> dict | None:
    return next((e for e in epochs if e.get(NDCG, 0.0) >= threshold), None)


def ttq_table(runs: Path, threshold: float, part: str = "ttq") -> list[str]:
    rows = [f"| run | s from process start to val NDCG@10 >= {threshold} | epoch | best val NDCG@10 | s / epoch |",
            "|---" * 5 + "|"]
    for run in sorted((runs / part).glob("*")) if (runs / part).exists() else []:
        epochs = timeline(run)
        if not epochs:
            continue
        hit = first_reaching(epochs, threshold)
        when = f"{hit['process_elapsed_s']:.1f}" if hit else "not reached"
        rows.append(f"| {run.name} | {when} | {hit['epoch'] + 1 if hit else '—'} | "
                    f"{max(e[NDCG] for e in epochs):.4f} | {mean(e['epoch_train_s'] for e in epochs):.2f} |")
    return rows


ZOO = ("sasrec", "bert4rec", "gru4rec", "lrurec", "hstu", "bsarec", "fmlp")


def zoo_table(runs: Path) -> list[str]:
    """Each zoo model's Beauty epoch (the second: the first holds one-time set-up) and validation pass vs SASRec's."""
    rows = ["| model | s / training epoch | vs SASRec | training windows / epoch | s / full evaluation | vs SASRec |",
            "|---" * 6 + "|"]
    base: tuple[float, float] | None = None
    for name in ZOO:
        epochs = timeline(runs / "zoo" / name)
        if len(epochs) < 2:
            continue
        train_s, val_s = epochs[-1]["epoch_train_s"], mean(e["val_s"] for e in epochs)
        base = base or (train_s, val_s)
        rows.append(f"| {name} | {train_s:.2f} | {train_s / base[0]:.2f}x | {epochs[-1]['train_sequences']:,} | "
                    f"{val_s:.2f} | {val_s / base[1]:.2f}x |")
    return rows


def sampled_table(runs: Path, threshold: float) -> list[str]:
    rows = [f"| precision | objective | s to val NDCG@10 >= {threshold} | epochs | best val NDCG@10 (epoch) "
            "| s / epoch | test NDCG@10 |", "|---" * 7 + "|"]
    base = runs / "sampled"
    for run in sorted(base.glob("*/*")) if base.exists() else []:
        epochs = timeline(run)
        if not epochs:
            continue
        hit = first_reaching(epochs, threshold)
        best = max(epochs, key=lambda e: e[NDCG])
        metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
        rows.append(f"| {run.parent.name} | {run.name} | {hit['process_elapsed_s']:.1f} | {hit['epoch'] + 1} | "
                    if hit else f"| {run.parent.name} | {run.name} | not reached | — | ")
        rows[-1] += (f"{best[NDCG]:.4f} ({best['epoch'] + 1}) | {mean(e['epoch_train_s'] for e in epochs):.2f} | "
                     f"{metrics.get('test/ndcg@10', float('nan')):.4f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("outputs/speed"))
    parser.add_argument("--out", type=Path, default=Path("experiments/speed/results.md"))
    args = parser.parse_args()
    gemm_path = args.runs / "gemm.json"
    gemm = json.loads(gemm_path.read_text()) if gemm_path.exists() else None
    peak = max(gemm["bf16"].values()) if gemm else None
    lines = ["# experiments/speed results (generated by summarize.py)", ""]
    if gemm:
        lines += [f"Matrix-product rates at {gemm['shape']} on {gemm['threads']} threads (GFLOP/s):", "",
                  "| dtype | logits h E^T | dL/dh = G E | dL/dE = G^T h |", "|---|---|---|---|"]
        lines += [f"| {k} | {gemm[k]['logits']:.0f} | {gemm[k]['grad_hidden']:.0f} | {gemm[k]['grad_table']:.0f} |"
                  for k in ("fp32", "bf16")]
        lines += [""]
    lines += ["## Beauty SASRec (64/2/2, len 50, batch 256): epoch and evaluation", "", *epoch_table(args.runs, peak),
              "", "## ml-100k: time to quality", "", *ttq_table(args.runs, 0.060), "",
              "## Beauty: time to quality", "", *ttq_table(args.runs, 0.055, "ttq-beauty"), "",
              "## ml-100k: sampled objectives as a speed lever", "", *sampled_table(args.runs, 0.060), "",
              "## Beauty: the zoo's epoch and evaluation time next to SASRec's", "", *zoo_table(args.runs), ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
