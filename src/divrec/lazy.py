"""Modules imported on first use: what a cache-hit ``divrec train`` never touches (pandas, pyarrow) costs it nothing.

``pd = lazy_module("pandas")`` binds a stand-in at once; the first attribute read (``pd.DataFrame``) imports the
real module (``importlib.import_module``: thread-safe, cached in ``sys.modules``) and every read is forwarded to
it. Nothing is registered in ``sys.modules`` before that, so other code's ``import pandas`` is unaffected. Type
checkers get the real import::

    if TYPE_CHECKING:
        import pandas as pd
    else:
        pd = lazy_module("pandas")
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stand-in for module ``name``: attribute reads import it (once) and read the real module's attribute."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str) -> Any:  # called only for names the stand-in itself lacks
        return getattr(self._module(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> Any:
    """A stand-in for ``import name``, which runs on first use (ModuleNotFoundError then, if it is missing)."""
    return LazyModule(name)
