"""``profiler=pytorch``: Lightning's PyTorch profiler on a short schedule, with a table of the costliest operators.

Traces go to ``dirpath`` through ``torch.profiler.tensorboard_trace_handler`` (``*.pt.trace.json``: TensorBoard's
PyTorch profiler view, chrome://tracing or Perfetto open them); only ``wait + warmup + active`` steps of each kind
(training, validation, test) are profiled, once, so the overhead stays a few steps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from pytorch_lightning.profilers import PyTorchProfiler
from torch.autograd.profiler_util import EventList, FunctionEventAvg

log = logging.getLogger(__name__)
OPERATORS = "operators"  # the table file: <dirpath>/<stage>-operators.txt
ANNOTATIONS = ("[pl]", "ProfilerStep")  # Lightning's and the schedule's own ranges: not operators


class OperatorTableProfiler(PyTorchProfiler):
    """``PyTorchProfiler`` that records steps ``wait + warmup`` .. ``+ active`` of each step kind once, writes each
    recorded cycle's trace to ``dirpath`` and, at the end of each stage (fit, validate, test), the ``row_limit``
    operators with the most self time (device time when a GPU is present, else CPU) over all its recorded cycles to
    ``<dirpath>/<stage>-operators.txt`` and the log."""

    def __init__(self, dirpath: str, row_limit: int = 15, wait: int = 1, warmup: int = 1, active: int = 3) -> None:
        schedule = torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1)
        super().__init__(
            dirpath=dirpath, filename=OPERATORS, row_limit=row_limit, schedule=schedule, on_trace_ready=self._ready
        )
        self.sort_key = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        self.needed_steps = wait + warmup + 1
        self._action = ""
        self._recorded: dict[str, FunctionEventAvg] = {}  # operator → totals over the stage's recorded cycles

    def stop(self, action_name: str) -> None:
        if any(action_name.endswith(step) for step in self.STEP_FUNCTIONS):
            self._action = action_name  # the step kind whose cycle may complete now (named in the trace file)
        super().stop(action_name)

    def _ready(self, profiler: torch.profiler.profile) -> None:
        worker = self._prepare_filename(action_name=self._action, extension="")
        torch.profiler.tensorboard_trace_handler(str(self.dirpath), worker_name=worker)(profiler)
        for average in profiler.key_averages():
            if average.key.startswith(ANNOTATIONS):
                continue
            if average.key in self._recorded:
                self._recorded[average.key].add(average)
            else:
                self._recorded[average.key] = average

    def summary(self) -> str:
        self._delete_profilers()
        recorded, self._recorded = self._recorded, {}
        if not recorded:
            return f"no step was profiled: every step kind of this stage ran fewer than {self.needed_steps} steps\n"
        table = EventList(recorded.values()).table(sort_by=self.sort_key, row_limit=self._row_limit)
        path = Path(str(self.dirpath)) / self._prepare_filename()
        log.info("top %d operators by %s (%s):\n%s", self._row_limit, self.sort_key, path, table)
        return self._stats_to_str({f"top {self._row_limit} operators by {self.sort_key}": table})
