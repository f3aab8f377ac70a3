"""The one exception type for bad data or bad data config, with a one-line message: what, where, how to fix."""

from __future__ import annotations

from divrec.errors import UserError

# Where the data classes sit in the Hydra config tree; messages name the key a user should set.
SOURCE_KEY = "data.source"
PREPROCESSING_KEY = "data.preprocessing"
SPLIT_KEY = "data.split"
DATA_DIR_KEY = "paths.data_dir"
MIRROR_KEY = "paths.data_mirror / DIVREC_DATA_MIRROR"

_MAX_SHOWN = 80


class DataError(UserError):
    """Bad input data or data config. The message is always a single line (newlines are collapsed)."""


def shorten(text: str, limit: int = _MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis), for quoting offending input in a message."""
    text = text.rstrip("\r\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."
