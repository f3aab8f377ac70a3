"""Small builders shared by the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from divrec.data.types import RawData
from divrec.names import ITEM, TIME, USER


def raw(users: list, items: list, times: list | None = None, **extra: list) -> RawData:
    """A RawData from columns given as lists (ids are converted to str)."""
    table = {USER: [str(u) for u in users], ITEM: [str(i) for i in items]}
    if times is not None:
        table[TIME] = times
    return RawData(pd.DataFrame(table | extra))


def leftovers(folder: Path) -> list[str]:
    """Every path under ``folder`` (relative), for 'nothing was left behind' assertions."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []
