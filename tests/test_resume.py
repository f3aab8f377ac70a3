"""Preemption-safe resume, end to end: a ``divrec train`` process SIGKILLed in the middle of an epoch and resumed
with ``ckpt_path=last`` ends with the same metrics.json as an uninterrupted run; bad checkpoints fail clearly."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig
from runhelpers import TINY_TRAIN, Run, compose_config, leftovers, read_metrics, run_paths

from divrec import names
from divrec.checkpointing import LAST_FILE, CheckpointError, read_checkpoint
from divrec.pipeline import train

TESTS = Path(__file__).resolve().parent
EPOCHS, KILL_EPOCH, KILL_BATCH = 4, 2, 1  # killed at the second batch of the third epoch (0-based epoch 2)
# Model selection on a metric that does not improve every epoch here (0.95, 0.925, 0.925, 0.95), so the final test
# metrics come from an epoch before the interruption: only right if the best-checkpoint record was restored.
MONITOR = names.metric_key(names.VAL, names.ITEM_COVERAGE, 5)
RUN = [*TINY_TRAIN, f"trainer.max_epochs={EPOCHS}", "trainer.deterministic=true", "logger=none", f"monitor={MONITOR}"]
NOT_REPRODUCIBLE = {names.TRAIN_TIME}  # wall-clock time of the (resumed) fit
# ModelCheckpoint.load_state_dict (Lightning 2.6.6) leaves out current_score, the score of its latest top-k save:
# informational, read by nothing that trains or selects.
NOT_RESTORED = {"current_score"}


def start_train(run_dir: Path, data_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``python -m divrec train`` resuming in place (the run folder is fixed with hydra.run.dir); its stderr goes to
    ``<run_dir>.stderr`` (a file, not a pipe that could fill up while the process waits to be killed)."""
    python_path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env |= {"PYTHONPATH": python_path, "OMP_NUM_THREADS": "1"}
    args = [*RUN, f"hydra.run.dir={run_dir}", f"paths.data_dir={data_dir}", *extra]
    with stderr_file(run_dir).open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "divrec", "train", *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )


def stderr_file(run_dir: Path) -> Path:
    return run_dir.with_name(f"{run_dir.name}.stderr")


def finished(process: subprocess.Popen[bytes], run_dir: Path, timeout: float = 180) -> None:
    process.wait(timeout=timeout)
    assert process.returncode == 0, stderr_file(run_dir).read_text()[-3000:]


def wait_for(marker: Path, process: subprocess.Popen[bytes], run_dir: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        ended = process.poll() is not None
        assert not ended, f"the run ended before the kill point: {stderr_file(run_dir).read_text()[-3000:]}"
        assert time.monotonic() < deadline, "the run never reached the kill point"
        time.sleep(0.05)


def timeline(run_dir: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run_dir / "timeline.jsonl").read_text().splitlines()]


def assert_same_metrics(resumed: dict[str, float], expected: dict[str, float]) -> None:
    assert set(resumed) == set(expected)
    assert resumed[names.EPOCHS] == expected[names.EPOCHS] == EPOCHS
    for key, value in expected.items():
        if key not in NOT_REPRODUCIBLE:
            assert math.isclose(resumed[key], value, rel_tol=0, abs_tol=1e-7), key


def assert_same_state(resumed: Any, whole: Any, resumed_dir: str, whole_dir: str, where: str = "") -> None:
    """Checkpoint contents equal, exactly (tensors bit for bit), with each run's folder in paths made the same."""
    if isinstance(whole, torch.Tensor):
        assert torch.equal(resumed, whole), where
    elif isinstance(whole, dict):
        assert {str(k).replace(resumed_dir, whole_dir) for k in resumed} == {str(k) for k in whole}, where
        for key, value in resumed.items():
            if key in NOT_RESTORED:
                continue
            other = whole[key.replace(resumed_dir, whole_dir) if isinstance(key, str) else key]
            assert_same_state(value, other, resumed_dir, whole_dir, f"{where}.{key}")
    elif isinstance(whole, list | tuple):
        assert len(resumed) == len(whole), where
        for i, (a, b) in enumerate(zip(resumed, whole, strict=True)):
            assert_same_state(a, b, resumed_dir, whole_dir, f"{where}[{i}]")
    elif isinstance(whole, str):
        assert resumed.replace(resumed_dir, whole_dir) == whole, where
    else:
        assert resumed == whole, where


def tiny_resume_cfg(run_dir: Path, data_dir: Path, *extra: str) -> DictConfig:
    return compose_config("train", [*RUN, *run_paths(run_dir, data_dir), *extra])


@pytest.mark.slow  # three process start-ups (~15 s on an idle 2-core machine, far more when it is busy)
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_metrics(tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    marker = tmp_path / "epoch-2-started"
    pause = [
        "+callbacks.pause._target_=pausing.PauseAt",
        f"+callbacks.pause.epoch={KILL_EPOCH}",
        f"+callbacks.pause.batch={KILL_BATCH}",
        f"+callbacks.pause.marker={marker}",
    ]
    victim = start_train(killed, tmp_path / "data", *pause)
    try:  # meanwhile, the same run uninterrupted (in this process: one start-up fewer)
        train(tiny_resume_cfg(whole, tmp_path / "data-whole"))
        wait_for(marker, victim, killed)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert not (killed / names.METRICS_FILE).exists()
    last = read_checkpoint(killed / "checkpoints" / LAST_FILE)
    assert last["epoch"] == KILL_EPOCH - 1  # the run died after this checkpoint, inside the next epoch
    assert not [p for p in leftovers(killed / "checkpoints") if p.endswith(".partial")]

    finished(start_train(killed, tmp_path / "data", "ckpt_path=last"), killed)

    assert_same_metrics(read_metrics(killed), read_metrics(whole))
    rows, expected_rows = timeline(killed), timeline(whole)
    assert [r["epoch"] for r in rows] == list(range(EPOCHS))  # continued, no epoch twice
    val_ndcg = names.metric_key(names.VAL, names.NDCG, 10)
    assert [r[val_ndcg] for r in rows] == [r[val_ndcg] for r in expected_rows]


def test_stopped_run_resumed_in_place_continues_exactly(tmp_path: Path) -> None:
    """The in-process version of the SIGKILL test (default suite): a run stopped after 2 of 4 epochs and resumed
    with ckpt_path=last (model, optimizer, loops, early stopping, best checkpoint, random states, data order) ends
    exactly like the run that was never stopped."""
    whole = train(tiny_resume_cfg(tmp_path / "whole", tmp_path / "data"))
    train(tiny_resume_cfg(tmp_path / "resumed", tmp_path / "data", "trainer.max_epochs=2"))
    resumed = train(tiny_resume_cfg(tmp_path / "resumed", tmp_path / "data", "ckpt_path=last"))
    assert_same_metrics(resumed, whole)
    assert read_metrics(tmp_path / "resumed") == resumed
    best = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "best.ckpt")
    assert best["epoch"] < 2  # selected before the stop: the restored best-checkpoint record mattered
    dirs = {run: str(tmp_path / run) for run in ("whole", "resumed")}
    final = {run: read_checkpoint(Path(folder) / "checkpoints" / LAST_FILE) for run, folder in dirs.items()}
    for key in ("state_dict", "optimizer_states", "epoch", "global_step", "loops", "callbacks"):
        # weights, Adam moments, counters, early stopping and best-checkpoint records (paths up to the run folder)
        assert_same_state(final["resumed"][key], final["whole"][key], dirs["resumed"], dirs["whole"])
    assert [r["epoch"] for r in timeline(tmp_path / "resumed")] == list(range(EPOCHS))


def test_ckpt_path_last_without_a_checkpoint_starts_from_scratch(tmp_path: Path) -> None:
    """What a requeued job sees on its first launch: nothing to resume yet, so it trains normally."""
    metrics = train(tiny_resume_cfg(tmp_path / "run", tmp_path / "data", "ckpt_path=last", "trainer.max_epochs=1"))
    assert metrics[names.EPOCHS] == 1
    assert (tmp_path / "run" / "checkpoints" / LAST_FILE).is_file()


def test_resuming_a_truncated_checkpoint_is_one_clear_error(tmp_path: Path, tiny_run: Run) -> None:
    whole = (tiny_run.run_dir / "checkpoints" / LAST_FILE).read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as err:
        train(tiny_resume_cfg(tmp_path / "run", tmp_path / "data", f"ckpt_path={truncated}"))
    message = str(err.value)
    assert str(truncated) in message and "truncated" in message and "\n" not in message
    assert leftovers(tmp_path / "run") == [] and not (tmp_path / "data").exists()  # failed before writing anything


def test_resuming_under_another_config_is_one_clear_error(tmp_path: Path, tiny_run: Run) -> None:
    last = tiny_run.run_dir / "checkpoints" / LAST_FILE
    cfg = compose_config("train", [*tiny_run.overrides, f"ckpt_path={last}", "model.hidden_size=32", "seed=5"])
    cfg.paths.output_dir = str(tmp_path / "run")
    with pytest.raises(CheckpointError, match="cannot resume") as err:
        train(cfg)
    message = str(err.value)
    assert "model.hidden_size=16 there, 32 now" in message and "seed=0 there, 5 now" in message
    assert "\n" not in message and leftovers(tmp_path / "run") == []
