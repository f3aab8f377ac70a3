"""Images and text for TensorBoard: attention heatmaps (matplotlib, no pyplot state) and explanation tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MAX_LABEL = 18  # characters of an item label on a heatmap axis


def short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def attention_image(weights: np.ndarray, labels: Sequence[str], title: str) -> np.ndarray:
    """(H, L, L) attention weights of one layer (query rows, key columns) → (height, width, 3) uint8 RGB image:
    one heatmap per head, both axes labelled with the items at each position (oldest left/top)."""
    heads, length, _ = weights.shape
    side = 1.2 + 0.22 * length
    fig = Figure(figsize=(side * heads + 0.8, side + 0.6), dpi=80, layout="constrained")
    axes = fig.subplots(1, heads, squeeze=False)[0]
    ticks = np.arange(length)
    names = [short(label) for label in labels]
    for h, ax in enumerate(axes):
        image = ax.imshow(weights[h], vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xticks(ticks, names, rotation=90, fontsize=6)
        ax.set_yticks(ticks, names if h == 0 else [], fontsize=6)
        ax.set_xlabel("key (attended item)", fontsize=7)
    axes[0].set_ylabel("query position", fontsize=7)
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    fig.suptitle(title, fontsize=9)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def explanation_markdown(rows: Sequence[tuple[str, Sequence[tuple[str, float]]]], history: Sequence[str]) -> str:
    """A Markdown table (TensorBoard's TEXT tab): each recommended item with the history items that weighted it most."""
    lines = [
        f"history (oldest → newest): {' · '.join(history)}",
        "",
        "| rank | recommended | because of (attribution share) |",
        "| --- | --- | --- |",
    ]
    for rank, (item, reasons) in enumerate(rows, start=1):
        because = ", ".join(f"{name} ({weight:+.2f})" for name, weight in reasons)
        lines.append(f"| {rank} | {item} | {because} |")
    return "\n".join(lines)
