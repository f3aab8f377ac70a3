"""Reading run folders: what each run was (its overrides, resolved config, group choices), how it ended (status,
error) and what it measured (``metrics.json``). A path given to ``divrec compare`` is a run folder or any folder
above run folders (a multirun, an ``outputs/`` tree)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from divrec import names
from divrec.errors import UserError
from divrec.sweep.status import read_status

RUN_MARKERS = (names.STATUS_FILE, names.METRICS_FILE, names.CONFIG_FILE, ".hydra")
MAX_DEPTH = 4  # outputs/<task>/multiruns/<time>/<job>


class CompareError(UserError):
    """Bad input to ``divrec compare``: a missing path, no runs, an unknown metric."""


@dataclass
class RunRecord:
    path: Path
    status: str  # names.COMPLETED / FAILED / INCOMPLETE
    error: str | None
    params: dict[str, Any]  # every overridden key → its value (resolved config value where the key is a leaf)
    metrics: dict[str, float]
    config: dict[str, Any] = field(default_factory=dict)  # the flattened resolved config (dotted keys)
    choices: dict[str, str] = field(default_factory=dict)  # config group → option (Hydra's runtime choices)

    def param(self, key: str) -> Any:
        """The run's value of ``key``: its override, else its config value, else its group choice, else None."""
        if key in self.params:
            return self.params[key]
        return self.config.get(key, self.choices.get(key))


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def is_run(folder: Path) -> bool:
    return any((folder / marker).exists() for marker in RUN_MARKERS)


def find_runs(paths: Iterable[Path | str]) -> Iterator[Path]:
    """Every run folder at or below ``paths`` (jobs in numeric order); a missing path is an error."""
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise CompareError(f"no such run or sweep folder: {path}; pass run folders or multirun folders")
        yield from _walk(path, 0)


def _walk(folder: Path, depth: int) -> Iterator[Path]:
    if is_run(folder):
        yield folder
    elif depth < MAX_DEPTH:
        for sub in sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_natural):
            yield from _walk(sub, depth + 1)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts → ``{"a.b": leaf}``; lists stay values."""
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None


def _read_metrics(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def parse_override(line: str) -> tuple[str, Any] | None:
    """``"+optim.lr=0.001"`` → ``("optim.lr", 0.001)`` (YAML-typed); deletions (``~key``) → None."""
    if line.startswith("~") or "=" not in line:
        return None
    key, value = line.lstrip("+").split("=", 1)
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return key, parsed


def _status(folder: Path, metrics: dict[str, float]) -> tuple[str, str | None]:
    recorded = read_status(folder) or {}
    if recorded.get("status") == names.FAILED:
        return names.FAILED, recorded.get("error") or "failed (no error recorded)"
    if metrics:
        return names.COMPLETED, None
    return names.INCOMPLETE, None  # still running, killed, or interrupted before metrics.json


def load_run(folder: Path) -> RunRecord:
    metrics = _read_metrics(folder / names.METRICS_FILE)
    config = _read_yaml(folder / names.CONFIG_FILE) or _read_yaml(folder / ".hydra" / "config.yaml") or {}
    hydra = _read_yaml(folder / ".hydra" / "hydra.yaml") or {}
    choices = ((hydra.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    flat = flatten(config) if isinstance(config, dict) else {}
    params: dict[str, Any] = {}
    for line in _read_yaml(folder / names.OVERRIDES_FILE) or []:
        parsed = parse_override(str(line))
        if parsed is None or parsed[0].startswith("hydra"):
            continue
        key, value = parsed
        params[key] = flat.get(key, choices.get(key, value))
    status, error = _status(folder, metrics)
    metrics.pop("seed", None)  # a config value, not a measurement
    return RunRecord(folder, status, error, params, metrics, flat, {str(k): str(v) for k, v in choices.items()})


def load_runs(paths: Iterable[Path | str]) -> list[RunRecord]:
    runs = [load_run(folder) for folder in dict.fromkeys(find_runs(paths))]
    if not runs:
        raise CompareError(
            f"no run folders under {[str(p) for p in paths]}; a run folder holds metrics.json, "
            f"status.json, config.yaml or .hydra/"
        )
    return runs
