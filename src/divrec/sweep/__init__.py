"""Sweep support: per-job status files, failure isolation in multiruns, and sweep progress reporting."""

from divrec.sweep.status import error_line, read_status, write_status

__all__ = ["error_line", "read_status", "write_status"]
