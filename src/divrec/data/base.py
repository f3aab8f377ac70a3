"""The ``Source`` base class and the canonical config of data-stage objects (used for cache keys)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from divrec.data.errors import DataError
from divrec.data.types import RawData


@dataclasses.dataclass(kw_only=True)
class Source:
    """A dataset loader. ``name`` is the folder under the data root; ``files`` must exist in it.

    Subclasses set ``url``/``md5`` (class attributes) where there is an official download, and implement ``load``.
    """

    name: str
    url: ClassVar[str | None] = None  # official download (a zip); None = none
    md5: ClassVar[str | None] = None

    @property
    def files(self) -> tuple[str, ...]:
        """Relative paths that must exist in the folder; they are located and content-hashed."""
        return ()

    @property
    def optional_files(self) -> tuple[str, ...]:
        """Relative paths that are read (and hashed) where present."""
        return ()

    def load(self, folder: Path) -> RawData:
        """Read the files in ``folder`` into raw tables."""
        raise NotImplementedError

    def download(self, folder: Path) -> None:
        """Fetch the official files into ``folder``, all or nothing."""
        raise DataError(f"dataset '{self.name}' has no official download; put its files {list(self.files)} in place")


def config_of(obj: Any) -> dict[str, Any]:
    """The constructor arguments of a (dataclass) data-stage object plus its class path, JSON-ready."""
    cls = type(obj)
    fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}
    return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **{k: jsonable(v) for k, v in fields.items()}}


def jsonable(value: Any) -> Any:
    """Plain JSON types for config values (Paths, tuples, OmegaConf containers, numpy scalars)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) for hashing."""
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
