"""Run folders under refused and failed commands, and Hydra's own errors (issue 16, "Reliability").

A refused or failed ``divrec`` command pointed at a completed run folder (``hydra.run.dir=<run>``) leaves every file
of that run byte for byte as it was (Hydra's ``.hydra/*`` included), in RUN and MULTIRUN mode; a refusal leaves an
interrupted run's records as they were, and a proper resume of it still works. Hydra's command-line errors exit 2
with one ``error:`` line. The CLI runs in this process (``divrec.cli.main`` with ``sys.argv`` set: the console
script's Hydra app without a process start-up per case).
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from runhelpers import TINY, compose_config, leftovers, read_metrics, run_paths

from divrec import cli, invocation, names
from divrec.compare.runs import load_run
from divrec.errors import UserError
from divrec.pipeline import train
from divrec.sweep import guard
from divrec.sweep.status import read_status, write_status

RUN = [*TINY, "trainer=cpu", "trainer.max_epochs=1", "logger=none", "data.batch_size=32"]


@dataclass(frozen=True)
class Result:
    code: int  # exit status (1: an exception escaped main, kept in ``error``)
    out: str
    err: str
    error: BaseException | None = None


@contextmanager
def restored_logging() -> Iterator[None]:
    """Undo the logging Hydra configures for a job (its console and file handlers on the root logger)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def run_cli(args: Sequence[str]) -> tuple[int, BaseException | None]:
    """``divrec <args>`` in this process: (exit status, the exception that escaped ``main``, if any)."""
    GlobalHydra.instance().clear()
    argv, recorded = sys.argv, list(invocation._invocation)
    sys.argv = ["divrec", *args]
    try:
        with restored_logging():
            cli.main()
        return 0, None
    except SystemExit as stop:
        return (stop.code if isinstance(stop.code, int) else 1), None
    except Exception as err:  # what the console script would show as a traceback (exit 1)
        return 1, err
    finally:
        sys.argv = argv
        invocation._invocation[:] = recorded
        GlobalHydra.instance().clear()


@pytest.fixture
def divrec(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        capsys.readouterr()
        code, error = run_cli(args)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err, error)

    return run


def in_folder(run: Path, data: Path, *extra: str) -> list[str]:
    return ["train", *RUN, f"hydra.run.dir={run}", f"paths.data_dir={data}", *extra]


@pytest.fixture(scope="module")
def completed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed 1-epoch ``divrec train seed=7`` run folder (its data cache beside it, in ``../data``)."""
    base = tmp_path_factory.mktemp("completed")
    code, error = run_cli(in_folder(base / "run", base / "data", "seed=7"))
    assert code == 0, error
    assert (read_status(base / "run") or {}).get("status") == names.COMPLETED
    return base / "run"


def copy_of(run: Path, where: Path) -> Path:
    copy = where / run.name
    shutil.copytree(run, copy, symlinks=True)
    return copy


def contents(folder: Path) -> dict[str, bytes]:
    """Every file of a run folder and its bytes (not the refused attempts' records, which are not run files)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] != guard.REFUSED_DIR
    }


def one_error_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_refused_resume_leaves_the_completed_run_byte_identical(
    completed_run: Path, tmp_path: Path, divrec: Callable[..., Result]
) -> None:
    run = copy_of(completed_run, tmp_path)
    before = contents(run)
    result = divrec(*in_folder(run, completed_run.parent / "data", "seed=8", "ckpt_path=last"))
    assert result.code == 2
    line = one_error_line(result)
    assert "cannot resume" in line and "seed=7 there, 8 now" in line
    assert contents(run) == before  # .hydra/*, status.json, train.log, checkpoints: all as they were
    record = load_run(run)  # what `divrec compare` lists
    assert record.status == names.COMPLETED and record.params["seed"] == 7
    (attempt,) = (run / guard.REFUSED_DIR).iterdir()  # the refused attempt's record, outside the run's files
    assert "seed=8" in (attempt / "overrides.yaml").read_text()
    assert "cannot resume" in (attempt / guard.ERROR_FILE).read_text()
    assert not (run / guard.GUARD_DIR).exists()


class CrashAtEpoch(pl.Callback):
    """Raises at the start of ``epoch``: a command that fails after it has written checkpoints."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"crash at epoch {self.epoch}")


def test_a_crash_after_writing_puts_the_completed_run_back(
    completed_run: Path, tmp_path: Path, divrec: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Continued with more epochs, the run rewrites last.ckpt, timeline.jsonl and its log, then crashes: every file
    gets its old bytes back (big files through their hard links: SMALL=0 keeps only YAML/JSON in memory)."""
    monkeypatch.setattr(guard, "SMALL", 0)
    run = copy_of(completed_run, tmp_path)
    before = contents(run)
    crash = [f"+callbacks.crash._target_={__name__}.CrashAtEpoch", "+callbacks.crash.epoch=2"]
    result = divrec(*in_folder(run, completed_run.parent / "data", "seed=7", "ckpt_path=last"), *crash,
                    "trainer.max_epochs=3")
    assert result.code == 1 and "crash at epoch 2" in str(result.error)
    assert contents(run) == before
    assert not (run / guard.GUARD_DIR).exists()
    (attempt,) = (run / guard.REFUSED_DIR).iterdir()
    assert "RuntimeError: crash at epoch 2" in (attempt / guard.ERROR_FILE).read_text()


def test_an_interrupted_run_keeps_its_records_when_refused_and_resumes(
    completed_run: Path, tmp_path: Path, divrec: Callable[..., Result]
) -> None:
    run = copy_of(completed_run, tmp_path)
    write_status(run, names.RUNNING)  # as a killed run leaves it
    before = contents(run)
    refused = divrec(*in_folder(run, completed_run.parent / "data", "seed=8", "ckpt_path=last"))
    assert refused.code == 2 and contents(run) == before  # still the interrupted run's overrides and status
    resumed = divrec(*in_folder(run, completed_run.parent / "data", "seed=7", "ckpt_path=last", "trainer.max_epochs=2"))
    assert resumed.code == 0, resumed.error or resumed.err
    assert (read_status(run) or {}).get("status") == names.COMPLETED
    assert read_metrics(run)[names.EPOCHS] == 2  # continued from the interrupted run's last.ckpt
    assert "ckpt_path=last" in (run / ".hydra" / "overrides.yaml").read_text()
    assert not (run / guard.GUARD_DIR).exists()


def test_a_refused_job_of_a_multirun_leaves_its_completed_folder(
    completed_run: Path, tmp_path: Path, divrec: Callable[..., Result]
) -> None:
    sweep = tmp_path / "sweep"
    job = copy_of(completed_run, sweep)
    job.rename(sweep / "0")  # the folder job 0 of this sweep writes to
    before = contents(sweep / "0")
    args = ["train", "-m", *RUN, f"hydra.sweep.dir={sweep}", f"paths.data_dir={completed_run.parent / 'data'}"]
    result = divrec(*args, "seed=8", "ckpt_path=last")
    assert result.code == 0  # a multirun goes on past a failed job
    assert contents(sweep / "0") == before
    assert not (sweep / "0" / guard.GUARD_DIR).exists()


HYDRA_ERRORS = [
    ("foo.bar=1", ["Could not override 'foo.bar'", "+foo.bar=1", "not in struct"]),
    ("model=nope", ["Could not find 'model/nope'", "Available options in 'model': bert4rec, ", "sasrec"]),
    ("seed=[1,2", ["'seed=[1,2'", "no viable alternative"]),
]


@pytest.mark.parametrize(("override", "expected"), HYDRA_ERRORS, ids=["unknown-key", "unknown-option", "malformed"])
def test_hydra_command_line_errors_exit_2_with_one_line(
    override: str, expected: list[str], tmp_path: Path, divrec: Callable[..., Result]
) -> None:
    result = divrec("train", override, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.code == 2
    line = one_error_line(result)
    assert all(part in line for part in expected), line
    assert leftovers(tmp_path) == []


def test_cfg_job_still_exits_0(divrec: Callable[..., Result]) -> None:
    printed = divrec("train", "--cfg", "job", "seed=3")
    assert printed.code == 0 and OmegaConf.create(printed.out).seed == 3
    assert divrec("eval", "--cfg", "job", "foo=1").code == 2  # and a bad override there is the same one-line error


def test_a_required_value_left_unset_is_one_line(tmp_path: Path, divrec: Callable[..., Result]) -> None:
    result = divrec("eval", f"hydra.run.dir={tmp_path / 'run'}")  # eval.yaml: ckpt_path: ???
    assert result.code == 2
    assert one_error_line(result).startswith("error: ckpt_path is required")


def test_a_config_refused_from_the_config_alone_writes_nothing(tmp_path: Path) -> None:
    cfg = compose_config("train", [*RUN, "+model.hiden_size=3", *run_paths(tmp_path / "run", tmp_path / "data")])
    with pytest.raises(UserError, match="hiden_size"):
        train(cfg)
    assert leftovers(tmp_path) == []  # no config.yaml, no data cache
