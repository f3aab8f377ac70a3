"""``profiler=pytorch``: trace files in the run folder and the table of the costliest operators."""

from __future__ import annotations

import json
import re
from pathlib import Path

from runhelpers import TINY_TRAIN, compose_config, run_paths

from divrec.pipeline import train

UNITS = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}


def microseconds(cell: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(s|ms|us|ns)", cell).groups()  # type: ignore[union-attr]
    return float(value) * UNITS[unit]


def test_pytorch_profiler_writes_traces_and_the_top_operators(tmp_path: Path) -> None:
    overrides = [*TINY_TRAIN, "profiler=pytorch", "trainer.max_epochs=1", "data.batch_size=8"]
    train(compose_config("train", [*overrides, *run_paths(tmp_path / "run", tmp_path / "data")]))
    folder = tmp_path / "run" / "profiler"
    traces = sorted(folder.glob("*.pt.trace.json"))
    assert any("training_step" in t.name for t in traces)  # one recorded cycle per step kind, not one per step
    assert len(traces) <= 3
    for trace in traces:
        events = json.loads(trace.read_text())["traceEvents"]
        assert any(e.get("name", "").startswith("aten::") for e in events)
    table = (folder / "fit-operators.txt").read_text()
    assert "top 15 operators by self_cpu_time_total" in table
    rows = [line for line in table.splitlines() if re.match(r"^\s*\S.*\s+[\d.]+%\s+[\d.]+(s|ms|us|ns)\s", line)]
    assert 5 <= len(rows) <= 15
    assert not [row for row in rows if "[pl]" in row or "ProfilerStep" in row]  # operators, not annotations
    self_times = [microseconds(row.split()[-5]) for row in rows]  # columns: … Self CPU, CPU total %, total, avg, calls
    assert self_times == sorted(self_times, reverse=True)
    assert "no step was profiled" in (folder / "validate-operators.txt").read_text()  # one validation batch only
