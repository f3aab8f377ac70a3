"""``status.json`` in every run folder: ``running`` while a run works, then ``completed`` or ``failed`` with the
one-line error. ``divrec compare`` and the sweep progress read it; a folder still ``running`` after its process
ended (killed, interrupted) counts as incomplete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from divrec import names
from divrec.report import write_atomic


def error_line(err: BaseException) -> str:
    """``ClassName: first line of the message`` (whitespace collapsed), e.g. for a status file or a table cell."""
    message = " ".join(str(err).split())
    return f"{err.__class__.__name__}: {message}" if message else err.__class__.__name__


def write_status(run_dir: Path, status: str, error: str | None = None) -> Path:
    path = Path(run_dir) / names.STATUS_FILE
    write_atomic(path, json.dumps({"status": status, "error": error}) + "\n")
    return path


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The recorded status of a run folder, or None when it has none (or an unreadable one)."""
    path = Path(run_dir) / names.STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "status" in data else None
