"""All-or-nothing download of an official zip: fetch to a temp file, verify md5, extract, then move into place."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from urllib.request import urlopen

from divrec.data.errors import DataError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 60.0


def install_zip(url: str, md5: str, target: Path, strip_prefix: str, subdir: str, required: tuple[str, ...]) -> None:
    """Download ``url`` (md5 ``md5``), extract members under ``strip_prefix`` into ``target/subdir``.

    Everything happens in a hidden staging folder beside ``target``; only a verified, complete tree (all
    ``required`` paths present) is moved into ``target``. On any failure nothing new is left behind.
    """
    target = Path(target)
    created = make_parents(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-download-", dir=target.parent))
    try:
        archive = staging / "archive.zip"
        fetch(url, md5, archive)
        tree = staging / "tree"
        extract(archive, tree / subdir, strip_prefix)
        missing = [f for f in required if not (tree / f).is_file()]
        if missing:
            raise DataError(f"{url} does not contain {missing}; the archive layout changed, place the files by hand")
        _commit(tree, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(created):
            rmdir_if_empty(folder)
        raise
    shutil.rmtree(staging, ignore_errors=True)


def fetch(url: str, md5: str, dest: Path) -> None:
    """Stream ``url`` to ``dest`` via a temp file in the same folder; rename only if the md5 matches."""
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.md5()
    log.info("downloading %s", url)
    try:
        with urlopen(url, timeout=TIMEOUT_S) as response, open(part, "wb") as out:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except OSError as err:  # URLError, HTTPError, timeouts, disk errors
        part.unlink(missing_ok=True)
        raise DataError(f"download of {url} failed: {err}") from err
    if digest.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise DataError(f"download of {url} has md5 {digest.hexdigest()}, expected {md5}; retry or fetch it by hand")
    os.replace(part, dest)


def extract(archive: Path, dest: Path, strip_prefix: str) -> None:
    """Extract the regular files under ``strip_prefix`` of a zip into ``dest`` (prefix removed, no path escapes)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.startswith(strip_prefix):
                    continue
                rel = PurePosixPath(info.filename[len(strip_prefix) :])
                if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                    continue
                out = dest.joinpath(*rel.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise DataError(f"{archive.name} from the download is not a valid zip ({err}); retry the download") from err


def _commit(tree: Path, target: Path) -> None:
    """Move the staged ``tree`` to ``target`` (one rename if ``target`` is new, else file by file)."""
    if not target.exists():
        with contextlib.suppress(OSError):  # another process may have created target meanwhile: merge below
            os.replace(tree, target)
            return
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        dest = target / path.relative_to(tree)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)


def make_parents(folder: Path) -> list[Path]:
    """``mkdir -p`` that returns the folders it created (outermost first), so a failure can remove them."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
    return list(reversed(missing))


def rmdir_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
