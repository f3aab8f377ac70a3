"""Lightning's DDP and FSDP strategies, with a process launcher that restarts the *Hydra job*, not the command line.

Lightning's script launcher starts processes 1..N-1 by re-running ``sys.argv`` plus ``hydra.run.dir=<run dir>``.
Under a Hydra multirun that re-runs the whole sweep in every child (duplicated output folders, children waiting on
the wrong job, hung or killed jobs: ashleve/lightning-hydra-template#393, facebookresearch/hydra#2070; Lightning's
PR #11617 was undone by #15737 and #18175, which redoes it, is open; the template's answer is ddp_spawn). Here each
child runs exactly the parent's job in Hydra's RUN mode: ``divrec <command> <this job's overrides>
hydra.run.dir=<this job's output folder> hydra.output_subdir=null``. After every job ``distributed_job`` waits for
the children, destroys the process group and restores the environment, so the next job of the sweep launches
fresh processes. When processes are started externally (torchrun, SLURM's srun), nothing is launched at all.
"""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies.launchers.subprocess_script import (
    _SubprocessScriptLauncher,
)
from pytorch_lightning.utilities import rank_zero_only

from divrec.errors import UserError
from divrec.invocation import relaunch_command

log = logging.getLogger(__name__)

# What Lightning's launcher puts into the parent's environment; removed again after each job.
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# Hydra overrides a child must not inherit: it runs one job in RUN mode in the parent job's folder.
DROPPED_HYDRA_OVERRIDES = (
    "hydra.run.",
    "hydra.sweep.",
    "hydra.mode",
    "hydra/launcher",
    "hydra.launcher",
    "hydra/sweeper",
    "hydra.sweeper",
    "hydra.output_subdir",
    "hydra.job.num",
    "hydra.job.id",
)
CHILD_WAIT_S = 120.0  # after rank 0 finishes a job, how long its children may take to exit

# divrec logs epoch-level metrics that torchmetrics has already synced across processes; Lightning's advice to add
# sync_dist=True does not apply (it would only average identical values, one more collective per metric).
warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")

_launched: list[HydraJobLauncher] = []
_saved_env: dict[str, str | None] = {}


def hydra_job_command() -> list[str] | None:
    """The command that re-runs the current Hydra job (same divrec command, config folders and overrides) in RUN
    mode, writing into the same output folder without rewriting ``.hydra/``; None outside divrec's CLI."""
    from hydra.core.hydra_config import HydraConfig


    relaunch = relaunch_command()
    if relaunch is None:
        return None
    hc = HydraConfig.get()
    hydra_overrides = [o for o in hc.overrides.hydra if not o.lstrip("+~").startswith(DROPPED_HYDRA_OVERRIDES)]
    return [
        *relaunch,
        *hc.overrides.task,
        *hydra_overrides,
        f'hydra.run.dir="{hc.runtime.output_dir}"',
        "hydra.output_subdir=null",
        "hydra.mode=RUN",
    ]


def _hydra_running() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized()


class HydraJobLauncher(_SubprocessScriptLauncher):
    """Lightning's subprocess launcher; under Hydra each child re-runs this job (see the module docstring)."""

    def _call_children_scripts(self) -> None:
        command = hydra_job_command() if _hydra_running() else None
        if command is None:  # a plain script or another Hydra app: Lightning's own command is right there
            super()._call_children_scripts()
            return
        from hydra.utils import get_original_cwd

        self._check_can_spawn_children()
        self.procs = []
        env = {
            "MASTER_ADDR": self.cluster_environment.main_address,
            "MASTER_PORT": str(self.cluster_environment.main_port),
            "NODE_RANK": str(self.cluster_environment.node_rank()),
            "LOCAL_RANK": str(self.cluster_environment.local_rank()),
            "WORLD_SIZE": str(self.num_processes * self.num_nodes),
        }
        for key in LAUNCH_ENV:
            _saved_env.setdefault(key, os.environ.get(key))
        os.environ.update(env)
        log.info("launching %d more process(es): %s", self.num_processes - 1, " ".join(command))
        for local_rank in range(1, self.num_processes):
            child_env = os.environ | {"LOCAL_RANK": str(local_rank)}
            self.procs.append(subprocess.Popen(command, env=child_env, cwd=get_original_cwd()))
        _launched.append(self)


class _HydraJobLaunch:
    """Swaps Lightning's script launcher for ``HydraJobLauncher`` (same arguments, same behaviour outside Hydra)."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()  # type: ignore[misc]
        launcher = getattr(self, "_launcher", None)
        if type(launcher) is _SubprocessScriptLauncher:
            self._launcher = HydraJobLauncher(launcher.cluster_environment, launcher.num_processes, launcher.num_nodes)


class DDPStrategy(_HydraJobLaunch, pl.strategies.DDPStrategy):
    """``pytorch_lightning.strategies.DDPStrategy`` whose launcher is safe under Hydra multirun.

    ``sync_buffers=False`` (default): no buffer broadcast before every forward. divrec's buffers (item popularity,
    category multi-hot) are constants, equal on every rank; the option is passed under the name this torch's
    ``DistributedDataParallel`` knows (``forward_sync_buffers``, formerly ``broadcast_buffers``).
    """

    def __init__(self, *args: Any, sync_buffers: bool = False, **kwargs: Any) -> None:
        if not sync_buffers:
            known = inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
            kwargs.setdefault("forward_sync_buffers" if "forward_sync_buffers" in known else "broadcast_buffers", False)
        super().__init__(*args, **kwargs)


class FSDPStrategy(_HydraJobLaunch, pl.strategies.FSDPStrategy):
    """``pytorch_lightning.strategies.FSDPStrategy`` whose launcher is safe under Hydra multirun."""


def is_process_zero() -> bool:
    """Whether this process has global rank 0, from the environment (before any trainer exists): Lightning's
    children (LOCAL_RANK), torchrun (RANK) and SLURM tasks (SLURM_PROCID) are not."""
    return rank_zero_only.rank == 0


def check_launcher(trainer: pl.Trainer) -> None:
    """Refuse Lightning's own script launcher inside a job of divrec's CLI: it would re-run the command line."""
    launcher = getattr(trainer.strategy, "_launcher", None)

    if type(launcher) is _SubprocessScriptLauncher and _hydra_running() and relaunch_command() is not None:
        raise UserError(
            f"trainer.strategy={type(trainer.strategy).__name__} launches processes that re-run the whole command "
            "line (wrong under Hydra); use trainer=ddp, trainer=ddp_cpu or trainer=fsdp (divrec.lit.strategies)"
        )


def end_job(failed: bool) -> None:
    """After a Hydra job: wait for (or, if it failed, stop) the processes it launched, destroy the process group
    and restore the environment variables the launcher set, so that the next job starts from a clean slate."""
    while _launched:
        launcher = _launched.pop()
        procs = list(launcher.procs)
        launcher.procs.clear()  # Lightning's observer thread watches this list: it must not kill us for a stop
        for proc in procs:
            if failed:
                proc.kill()
            try:
                proc.wait(timeout=CHILD_WAIT_S)
            except subprocess.TimeoutExpired:
                log.warning("process %d did not exit %.0f s after the job ended; killing it", proc.pid, CHILD_WAIT_S)
                proc.kill()
                proc.wait()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key, value in _saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved_env.clear()


@contextmanager
def distributed_job() -> Iterator[None]:
    """Wrap one Hydra job: ``end_job`` runs after it, whether it succeeded or not."""
    failed = True
    try:
        yield
        failed = False
    finally:
        end_job(failed)
