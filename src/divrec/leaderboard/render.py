"""``<out>/leaderboard.md``, ``leaderboard.csv`` and ``leaderboard.png`` from the leaderboard's run folders: the
table (best model per dataset in bold), its footnotes, the protocol of every row, and the failed and unfinished
cells with their one-line errors."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from divrec import names
from divrec.leaderboard.cells import CONTROLS, ENSEMBLE_DEFAULTS, Plan, Row
from divrec.leaderboard.report import (
    NDCG10,
    VAL_NDCG10,
    CellResult,
    Entry,
    best_rows,
    entries,
    frame,
    read_cell,
    row_protocol,
    val_choice,
)
from divrec.report import write_atomic

ALPHA = 0.05  # p-values below it get a *


def _ndcg(e: Entry, n_seeds: int, bold: bool) -> str:
    if e.n == 0:
        return "–"
    text = f"{e.mean:.4f}" + (f" ± {e.std:.4f}" if e.n > 1 else "")
    text = f"**{text}**" if bold else text
    return text + (f" ({e.n}/{n_seeds} seeds)" if e.n < n_seeds else "")


def _versus(e: Entry, row: Row, plan: Plan) -> str:
    if row == Row(plan.baseline):
        return "baseline"
    if e.test is None:
        return "–"
    p = e.test.permutation_p
    return f"{e.test.mean_diff:+.4f} (p {p:.2g}{'*' if p < ALPHA else ''})"


def _seconds(e: Entry) -> tuple[str, str]:
    if e.n == 0:
        return "–", "–"
    per_epoch = f"{e.s_per_epoch:.1f}" if math.isfinite(e.s_per_epoch) else f"fit {e.train_s:.1f}"
    return per_epoch, f"{e.wall_s:.0f}" if math.isfinite(e.wall_s) else "–"


def table_lines(table: dict[tuple[Row, str], Entry], plan: Plan) -> list[str]:
    base = plan.baseline
    header = ["model"]
    for d in plan.datasets:
        header += [f"{d} NDCG@10", f"{d} Δ vs {base} (p)", f"{d} s/epoch", f"{d} wall s"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    best = best_rows(table, plan)
    for row in plan.rows():
        cells = [row.label]
        for d in plan.datasets:
            e = table[row, d]
            cells += [_ndcg(e, len(plan.seeds), row in best[d]), _versus(e, row, plan), *_seconds(e)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def footnotes(plan: Plan) -> list[str]:
    base = plan.baseline
    notes = [
        f"- NDCG@10: `{NDCG10}` of the checkpoint `divrec train` selects on validation (`{names.MONITOR}` by "
        "default: model and epoch chosen on validation only), mean ± sample std over the completed seeds "
        f"({', '.join(str(s) for s in plan.seeds)}); **bold**: the best model per dataset (controls excluded).",
        f"- Δ vs {base} (p): mean per-user difference in test NDCG@10 against the {base} row, and the two-sided "
        "paired sign-flip permutation test over the test users both rows evaluated (`divrec.compare.stats`), "
        "**pooled over seeds**: each user's NDCG@10 is first averaged over the seeds both rows completed, then "
        f"paired by user; * p < {ALPHA}." + ("" if base in plan.models else f" No {base} row here: no test."),
        "- s/epoch: median training seconds per epoch (`timeline.jsonl`: median over epochs, then over seeds); "
        "closed-form baselines show their fit time (an ensemble: its weight search). wall s: summed over seeds, "
        "each from Hydra's job start to the final `status.json` (its last attempt; an ensemble's excludes its "
        f"members'); timings compare only when cells ran one at a time (this command: jobs={plan.jobs}).",
    ]
    for row in plan.ensemble_rows():
        notes.append(f"- {row.label}: seed k ranks by the weighted mean of the seed-k cells of "
                     f"{', '.join(row.members)} (`divrec train {' '.join(ENSEMBLE_DEFAULTS)}`, then the overrides "
                     "below).")  # fmt: skip
    for control in plan.controls:
        notes.append(f"- `<model>+{control}`: {CONTROLS[control][1]} ({', '.join(CONTROLS[control][0])}).")
    if plan.overrides:
        notes.append(f"- Every cell: `{' '.join(plan.overrides)}`.")
    for scope, overrides in plan.scoped.items():
        notes.append(f"- {scope} cells (controls included) also: `{' '.join(overrides)}`.")
    return notes


def choice_lines(table: dict[tuple[Row, str], Entry], plan: Plan) -> list[str]:
    """Per dataset, the row a choice across models on validation only picks, and its test score."""
    lines = ["", "## Chosen on validation", "",
             f"The model row with the highest mean `{VAL_NDCG10}` per dataset, and its test NDCG@10 (the number to "
             "quote under validation-only selection; a learned row's validation is optimistic, its epoch was chosen "
             "on it, and so is an ensemble's whose weights were):", ""]  # fmt: skip
    for dataset, row in val_choice(table, plan).items():
        if row is None:
            lines.append(f"- {dataset}: no completed row")
            continue
        e = table[row, dataset]
        lines.append(f"- {dataset}: {row.label} (val {e.val_mean:.4f}, test {_ndcg(e, len(plan.seeds), False)})")
    return lines


def problem_lines(results: list[CellResult]) -> list[str]:
    failed = [r for r in results if r.state == names.FAILED]
    unfinished = [r for r in results if r.state not in (names.COMPLETED, names.FAILED)]
    lines: list[str] = []
    if failed:
        lines += ["", f"## Failed cells ({len(failed)})", "", *(f"- {r.cell}: {r.error}" for r in failed)]
    if unfinished:
        lines += ["", f"## Not finished ({len(unfinished)})", "", *(f"- {r.cell}: {r.state}" for r in unfinished)]
    return lines


def render_markdown(results: list[CellResult], table: dict[tuple[Row, str], Entry], plan: Plan) -> str:
    completed = sum(r.state == names.COMPLETED for r in results)
    lines = [
        "# Leaderboard: test NDCG@10",
        "",
        f"{len(plan.rows())} rows x {len(plan.datasets)} datasets x {len(plan.seeds)} seeds: {completed} of "
        f"{len(results)} cells completed. Run folders: `{plan.out / 'runs'}`.",
        "",
        *table_lines(table, plan),
        "",
        *footnotes(plan),
        "",
        "## Protocol (from each run's resolved config.yaml)",
        "",
        *(f"- {row.label}: {row_protocol(table, row, plan)}" for row in plan.rows()),
        *choice_lines(table, plan),
        *problem_lines(results),
    ]
    return "\n".join(lines) + "\n"


def plot(table: dict[tuple[Row, str], Entry], plan: Plan, path: Path) -> Path:
    """Grouped bars: one group per dataset, one bar per row (mean test NDCG@10, std as the error bar); a control
    row has its model's colour, hatched."""
    rows = plan.rows()
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.5 + 0.3 * len(rows) * len(plan.datasets)), 3.8))
    x = np.arange(len(plan.datasets), dtype=np.float64)
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(plan.row_names())}
    for i, row in enumerate(rows):
        values = [table[row, d] for d in plan.datasets]
        shown = [j for j, e in enumerate(values) if e.n]
        if not shown:
            continue
        means = [values[j].mean for j in shown]
        errors = [values[j].std if math.isfinite(values[j].std) else 0.0 for j in shown]
        ax.bar(x[shown] + (i - (len(rows) - 1) / 2) * width, means, width, yerr=errors, capsize=2, label=row.label,
               color=colours[row.model], hatch="//" if row.control else None, edgecolor="white")  # fmt: skip
    ax.set_xticks(x, plan.datasets)
    ax.set_xlim(-0.5, len(plan.datasets) - 0.5)
    ax.set_ylabel("test NDCG@10")
    ax.set_title("test NDCG@10: mean ± std over seeds", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_report(plan: Plan) -> tuple[list[Path], str, list[CellResult]]:
    """Read every cell and write the three files; returns them, the Markdown and the cells read."""
    results = [read_cell(cell, plan.out) for cell in plan.cells()]
    table = entries(results, plan)
    markdown = render_markdown(results, table, plan)
    plan.out.mkdir(parents=True, exist_ok=True)
    md, csv, png = (plan.out / name for name in (names.LEADERBOARD_MD, names.LEADERBOARD_CSV, names.LEADERBOARD_PNG))
    write_atomic(md, markdown)
    write_atomic(csv, frame(table, plan).to_csv(index=False))
    return [md, csv, plot(table, plan, png)], markdown, results
