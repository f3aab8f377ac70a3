"""``divrec compare PATH…``: one table (and plots, and a significance test) over single runs and sweep folders."""

from divrec.compare.runs import CompareError, RunRecord, find_runs, load_run, load_runs
from divrec.compare.table import group_by_config, runs_frame, varying_params

__all__ = [
    "CompareError",
    "RunRecord",
    "find_runs",
    "group_by_config",
    "load_run",
    "load_runs",
    "runs_frame",
    "varying_params",
]
