"""Several processes (DDP over gloo on the CPU) give the same answers as one, through the real command line.

The multi-process runs start ``divrec`` in a subprocess: Lightning's launcher then starts the other rank itself.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning_utilities.core import rank_zero as utils_rank_zero
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero as pl_rank_zero
from runhelpers import CONSOLE_SCRIPT, TINY, Run, compose_config, read_metrics, run_divrec, run_paths, tiny_train

from divrec import invocation, names
from divrec.errors import UserError
from divrec.lit.strategies import DDPStrategy, check_launcher, hydra_job_command
from divrec.pipeline import build
from divrec.precision import trainer_precision
from divrec.sweep.status import read_status

needs_console_script = pytest.mark.skipif(not CONSOLE_SCRIPT.is_file(), reason=f"{CONSOLE_SCRIPT} not installed")

# 61 users (odd) and evaluation batches of 8: a padding sampler would evaluate one user twice on 2 processes, and
# the two ranks' shards (31 and 30 users) would differ in length.
ODD = ["data.source.n_users=61", "data.eval_batch_size=8"]
# Validation on the last 3 items per user: several rows per user must be sharded exactly too (each row once).
SEVERAL_VAL_ROWS = ["data.split.val_items=3"]
TWO_CPU_PROCESSES = ["trainer=ddp_cpu", "trainer.devices=2"]
TIMEOUT_S = 600  # two Python processes importing torch on a busy CI machine


def evaluated_keys(metrics: dict[str, float]) -> list[str]:
    return sorted(k for k in metrics if k.startswith((f"{names.VAL}/", f"{names.TEST}/")))


def assert_same_metrics(got: dict[str, float], want: dict[str, float]) -> None:
    keys = evaluated_keys(want)
    assert evaluated_keys(got) == keys
    assert any("/ild" in k for k in keys) and any("/ndcg" in k for k in keys)  # diversity and accuracy both
    diffs = {k: (got[k], want[k]) for k in keys if not math.isclose(got[k], want[k], rel_tol=0, abs_tol=1e-6)}
    assert not diffs


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A 2-epoch single-process run on 61 users (up to 3 validation rows each); ``train`` evaluated its best checkpoint
    in one process."""
    base = tmp_path_factory.mktemp("odd-run")
    run = tiny_train(base / "run", base / "data", seed=0, extra=[*ODD, *SEVERAL_VAL_ROWS])
    assert (run.run_dir / "checkpoints" / "best.ckpt").is_file()
    return run


@needs_console_script
def test_two_process_evaluation_equals_one_process(odd_run: Run, tmp_path: Path) -> None:
    best = odd_run.run_dir / "checkpoints" / "best.ckpt"
    run_dir = tmp_path / "eval"
    args = ["eval", f"ckpt_path={best}", *TWO_CPU_PROCESSES, "data.eval_batch_size=8", "logger=none"]
    result = run_divrec([*args, f"hydra.run.dir={run_dir}", f"paths.data_dir={odd_run.data_dir}"], tmp_path, TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stdout + result.stderr  # really two processes
    assert OmegaConf.load(run_dir / names.CONFIG_FILE).data.split.val_items == 3  # the checkpoint's own split
    assert_same_metrics(read_metrics(run_dir), odd_run.metrics)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]  # rank 1 wrote no folder of its own


@pytest.mark.slow
@needs_console_script
def test_two_process_training_through_hydra_writes_each_output_once(tmp_path: Path) -> None:
    args = ["train", *TINY, *ODD, *TWO_CPU_PROCESSES, "trainer.max_epochs=2", "data.batch_size=16"]
    logs = tmp_path / "outputs"
    result = run_divrec([*args, f"paths.log_dir={logs}", f"paths.data_dir={tmp_path / 'data'}"], tmp_path, TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (logs / "train" / "runs").iterdir()  # one run folder, not one per process
    assert result.stdout.count("run folder:") == 1  # the table is printed by rank 0 only
    metrics = read_metrics(run_dir)
    assert metrics[names.EPOCHS] == 2
    assert len(evaluated_keys(metrics)) > 20
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    assert (run_dir / "config.yaml").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "outputs"]
    # the checkpoint evaluates to the same numbers in one process
    one = run_divrec(["eval", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", "trainer=cpu", "logger=none",
                      "data.eval_batch_size=8", f"hydra.run.dir={tmp_path / 'eval'}",
                      f"paths.data_dir={tmp_path / 'data'}"], tmp_path, TIMEOUT_S)
    assert one.returncode == 0, one.stderr[-3000:]
    assert_same_metrics(read_metrics(tmp_path / "eval"), metrics)


@pytest.mark.slow
@needs_console_script
def test_multirun_with_ddp_gives_one_folder_per_job(tmp_path: Path) -> None:
    """``-m seed=0,1`` with 2 processes per job: exactly jobs 0 and 1, each complete, no stray run folders."""
    args = ["train", "-m", *TINY, *ODD, *TWO_CPU_PROCESSES, "trainer.max_epochs=1", "seed=0,1", "logger=none"]
    logs = tmp_path / "outputs"
    result = run_divrec([*args, f"paths.log_dir={logs}", f"paths.data_dir={tmp_path / 'data'}"], tmp_path, TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (logs / "train").iterdir()) == ["multiruns"]  # no single-run folders
    (sweep,) = (logs / "train" / "multiruns").iterdir()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]  # one folder per job, no more
    assert {p.name for p in sweep.iterdir() if p.is_file()} <= {"multirun.yaml", names.PROGRESS_FILE}
    assert [read_status(sweep / job)["status"] for job in ("0", "1")] == [names.COMPLETED] * 2
    seeds = [read_metrics(sweep / job)["seed"] for job in ("0", "1")]
    assert seeds == [0, 1]
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "best.ckpt").is_file()
    assert result.stdout.count("run folder:") == 2


@pytest.mark.slow
def test_torchrun_with_two_cpu_processes(tmp_path: Path) -> None:
    """torchrun starts both processes; Lightning detects TorchElastic and launches nothing itself."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "divrec", "train", *TINY, *ODD, *TWO_CPU_PROCESSES, "trainer.max_epochs=1", "logger=none",
               f"hydra.run.dir={run_dir}", f"paths.data_dir={tmp_path / 'data'}"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "launching" not in result.stdout + result.stderr  # divrec's launcher stayed idle
    assert "MEMBER: 2/2" in result.stdout + result.stderr
    assert names.metric_key(names.TEST, names.NDCG, 10) in read_metrics(run_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]


def test_compile_switch_compiles_the_backbone_in_place(tmp_path: Path) -> None:
    cfg = compose_config("train", [*TINY, "compile=true", *run_paths(tmp_path / "out", tmp_path / "data")])
    _, module = build(cfg)
    assert module.backbone._compiled_call_impl is not None  # nn.Module.compile: forward goes through torch.compile
    plain = build(compose_config("train", [*TINY, *run_paths(tmp_path / "out", tmp_path / "data")]))[1]
    assert module.state_dict().keys() == plain.state_dict().keys()  # checkpoints stay interchangeable
    assert isinstance(module.backbone, torch.nn.Module)


def test_config_flags_are_kept_for_the_relaunch() -> None:
    argv = ["-cd", "/my/conf", "seed=1", "--config-name=train", "-m", "trainer=ddp"]
    assert invocation.config_flags(argv) == ["-cd", "/my/conf", "--config-name=train"]


@pytest.fixture
def hydra_job(tmp_path: Path) -> Iterator[DictConfig]:
    """Hydra's runtime config as inside a multirun job with task overrides ``seed=1 trainer=ddp_cpu``."""
    overrides = ["seed=1", "trainer=ddp_cpu", *run_paths(tmp_path / "job", tmp_path / "data")]
    cfg = compose_config("train", overrides, hydra_node=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "sweep" / "3")
        cfg.hydra.overrides.hydra = ["hydra.mode=MULTIRUN", "hydra.sweep.dir=x", "hydra.searchpath=[file:///c]"]
    HydraConfig.instance().set_config(cfg)
    yield cfg
    HydraConfig.instance().cfg = None  # type: ignore[assignment]


def test_child_processes_rerun_exactly_this_job(
    hydra_job: DictConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(invocation, "_invocation", [])
    assert hydra_job_command() is None  # not started by divrec's CLI: Lightning's own launcher command is used
    monkeypatch.setattr(invocation, "_invocation", ["train", "-cd", "/my/conf"])
    command = hydra_job_command()
    assert command is not None
    assert command[:6] == [sys.executable, "-m", "divrec", "train", "-cd", "/my/conf"]
    assert "seed=1" in command and "trainer=ddp_cpu" in command  # this job's overrides, not the sweep's
    assert f'hydra.run.dir="{tmp_path / "sweep" / "3"}"' in command  # into this job's folder
    assert "hydra.mode=RUN" in command and "hydra.output_subdir=null" in command
    assert "hydra.searchpath=[file:///c]" in command
    assert not any(arg.startswith(("hydra.sweep.", "hydra.mode=MULTIRUN", "-m", "--multirun")) for arg in command[4:])


def test_lightning_script_launcher_is_refused_under_hydra(
    hydra_job: DictConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(invocation, "_invocation", ["train"])
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    with pytest.raises(UserError, match="trainer=ddp_cpu"):
        check_launcher(trainer)
    check_launcher(pl.Trainer(accelerator="cpu", devices=2, strategy=DDPStrategy(), logger=False))


def test_slurm_launcher_follows_the_trainer_shape(tmp_path: Path) -> None:
    overrides = ["launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
    cfg = compose_config("train", [*overrides, *run_paths(tmp_path / "out", tmp_path / "data")], hydra_node=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    (environment,) = cfg.trainer.plugins
    assert environment._target_.endswith("SLURMEnvironment") and environment.auto_requeue is False
    assert cfg.trainer.strategy._target_ == "divrec.lit.strategies.DDPStrategy"


def test_under_slurm_lightning_takes_ranks_from_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The composed SLURM trainer, inside a (simulated) srun task 3 of 4: rank from SLURM, nothing launched."""
    slurm = {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
             "SLURM_NODEID": "1", "SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "divrec", "SLURM_NODELIST": "n[1-2]"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    for holder in (pl_rank_zero.rank_zero_only, utils_rank_zero.rank_zero_only):  # Lightning sets the global rank
        monkeypatch.setattr(holder, "rank", holder.rank)
    overrides = ["launcher=slurm", "trainer=ddp_cpu", "trainer.devices=2", "trainer.num_nodes=2", "logger=none"]
    cfg = compose_config("train", [*overrides, *run_paths(tmp_path / "out", tmp_path / "data")])
    trainer = instantiate(cfg.trainer, logger=False, precision=trainer_precision(cfg))
    assert trainer.strategy.cluster_environment.creates_processes_externally
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank, trainer.world_size) == (3, 1, 1, 4)
