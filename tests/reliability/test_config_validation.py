"""Config validation (``divrec.validation``): every bad value is refused before any data is prepared, with one line
naming the key, the value as given and the allowed range; every shipped config passes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from runhelpers import CONSOLE_SCRIPT, TINY, compose_config, leftovers, run_divrec, run_paths

from divrec import names
from divrec.cli import config_dir
from divrec.errors import UserError
from divrec.pipeline import build, check_config
from divrec.tasks.base import TaskConfigError
from divrec.validation import RULES, ConfigError, Machine, validate

CONF = config_dir()
CPU_ONLY = Machine(cuda_devices=0, cpu_cores=2)  # this repository's CI machine
TWO_GPUS = Machine(cuda_devices=2, cpu_cores=16)


def composed(overrides: list[str], tmp_path: Path, name: str = "train") -> DictConfig:
    return compose_config(name, [*overrides, *run_paths(tmp_path / "out", tmp_path / "data")])


def refusal(overrides: list[str], tmp_path: Path, name: str = "train", machine: Machine = CPU_ONLY) -> str:
    with pytest.raises(ConfigError) as caught:
        validate(composed(overrides, tmp_path, name), machine)
    message = str(caught.value)
    assert isinstance(caught.value, UserError) and "\n" not in message
    return message


# (config, overrides, the line starts with, the allowed range it states)
BAD = [
    ("train", ["data.batch_size=0"], "data.batch_size=0:", "an integer >= 1"),
    ("train", ["data.batch_size=abc"], "data.batch_size=abc: not an integer", "an integer >= 1"),
    ("train", ["data.batch_size=2.5"], "data.batch_size=2.5: not an integer", "an integer >= 1"),
    ("train", ["data.batch_size=null"], "data.batch_size=null: null is not allowed", "an integer >= 1"),
    ("train", ["data.max_len=0"], "data.max_len=0:", "an integer >= 1"),
    ("train", ["data.train_users_fraction=0"], "data.train_users_fraction=0:", "in (0, 1]"),
    ("train", ["data.split.val_items=0"], "data.split.val_items=0:", "an integer >= 1"),
    ("train", ["optim.lr=0"], "optim.lr=0:", "a number > 0"),
    ("train", ["optim.lr=-0.001"], "optim.lr=-0.001:", "a number > 0"),
    ("train", ["optim.lr=fast"], "optim.lr=fast: not a number", "a number > 0"),
    ("train", ["optim.lr=inf"], "optim.lr=inf: not a finite number", "a number > 0"),
    ("train", ["optim.betas=[0.9]"], "optim.betas=[0.9]:", "a list of 2 item(s)"),
    ("train", ["metrics.ks=[]"], "metrics.ks=[]: empty", "each an integer >= 1"),
    ("train", ["metrics.ks=[5,-10]"], "metrics.ks=[5,-10]: item -10", "each an integer >= 1"),
    ("train", ["metrics.rerank_candidates=0"], "metrics.rerank_candidates=0:", "an integer >= 1"),
    ("train", ["metrics.diversity=maybe"], "metrics.diversity=maybe:", "true or false"),
    ("train", ["trainer.max_epochs=-3"], "trainer.max_epochs=-3:", "an integer >= 1 or -1"),
    ("train", ["trainer.max_epochs=0"], "trainer.max_epochs=0:", "an integer >= 1 or -1"),
    ("train", ["trainer.devices=0"], "trainer.devices=0:", "an integer in [1, 2]"),
    ("train", ["trainer.precision=17"], "trainer.precision=17:", "bf16-mixed"),
    ("train", ["seed=-1"], "seed=-1:", "in [0, 4294967295]"),
    ("train", ["rerank=mmr", "rerank.lambda_=1.5"], "rerank.lambda_=1.5:", "in [0, 1]"),
    ("train", ["rerank=dpp", "rerank.identity_mix=1"], "rerank.identity_mix=1:", "in [0, 1)"),
    ("train", ["rerank=dpp", "rerank.temperature=0"], "rerank.temperature=0:", "> 0"),
    ("train", ["rerank=xquad", "rerank.order=random"], "rerank.order=random:", "greedy|score"),
    ("train", ["task=gbce", "task.t=1.5"], "task.t=1.5:", "in [0, 1]"),
    ("train", ["task=gbce", "task.n_negatives=0"], "task.n_negatives=0:", "an integer >= 1"),
    ("train", ["task=ctr", "task.n_negatives=-1"], "task.n_negatives=-1:", "an integer >= 0"),
    ("train", ["task=sampled_softmax", "task.share=user"], "task.share=user:", "batch|position"),
    ("train", ["task.label_smoothing=1"], "task.label_smoothing=1:", "in [0, 1)"),
    ("train", ["task.label_smoothing=-0.1"], "task.label_smoothing=-0.1:", "in [0, 1)"),
    ("train", ["model=bert4rec", "task=cloze", "task.mask_prob=0"], "task.mask_prob=0:", "in (0, 1)"),
    ("train", ["task=pretrain", "model=bert4rec", "task.parts.map.weight=-1"], "task.parts.map.weight=-1:", ">= 0"),
    ("train", ["scheduler=warmup_cosine", "scheduler.warmup_ratio=1.0"], "scheduler.warmup_ratio=1.0:", "in [0, 1)"),
    ("train", ["scheduler=warmup_cosine", "scheduler.min_lr_ratio=-0.1"], "scheduler.min_lr_ratio=-0.1:", "[0, 1]"),
    ("recommend", ["k=0"], "k=0:", "an integer >= 1"),
    ("recommend", ["k=ten"], "k=ten: not an integer", "an integer >= 1"),
    ("eval", ["metrics.ks=[0]"], "metrics.ks=[0]: item 0", "each an integer >= 1"),
    ("feedback", ["feedback.n_windows=0"], "feedback.n_windows=0:", "an integer >= 1"),
    ("feedback", ["feedback.start_quantile=1"], "feedback.start_quantile=1:", "in (0, 1)"),
]


@pytest.mark.parametrize(("name", "overrides", "start", "allowed"), BAD, ids=[" ".join(b[1]) for b in BAD])
def test_a_bad_value_is_one_line_naming_key_value_and_range(
    name: str, overrides: list[str], start: str, allowed: str, tmp_path: Path
) -> None:
    message = refusal(overrides, tmp_path, name)
    assert message.startswith(start)
    assert f"allowed: {allowed}" in message or allowed in message.split("allowed: ", 1)[1]
    key = start.split("=", 1)[0]
    assert f"e.g. {key}=" in message  # how to fix it


# --- trainer settings against the machine's facts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "start", "fact"),
    [
        (["trainer.accelerator=gpu"], "trainer.accelerator=gpu: needs a CUDA GPU", "is_available() is False"),
        (["trainer=gpu"], "trainer.accelerator=gpu:", "no CUDA GPU"),
        (["trainer=ddp"], "trainer.accelerator=gpu:", "no CUDA GPU"),
        (["trainer.devices=4"], "trainer.devices=4: more CPU processes than this machine has", "2 CPU core(s)"),
        (["trainer=ddp_cpu", "trainer.devices=3"], "trainer.devices=3:", "os.cpu_count()"),
        (["trainer.devices=-1"], "trainer.devices=-1: -1 (every device) is for GPUs", "an integer in [1, 2]"),
        (["trainer.devices=[0,1]"], "trainer.devices=[0,1]: device lists are for GPUs", "no CUDA GPU"),
        (["trainer.devices=many"], "trainer.devices=many: not a device count", "an integer in [1, 2]"),
    ],
)
def test_impossible_trainer_settings_on_a_cpu_machine(
    overrides: list[str], start: str, fact: str, tmp_path: Path
) -> None:
    message = refusal(overrides, tmp_path, machine=CPU_ONLY)
    assert message.startswith(start) and fact in message


@pytest.mark.parametrize(
    ("overrides", "start", "fact"),
    [
        (["trainer=ddp", "trainer.devices=4"], "trainer.devices=4: more GPUs than this machine has", "2 CUDA GPU(s)"),
        (["trainer=gpu", "trainer.devices=[0,2]"], "trainer.devices=[0,2]: device index(es) [2]", "[0, 1]"),
        (["trainer=gpu", "trainer.devices=[1,1]"], "trainer.devices=[1,1]: a device index is repeated", "distinct"),
        (["trainer=gpu", "trainer.devices=0"], "trainer.devices=0: 0 devices run nothing", "-1 (all 2 GPUs)"),
        (["trainer.accelerator=mps"], "trainer.accelerator=mps: needs an MPS device", "auto|cpu|gpu|cuda"),
    ],
)
def test_impossible_trainer_settings_on_a_gpu_machine(
    overrides: list[str], start: str, fact: str, tmp_path: Path
) -> None:
    message = refusal(overrides, tmp_path, machine=TWO_GPUS)
    assert message.startswith(start) and fact in message


@pytest.mark.parametrize(
    ("overrides", "machine"),
    [
        (["trainer=ddp_cpu"], CPU_ONLY),
        (["trainer.devices=2"], CPU_ONLY),
        (["trainer.devices=auto"], CPU_ONLY),
        (["trainer=ddp"], TWO_GPUS),
        (["trainer=gpu", "trainer.devices=[0,1]"], TWO_GPUS),
        (["trainer=gpu", "trainer.devices='0,1'"], TWO_GPUS),
        (["trainer.devices=2"], TWO_GPUS),  # accelerator=auto picks the GPUs
        (["trainer=ddp", "trainer.devices=4"], Machine(cuda_devices=1, cpu_cores=8, elastic=True)),  # torchrun
        (["trainer=gpu"], Machine(cuda_devices=0, cpu_cores=8, mps=True)),  # Lightning's gpu = MPS on a Mac
    ],
)
def test_possible_trainer_settings_pass(overrides: list[str], machine: Machine, tmp_path: Path) -> None:
    validate(composed(overrides, tmp_path), machine)


def test_the_machine_facts_are_the_real_ones() -> None:
    here = Machine.current()
    assert here.cuda_devices == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert here.cpu_cores == os.cpu_count()


def test_check_config_uses_this_machine(tmp_path: Path) -> None:
    here = Machine.current()
    too_many = (here.cuda_devices or here.cpu_cores) + 1
    with pytest.raises(ConfigError, match=rf"^trainer\.devices={too_many}: more (GPUs|CPU processes) than"):
        check_config(composed([f"trainer.devices={too_many}"], tmp_path))


# --- wired into the pipeline: before any data is prepared ---------------------------------------------------------


def test_build_refuses_before_any_data_is_prepared(tmp_path: Path) -> None:
    cfg = composed([*TINY, "data.max_len=0"], tmp_path)  # the model's max_len follows: validation speaks first
    with pytest.raises(ConfigError, match=r"^data\.max_len=0: out of range; allowed: an integer >= 1"):
        build(cfg)
    assert leftovers(tmp_path / "data") == []


def test_an_objectives_own_refusal_is_a_user_error_not_hydras_wrapper(tmp_path: Path) -> None:
    cfg = composed(["task=pretrain", "model=bert4rec", "task.parts.contrastive.objective.temperature=0"], tmp_path)
    with pytest.raises(TaskConfigError, match="temperature=0 must be > 0"):
        check_config(cfg)


@pytest.mark.skipif(not CONSOLE_SCRIPT.is_file(), reason=f"{CONSOLE_SCRIPT} not installed")
def test_console_script_exits_2_with_one_error_line_and_writes_nothing(tmp_path: Path) -> None:
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    result = run_divrec(["train", "data.batch_size=0", f"hydra.run.dir={run_dir}", f"paths.data_dir={data_dir}"],
                        cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [result.stderr.strip().splitlines()[-1]]
    assert errors[0].startswith("error: data.batch_size=0: out of range; allowed: an integer >= 1")
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()  # no download, no data cache
    # Hydra's own record of the job and the failed status are all the run folder holds: no config.yaml, metrics,
    # checkpoints or logger files
    kept = {".hydra", ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "train.log",
            names.STATUS_FILE}
    assert set(leftovers(run_dir)) <= kept, leftovers(run_dir)
    status = json.loads((run_dir / names.STATUS_FILE).read_text())
    assert status["status"] == names.FAILED and "data.batch_size=0" in status["error"]


# --- every shipped config passes ----------------------------------------------------------------------------------

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "recipes")  # recipes: tables, not a group
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml")) if not f.name.startswith("_")]
OPTIONS += [("task/sampler", f.stem) for f in sorted((CONF / "task" / "sampler").glob("*.yaml"))]
NEEDS_HYDRA_NODE = {"experiment", "hydra", "sweep", "launcher"}
COMMANDS = sorted(p.stem for p in CONF.glob("*.yaml"))  # train, eval, recommend, feedback, serve, export, ...


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_shipped_option_passes(group: str, option: str, tmp_path: Path) -> None:
    overrides = [f"{group}={option}", *(["task=sampled_softmax"] if group == "task/sampler" else [])]
    command = next(c for c in ("train", *COMMANDS) if f"- {group.split('/')[0]}:" in (CONF / f"{c}.yaml").read_text())
    extra = ["ckpt_path=unused.ckpt"] if command != "train" else []  # serving configs require one
    cfg = compose_config(command, [*overrides, *extra, *run_paths(tmp_path / "out", tmp_path / "data")],
                         hydra_node=group in NEEDS_HYDRA_NODE)
    validate(cfg, TWO_GPUS)  # GPU options pass where there are GPUs...
    if OmegaConf.select(cfg, "trainer.accelerator") == "gpu":  # ...and are refused, by name, where there are none
        with pytest.raises(ConfigError, match=r"^trainer\.accelerator=gpu: needs a CUDA GPU"):
            validate(cfg, CPU_ONLY)
    else:
        validate(cfg, CPU_ONLY)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_config_passes_as_shipped(name: str, tmp_path: Path) -> None:
    validate(composed([], tmp_path, name), CPU_ONLY)


def shipped_nodes() -> list[tuple[str, DictConfig]]:
    """(prefix, raw YAML) of every shipped file, mounted where it lands: conf/task/sampler/x.yaml at task.sampler."""
    nodes = [("", OmegaConf.load(CONF / f"{name}.yaml")) for name in COMMANDS]
    for path in sorted(CONF.rglob("*.yaml")):
        parts = path.relative_to(CONF).parts[:-1]
        if parts:
            nodes.append((".".join(parts) + ".", OmegaConf.load(path)))
    return nodes


def has_key(node: Any, parts: list[str]) -> bool:
    """``node`` has the dotted path ``parts`` (``*``: any child); leaves are not resolved."""
    if not isinstance(node, DictConfig):
        return False
    head, rest = parts[0], parts[1:]
    children = [str(c) for c in node] if head == "*" else [head] if head in node else []
    return bool(children) and (not rest or any(has_key(node[c], rest) for c in children))


def test_every_rule_names_a_key_some_shipped_config_has() -> None:
    """A rule whose key no shipped config has (a typo) would never fire."""
    nodes = shipped_nodes()
    missing = [
        rule.key for rule in RULES
        if not any(rule.key.startswith(prefix) and has_key(node, rule.key[len(prefix):].split("."))
                   for prefix, node in nodes)
    ]
    assert missing == []


def test_lightnings_no_limit_epochs_is_accepted(tmp_path: Path) -> None:
    validate(composed(["trainer.max_epochs=-1", "+trainer.max_time=00:00:10:00"], tmp_path, "train"), CPU_ONLY)
