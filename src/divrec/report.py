"""Run outputs a person reads: the metrics table printed at the end, ``metrics.json`` and the resolved config."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from divrec import names

if TYPE_CHECKING:
    import torch

_KEY = re.compile(r"^(?P<stage>[^/]+)/(?P<name>[^@]+)@(?P<k>\d+)$")


def metrics_table(metrics: Mapping[str, float], stage: str) -> str:
    """Markdown table of ``stage/name@k`` metrics: one row per metric name, one column per K."""
    cells: dict[str, dict[int, float]] = {}
    for key, value in metrics.items():
        m = _KEY.match(key)
        if m and m["stage"] == stage:
            cells.setdefault(m["name"], {})[int(m["k"])] = float(value)
    if not cells:
        return f"(no {stage} metrics)"
    ks = sorted({k for row in cells.values() for k in row})
    lines = [f"| {stage} | " + " | ".join(f"@{k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    for name, row in cells.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:.4f}" if k in row else "" for k in ks) + " |")
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_metrics(output_dir: Path, metrics: Mapping[str, float]) -> Path:
    path = output_dir / names.METRICS_FILE
    write_atomic(path, json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")
    return path


def write_config(output_dir: Path, cfg: DictConfig) -> Path:
    path = output_dir / names.CONFIG_FILE
    write_atomic(path, OmegaConf.to_yaml(cfg, resolve=True))
    return path


def write_per_user(output_dir: Path, per_user: Mapping[str, torch.Tensor]) -> Path | None:
    """``per_user.parquet``: one row per test user (``names.USER_INDEX`` when recorded) x every per-user metric;
    what ``divrec compare`` pairs its significance tests on. Nothing is written without per-user values."""
    if not per_user:
        return None
    import pandas as pd  # here, not at the top: `import divrec.cli` (via divrec.sweep) does not pay for pandas

    frame = pd.DataFrame({key: values.numpy() for key, values in per_user.items()})
    if names.USER_INDEX in frame:
        frame = frame[[names.USER_INDEX, *(c for c in frame.columns if c != names.USER_INDEX)]]
    path = output_dir / names.PER_USER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path
