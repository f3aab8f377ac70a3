"""Find a dataset's folder: the local data dir, then the read-only mirror, then the official download."""

from __future__ import annotations

import logging
from pathlib import Path

from divrec.data.base import Source
from divrec.data.errors import DATA_DIR_KEY, MIRROR_KEY, DataError

log = logging.getLogger(__name__)


def has_files(folder: Path, files: tuple[str, ...]) -> bool:
    """True if every relative path in ``files`` is a file under ``folder``."""
    return all((folder / f).is_file() for f in files)


def locate(source: Source, data_dir: Path, mirror: Path | None, download: bool) -> Path:
    """The folder holding all of ``source.files``: ``<data_dir>/<name>``, else ``<mirror>/<name>``, else the
    official download into ``<data_dir>/<name>``; otherwise one DataError naming all three options."""
    local = Path(data_dir) / source.name
    if has_files(local, source.files):
        return local
    mirrored = None if mirror is None else Path(mirror) / source.name
    if mirrored is not None and has_files(mirrored, source.files):
        log.info("dataset '%s' read from the mirror %s", source.name, mirrored)
        return mirrored
    if not download:
        reason = "download disabled (download=false)"
    elif source.url is None:
        reason = "no official download exists for it"
    else:
        try:
            source.download(local)
            if has_files(local, source.files):
                return local
            reason = f"the download did not provide {list(source.files)}"
        except DataError as err:
            reason = f"download failed: {err}"
    where = f"{mirrored} ({MIRROR_KEY})" if mirrored is not None else f"no mirror ({MIRROR_KEY} unset)"
    given = getattr(source, "path", None)  # file-path sources (data=csv): data.source.path
    here = [str(given)] if given and not Path(given).is_absolute() and Path(given).is_file() else []
    if here:  # a relative path the user meant from the current folder
        raise DataError(
            f"dataset '{source.name}': {here[0]} exists in the current folder, but relative file paths are read from "
            f"{local} ({DATA_DIR_KEY}/{source.name}); pass an absolute path, e.g. data.source.path=$PWD/{here[0]}"
        )
    raise DataError(
        f"dataset '{source.name}' not found (needs {list(source.files)}): looked in {local} ({DATA_DIR_KEY}) and "
        f"{where}, {reason}; put the files in one of these folders or go online"
    )
