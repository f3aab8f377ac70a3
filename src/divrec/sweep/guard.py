"""A command that fails or is refused in an existing run folder leaves that run as it was, byte for byte.

Hydra writes ``.hydra/*`` and opens the log file at job start, before divrec's task function runs, so a command
pointed at a run folder (``hydra.run.dir=<run>``, e.g. a resume that divrec then refuses) would overwrite the run's
records even when divrec refuses it. :class:`RunGuard`, a Hydra callback (``hydra.callbacks.run_guard`` in
``conf/hydra/default.yaml``), takes a :class:`RunSnapshot` of such a folder before Hydra writes anything there; when
the job ends the CLI calls :func:`settle`: on success the snapshot is dropped; after a failure it protects against,
the folder is put back (files the command added are removed, files it changed or removed get their old content,
mode and times back) and the attempt's record goes to ``<run>/.refused/<time>/`` (its Hydra records and
``error.txt``; a hidden folder, not one of the run's files, that ``divrec compare`` does not read).

What is protected: a completed run (``status.json`` says completed) against any failure or interruption; any other
divrec run folder (an interrupted run) against a refusal (a :class:`~divrec.errors.UserError`), so that its records
stay those of the run to resume. Small files and files rewritten in place (YAML/JSON records) are kept in memory;
the others (checkpoints, logs, event files: replaced or appended by their writers) as hard links in
``<run>/.divrec-guard/`` while the command runs; an appended log is cut back to its old length.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from stat import S_IMODE, S_ISREG
from typing import IO, Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from divrec import names
from divrec.errors import UserError
from divrec.sweep.status import error_line, read_status

log = logging.getLogger(__name__)

GUARD_DIR = ".divrec-guard"  # hard links to a protected folder's big files while a command runs there
REFUSED_DIR = ".refused"  # <run>/.refused/<time>/: the records of an attempt that was refused or failed
ERROR_FILE = "error.txt"
SMALL = 256 * 1024  # files up to this size are kept as bytes
REWRITTEN_SUFFIXES = (".yaml", ".json", ".jsonl")  # records rewritten in place (open "w"): kept as bytes
_CHUNK = 1 << 20


def _key(stat: os.stat_result) -> tuple[int, int, int]:
    """What tells a changed file from an untouched one: inode (replaced), size and modification time."""
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@dataclass(frozen=True)
class Saved:
    """One file as the snapshot found it: its stat, and its bytes (small or rewritten files) or a hard link."""

    stat: os.stat_result
    content: bytes | None
    link: Path | None  # None with no content: hard links unsupported here (the file cannot be put back)


class RunSnapshot:
    """Every regular file below a run folder (symbolic links are neither followed nor touched) and its folders."""

    def __init__(self, run_dir: Path, status: str, records: str | None) -> None:
        self.run_dir, self.status, self.records = run_dir, status, records
        self.files: dict[str, Saved] = {}
        self.dirs: set[str] = set()

    @classmethod
    def take(cls, run_dir: Path, status: str, records: str | None = ".hydra") -> RunSnapshot:
        """Snapshot ``run_dir`` (whose ``status.json`` says ``status``; ``records``: Hydra's output subfolder)."""
        snapshot = cls(run_dir, status, records)
        links = run_dir / GUARD_DIR
        shutil.rmtree(links, ignore_errors=True)  # left by a command that was killed
        files, snapshot.dirs = _walk(run_dir)
        for i, (rel, stat) in enumerate(sorted(files.items())):
            path = run_dir / rel
            if stat.st_size <= SMALL or path.suffix in REWRITTEN_SUFFIXES or Path(rel).parts[0] == records:
                snapshot.files[rel] = Saved(stat, path.read_bytes(), None)
            else:
                snapshot.files[rel] = Saved(stat, None, _hard_link(path, links / str(i)))
        return snapshot

    def protects_against(self, error: BaseException) -> bool:
        return self.status == names.COMPLETED or isinstance(error, UserError)

    def keep_attempt(self, error: BaseException) -> Path:
        """``<run>/.refused/<time>/``: the failed attempt's Hydra records (those it wrote) and ``error.txt``; call it
        before :meth:`restore`."""
        folder = _new_folder(self.run_dir / REFUSED_DIR)
        records = self.run_dir / self.records if self.records else None
        for path in sorted(records.iterdir()) if records is not None and records.is_dir() else []:
            saved = self.files.get(str(path.relative_to(self.run_dir)))
            if path.is_file() and not path.is_symlink() and (saved is None or _key(path.stat()) != _key(saved.stat)):
                shutil.copy2(path, folder / path.name)
        (folder / ERROR_FILE).write_text(error_line(error) + "\n")
        return folder

    def restore(self) -> list[str]:
        """Put the folder back as the snapshot found it; returns the files removed or put back."""
        files, dirs = _walk(self.run_dir)
        changed = sorted(files.keys() - self.files.keys())
        for rel in changed:  # added by the command
            (self.run_dir / rel).unlink(missing_ok=True)
        for rel in sorted(self.dirs - dirs):  # folders the command removed
            (self.run_dir / rel).mkdir(parents=True, exist_ok=True)
        for rel, saved in sorted(self.files.items()):
            now = files.get(rel)
            if now is None or _key(now) != _key(saved.stat):
                self._put_back(self.run_dir / rel, saved, now)
                changed.append(rel)
        for rel in sorted(dirs - self.dirs, key=lambda d: len(Path(d).parts), reverse=True):  # deepest first
            with suppress(OSError):  # not empty: something kept a file there (e.g. a symbolic link)
                (self.run_dir / rel).rmdir()
        return changed

    def _put_back(self, path: Path, saved: Saved, now: os.stat_result | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        content = saved.content
        if content is not None:
            _replace(path, lambda f: f.write(content))
        elif saved.link is not None and (now is None or now.st_ino != saved.stat.st_ino):
            os.replace(saved.link, path)  # the original file itself: content, mode and times
            return
        elif now is not None and now.st_ino == saved.stat.st_ino and now.st_size >= saved.stat.st_size:
            _replace(path, lambda f: _copy_prefix(path, f, saved.stat.st_size))  # appended to (a log): cut back
        else:
            log.warning("%s was changed in place and cannot be put back", path)
            return
        os.chmod(path, S_IMODE(saved.stat.st_mode))
        os.utime(path, ns=(saved.stat.st_atime_ns, saved.stat.st_mtime_ns))

    def release(self) -> None:
        shutil.rmtree(self.run_dir / GUARD_DIR, ignore_errors=True)


def _walk(root: Path) -> tuple[dict[str, os.stat_result], set[str]]:
    """Regular files (relative path → stat) and folders below ``root``, leaving out the guard's own folders."""
    files: dict[str, os.stat_result] = {}
    dirs: set[str] = set()
    for folder, subdirs, filenames in os.walk(root):
        here = Path(folder)
        if here == root:
            subdirs[:] = [d for d in subdirs if d not in (GUARD_DIR, REFUSED_DIR)]
        dirs.update(str((here / d).relative_to(root)) for d in subdirs)
        for name in filenames:
            stat = (here / name).lstat()
            if S_ISREG(stat.st_mode):
                files[str((here / name).relative_to(root))] = stat
    return files, dirs


def _hard_link(path: Path, link: Path) -> Path | None:
    link.parent.mkdir(exist_ok=True)
    try:
        os.link(path, link)
    except OSError as err:
        log.warning("cannot keep %s for a rollback (%s): a failure of this command cannot restore it", path, err)
        return None
    return link


def _replace(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    tmp = path.with_name(f".{path.name}.restore")
    try:
        with tmp.open("wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_prefix(source: Path, target: IO[bytes], size: int) -> None:
    with source.open("rb") as f:
        while size > 0:
            chunk = f.read(min(_CHUNK, size))
            if not chunk:
                break
            target.write(chunk)
            size -= len(chunk)


def _new_folder(parent: Path) -> Path:
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    for n in range(1000):
        folder = parent / (stamp if n == 0 else f"{stamp}_{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: too many records named {stamp}")


_snapshots: dict[Path, RunSnapshot] = {}  # run folder (resolved) → its snapshot, until the command settles it


def protect(run_dir: str | Path, records: str | None = ".hydra") -> RunSnapshot | None:
    """Snapshot ``run_dir`` when it holds a divrec run (it has a ``status.json``), before this command writes there;
    only process 0 of a distributed job does (the others never settle a run)."""
    from divrec.lit.strategies import is_process_zero

    path = Path(run_dir).resolve()
    recorded = read_status(path)
    if recorded is None or not is_process_zero():
        return None
    _snapshots[path] = RunSnapshot.take(path, str(recorded["status"]), records)
    return _snapshots[path]


def settle(run_dir: str | Path, error: BaseException | None) -> Path | None:
    """The end of a command in ``run_dir``: drop its snapshot, after putting the folder back when ``error`` is one
    the snapshot protects against; returns where the attempt's record went (None: nothing was put back)."""
    snapshot = _snapshots.pop(Path(run_dir).resolve(), None)
    if snapshot is None or error is None or not snapshot.protects_against(error):
        if snapshot is not None:
            snapshot.release()
        return None
    _detach_file_logs(snapshot.run_dir)
    try:
        attempt = snapshot.keep_attempt(error)
        snapshot.restore()
    except OSError as err:
        log.error("could not put %s back as it was: %s", snapshot.run_dir, err)
        return None
    finally:
        snapshot.release()
    log.warning(
        "%s holds a %s run: this command failed, so the folder was left as it was (this attempt's record: %s)",
        snapshot.run_dir, snapshot.status, attempt,
    )
    return attempt


def release_all() -> None:
    """Drop every snapshot not settled (a job that never ran)."""
    for snapshot in _snapshots.values():
        snapshot.release()
    _snapshots.clear()


def _detach_file_logs(run_dir: Path) -> None:
    """Log files in ``run_dir`` (Hydra's ``<task>.log``) get nothing more from this process: the rest of a refused
    attempt's log lines go to the console only."""
    named = logging.Logger.manager.loggerDict.values()
    loggers = [logging.getLogger(), *(lg for lg in named if isinstance(lg, logging.Logger))]
    for handler in (h for lg in loggers for h in lg.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).is_relative_to(run_dir):
            stream = handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (closed by the handler)
            if stream is not None:
                stream.close()


def _resolved(config: DictConfig, key: str) -> Path:
    """``config``'s ``hydra.run.dir`` / ``hydra.sweep.dir``, resolved as run_job will (``${now:}`` is cached)."""
    instance = HydraConfig.instance()
    previous = instance.cfg
    instance.set_config(config)
    try:
        return Path(str(OmegaConf.select(config, key))).resolve()
    finally:
        instance.cfg = previous


def _job_folders(sweep_dir: Path) -> list[Path]:
    if not sweep_dir.is_dir():
        return []
    return [p for p in sorted(sweep_dir.iterdir()) if p.is_dir() and not p.is_symlink()]


class RunGuard(Callback):
    """Snapshots the run folder (RUN mode) or the sweep folder's existing job folders (MULTIRUN) before Hydra writes
    its records there; the CLI settles each job (:func:`settle`), whatever is left is dropped at the end."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        protect(_resolved(config, "hydra.run.dir"), config.hydra.output_subdir)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_all()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        for job in _job_folders(_resolved(config, "hydra.sweep.dir")):
            protect(job, config.hydra.output_subdir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_all()
