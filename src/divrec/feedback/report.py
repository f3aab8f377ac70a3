"""What the feedback loop writes: a table (CSV + Markdown), a PNG, TensorBoard curves and ``metrics.json``."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import matplotlib
import pandas as pd
from torch.utils.tensorboard import SummaryWriter

from divrec import names
from divrec.report import write_metrics

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TABLE_CSV = "feedback.csv"
TABLE_MD = "feedback.md"
PLOT = "feedback.png"
SHOWN_K = 10  # the cut-off shown in the table, plot and curves
UPDATE_S = "update_s"  # seconds the strategy spent producing the model served in the window


@dataclasses.dataclass
class FeedbackRow:
    """One strategy evaluated on one window: the window's start time, how many users were evaluated, how long the
    update before it took and the test metrics."""

    strategy: str
    window: int
    start: float
    users: int
    update_s: float
    metrics: dict[str, float]


def write_report(output_dir: Path, rows: list[FeedbackRow], initial_s: float) -> dict[str, float]:
    """Write every output; return the flat metrics (also in metrics.json)."""
    frame = to_frame(rows)
    frame.to_csv(output_dir / TABLE_CSV, index=False)
    (output_dir / TABLE_MD).write_text(markdown(frame, initial_s))
    plot(frame, output_dir / PLOT)
    log_curves(frame, output_dir / "tensorboard")
    metrics = flat_metrics(frame, initial_s)
    write_metrics(output_dir, metrics)
    print(f"\n{markdown(frame, initial_s)}\nrun folder: {output_dir}", flush=True)
    return metrics


def to_frame(rows: list[FeedbackRow]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "strategy": r.strategy,
                "window": r.window,
                "start": _when(r.start),
                "users": r.users,
                UPDATE_S: round(r.update_s, 2),
                **r.metrics,
            }
            for r in rows
        ]
    )


def _metric(name: str) -> str:
    return names.metric_key(names.TEST, name, SHOWN_K)


def markdown(frame: pd.DataFrame, initial_s: float) -> str:
    """Per window, each strategy's NDCG@10 / HR@10 and update seconds; then means over the updated windows."""
    ndcg, hr = _metric(names.NDCG), _metric(names.HR)
    lines = [f"| window | start | users | strategy | {ndcg} | {hr} | update s |", "|---|---|---|---|---|---|---|"]
    for r in frame.sort_values(["window", "strategy"], kind="stable").to_dict("records"):
        lines.append(
            f"| {r['window']} | {r['start']} | {r['users']} | {r['strategy']} | {r[ndcg]:.4f} | {r[hr]:.4f} | "
            f"{r[UPDATE_S]:.1f} |"
        )
    lines += [
        "",
        f"Initial model: {initial_s:.1f} s of training. Means over windows 2+ (served after at least one update):",
        "",
        f"| strategy | mean {ndcg} | mean {hr} | total update s |",
        "|---|---|---|---|",
    ]
    for strategy, group in frame[frame.window > 1].groupby("strategy", sort=False):
        means = f"{group[ndcg].mean():.4f} | {group[hr].mean():.4f}"
        lines.append(f"| {strategy} | {means} | {group[UPDATE_S].sum():.1f} |")
    return "\n".join(lines) + "\n"


def plot(frame: pd.DataFrame, path: Path) -> None:
    ndcg = _metric(names.NDCG)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for strategy, group in frame.groupby("strategy", sort=False):
        left.plot(group.window, group[ndcg], marker="o", label=strategy)
        right.plot(group.window, group[UPDATE_S].cumsum(), marker="o", label=strategy)
    left.set(xlabel="window", ylabel=ndcg, title="accuracy on each new window")
    right.set(xlabel="window", ylabel="cumulative update seconds", title="time spent updating")
    for ax in (left, right):
        ax.set_xticks(sorted(frame.window.unique()))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def log_curves(frame: pd.DataFrame, folder: Path) -> None:
    """One TensorBoard run per strategy (``tensorboard/<strategy>``), so the curves overlay in one chart; step =
    window."""
    for strategy, group in frame.groupby("strategy", sort=False):
        with SummaryWriter(str(folder / strategy)) as writer:
            for r in group.to_dict("records"):
                for column in _metric_columns(frame):
                    writer.add_scalar(column, r[column], r["window"])
                writer.add_scalar(f"feedback/{UPDATE_S}", r[UPDATE_S], r["window"])


def flat_metrics(frame: pd.DataFrame, initial_s: float) -> dict[str, float]:
    """``<strategy>/w<k>/test/ndcg@10``…, ``<strategy>/mean/…`` over windows 2+, ``<strategy>/update_s`` total."""
    metrics: dict[str, float] = {"initial_train_s": round(initial_s, 3)}
    for strategy, group in frame.groupby("strategy", sort=False):
        for r in group.to_dict("records"):
            metrics |= {f"{strategy}/w{r['window']}/{c}": float(r[c]) for c in _metric_columns(frame)}
        updated = group[group.window > 1]
        metrics |= {f"{strategy}/mean/{c}": float(updated[c].mean()) for c in _metric_columns(frame)}
        metrics[f"{strategy}/{UPDATE_S}"] = float(group[UPDATE_S].sum())
    return metrics


def _metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(names.TEST + "/")]


def _when(t: float) -> str:
    """A unix time as a date; other clocks (e.g. synthetic seconds) as a number."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M") if t > 1e8 else f"{t:.0f}"
