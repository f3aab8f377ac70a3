"""Every shipped config composes, and every ``_target_`` in it instantiates (without loading any data)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger
from pytorch_lightning.profilers import Profiler
from runhelpers import compose_config, leftovers, run_paths, without_hydra_node

from divrec import names
from divrec.cli import config_dir
from divrec.data.base import Source
from divrec.data.datamodule import SeqDataModule
from divrec.data.splits import LeaveOneOut
from divrec.lit.strategies import HydraJobLauncher
from divrec.models import SequenceEncoder, check_model_config
from divrec.precision import trainer_precision
from divrec.rerank import RerankContext, Reranker
from divrec.tasks import FineTune, NegativeSampler, NextItemSampledSoftmax, Objective, Pretraining

CONF = config_dir()
# conf/tune/space/*.yaml are search spaces that `divrec tune` reads itself (tests/tune/test_space.py), not a group
NOT_GROUPS = {"tune", "recipes"}  # conf/recipes/*.yaml: size-class recipe tables (divrec.recipes)
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in NOT_GROUPS)
OPTIONS = [
    (group, f.stem) for group in GROUPS for f in sorted((CONF / group).glob("*.yaml")) if not f.name.startswith("_")
]


def write_tiny_csv(path: Path) -> Path:
    """4 users x 4 chronological interactions over 5 items (header: the csv config's default column names)."""
    rows = [f"{u},{(u + t) % 5},{100 * u + t}" for u in range(4) for t in range(4)]
    path.write_text("\n".join([f"{names.USER},{names.ITEM},{names.TIME}", *rows]) + "\n")
    return path


def compose_option(group: str, option: str, tmp_path: Path, hydra_node: bool = False) -> DictConfig:
    overrides = [f"{group}={option}", *run_paths(tmp_path / "out", tmp_path / "data")]
    if (group, option) == ("data", "csv"):
        overrides.append(f"data.source.path={write_tiny_csv(tmp_path / 'tiny.csv')}")
    serving = group in SERVING_GROUPS  # groups only the serving commands have (recommend, serve)
    overrides += ["ckpt_path=unused.ckpt"] if serving else []
    return compose_config("recommend" if serving else "train", overrides, hydra_node=hydra_node)


SERVING_GROUPS = {"ann"}


# --- one check per config group: instantiate what the pipeline would instantiate from it --------------------------


def check_data(cfg: DictConfig, tmp_path: Path) -> None:
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, SeqDataModule)
    assert isinstance(datamodule.source, Source)
    assert datamodule.data is None  # building the object loads nothing...
    assert leftovers(tmp_path / "data") == []  # ...and writes nothing
    assert datamodule.max_len == cfg.model.max_len  # the positional table follows the data's max_len
    assert isinstance(datamodule.split, LeaveOneOut) and datamodule.split.val_items == 1  # classic by default
    assert instantiate(cfg.data.split, val_items=3).val_items == 3  # data.split.val_items=3 (fewer noisy val picks)


def check_model(cfg: DictConfig, tmp_path: Path) -> None:
    """The contract, not a class: what ``model=`` builds is a ``SequenceEncoder`` whose spec is what its config check
    says, with (B, L, D) states; user side features work in every mode its own Config offers."""
    spec = check_model_config(cfg.model)
    backbone = instantiate(cfg.model, n_items=10)
    assert isinstance(backbone, SequenceEncoder) and backbone.spec() == spec
    hidden = backbone(torch.tensor([[0, 3, 7, 10]]))
    assert hidden.shape == (1, 4, backbone.hidden_size)
    modes = getattr(backbone.cfg, "USER_MODES", ())  # closed-form baselines read no user features
    assert not modes or (cfg.model.user_features is None and cfg.model.user_feature_names is None)  # off by default
    for mode in modes:  # model.user_features options, with one feature selected by name
        backbone = instantiate(cfg.model, n_items=10, user_features=mode, user_feature_names=["g"])
        codes, vocab = {"g": np.array([1, 0]), "h": np.array([2, 1])}, {"g": ["", "a"], "h": ["", "b", "c"]}
        backbone.use_user_features(codes, vocab)
        assert backbone(torch.tensor([[0, 3, 7, 10]]), torch.tensor([1])).shape == hidden.shape


def check_task(cfg: DictConfig, tmp_path: Path) -> None:
    task = instantiate(cfg.task)
    assert isinstance(task, Objective)
    if isinstance(task, Pretraining):  # every part with a positive weight is built, each an Objective
        enabled = [name for name, part in cfg.task.parts.items() if part and part.weight and part.objective]
        assert list(task.parts) == enabled and all(isinstance(p, Objective) for p in task.parts.values())
    if isinstance(task, FineTune):
        assert isinstance(task.objective, Objective) and 0.0 < task.layer_decay <= 1.0


def dummy_optimizer(cfg: DictConfig) -> torch.optim.Optimizer:
    return instantiate(cfg.optim)(params=[torch.nn.Parameter(torch.zeros(3))])


def check_optim(cfg: DictConfig, tmp_path: Path) -> None:
    optimizer = dummy_optimizer(cfg)
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert optimizer.param_groups[0]["lr"] == cfg.optim.lr


def check_scheduler(cfg: DictConfig, tmp_path: Path) -> None:
    if not cfg.get("scheduler"):  # scheduler=none: the pipeline passes no scheduler
        return
    optimizer = dummy_optimizer(cfg)
    scheduler = instantiate(cfg.scheduler)(optimizer=optimizer, total_steps=20)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    for _ in range(20):
        optimizer.step()
        scheduler.step()
    assert 0.0 <= optimizer.param_groups[0]["lr"] <= cfg.optim.lr


def check_trainer(cfg: DictConfig, tmp_path: Path) -> None:
    node = cfg.trainer
    if node.accelerator == "gpu" and not torch.cuda.is_available():  # same strategy and precision, built on the CPU
        node = OmegaConf.merge(node, {"accelerator": "cpu", "devices": 1})
    precision = trainer_precision(cfg)  # divrec resolves auto before Lightning sees it
    trainer = instantiate(node, logger=False, precision=precision, default_root_dir=str(tmp_path / "out"))
    assert isinstance(trainer, pl.Trainer)
    assert trainer._accelerator_connector.use_distributed_sampler is False  # divrec shards batches itself
    if node.devices != -1:  # -1: every visible GPU
        assert trainer.world_size == node.devices * node.num_nodes
    if node.get("strategy") is not None:  # multi-process: Lightning's strategy with divrec's Hydra-job launcher
        assert isinstance(trainer.strategy._launcher, HydraJobLauncher)


def check_launcher(cfg: DictConfig, tmp_path: Path) -> None:
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["tasks_per_node"] == launcher["gpus_per_node"] == cfg.trainer.devices >= 1  # one task per GPU
    assert launcher["nodes"] == cfg.trainer.num_nodes


def check_callbacks(cfg: DictConfig, tmp_path: Path) -> None:
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    assert callbacks
    assert all(isinstance(c, pl.Callback) for c in callbacks)


def check_logger(cfg: DictConfig, tmp_path: Path) -> None:
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values()]
    assert all(isinstance(lg, Logger) for lg in loggers)


def check_paths(cfg: DictConfig, tmp_path: Path) -> None:
    paths = OmegaConf.to_container(cfg.paths, resolve=True)
    assert paths["data_dir"] == str(tmp_path / "data")
    assert paths["cache_dir"] == str(tmp_path / "data" / "cache")


def check_experiment(cfg: DictConfig, tmp_path: Path) -> None:
    choices = cfg.hydra.runtime.choices
    recipe = OmegaConf.load(CONF / "experiment" / f"{choices.experiment}.yaml")
    for entry in recipe.get("defaults", []):  # "override /data: ml-100k" → the composed config uses ml-100k
        for key, option in entry.items():
            assert choices[key.removeprefix("override ").lstrip("/")] == option
    assert list(cfg.tags) == list(recipe.tags)


def check_hydra(cfg: DictConfig, tmp_path: Path) -> None:
    assert cfg.hydra.job.chdir is False  # relative data paths keep working
    run_dir = cfg.hydra.run.dir
    assert run_dir.startswith(f"{cfg.paths.log_dir}/{cfg.task_name}/runs/")


def check_rerank(cfg: DictConfig, tmp_path: Path) -> None:
    if not cfg.get("rerank"):  # rerank=none: plain top-K
        return
    categories = torch.zeros(11, 3, dtype=torch.bool)
    categories[1:, :] = torch.rand(10, 3) > 0.5
    reranker = instantiate(cfg.rerank, item_categories=categories)
    assert isinstance(reranker, Reranker)
    context = RerankContext(histories=torch.tensor([[1, 2, 0], [3, 0, 0]]), item_embeddings=torch.randn(11, 4))
    lists = reranker(torch.randn(2, 6), torch.randint(1, 11, (2, 6)), 3, context)
    assert lists.shape == (2, 3)


def check_sweep(cfg: DictConfig, tmp_path: Path) -> None:
    """A ready sweep: a multirun by itself, launch command in its header, every swept key exists, >= 8 jobs; an
    Optuna sweep keeps its study in SQLite under a fixed name and survives failed trials."""
    from hydra.types import RunMode

    from divrec.sweep.progress import planned_jobs, swept
    from divrec.sweep.storage import sqlite_file

    name = cfg.hydra.runtime.choices.sweep
    text = (CONF / "sweep" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n#") and f"divrec train sweep={name}" in text
    assert cfg.hydra.mode == RunMode.MULTIRUN
    keys = [key for key, o in swept(cfg).items() if o.is_sweep_override()]
    assert len(keys) >= 2 and all(OmegaConf.select(cfg, key) is not None for key in keys)
    assert (planned_jobs(cfg) or 0) >= 8
    assert cfg.optimized_metric == names.MONITOR
    if "n_trials" in cfg.hydra.sweeper:
        assert cfg.hydra.sweeper.direction == "maximize" and cfg.hydra.sweeper.max_failure_rate == 1.0
        db = sqlite_file(cfg.hydra.sweeper.storage)
        assert db is not None and db.name == f"{cfg.hydra.sweeper.study_name}.db"
        assert str(db).startswith(cfg.paths.log_dir) and "multiruns" not in str(db)  # outlives one sweep folder


def check_metrics(cfg: DictConfig, tmp_path: Path) -> None:
    assert list(cfg.metrics.ks) == sorted(cfg.metrics.ks) and cfg.metrics.rerank_candidates >= max(cfg.metrics.ks)


def check_profiler(cfg: DictConfig, tmp_path: Path) -> None:
    if not cfg.get("profiler"):  # profiler=none: the trainer gets no profiler
        return
    profiler = instantiate(cfg.profiler)
    assert isinstance(profiler, Profiler)
    assert Path(str(profiler.dirpath)) == tmp_path / "out" / "profiler"  # inside the run folder


def check_ann(cfg: DictConfig, tmp_path: Path) -> None:
    """ann=auto builds an index config (exact below its min_items); ann=none is always exact."""
    from divrec.serving.ann import AnnConfig
    from divrec.serving.recommender import ann_config

    config = ann_config(cfg.get("ann"))
    if not cfg.get("ann"):  # conf/ann/none.yaml is empty
        assert config is None
        return
    assert isinstance(config, AnnConfig) and isinstance(instantiate(cfg.ann), AnnConfig) and config.min_items > 0


CHECKS: dict[str, Callable[[DictConfig, Path], None]] = {
    "ann": check_ann,
    "profiler": check_profiler,
    "rerank": check_rerank,
    "metrics": check_metrics,
    "data": check_data,
    "model": check_model,
    "task": check_task,
    "optim": check_optim,
    "scheduler": check_scheduler,
    "trainer": check_trainer,
    "callbacks": check_callbacks,
    "logger": check_logger,
    "paths": check_paths,
    "experiment": check_experiment,
    "hydra": check_hydra,
    "sweep": check_sweep,
    "launcher": check_launcher,
}
NEEDS_HYDRA_NODE = {"experiment", "hydra", "sweep", "launcher"}


def test_every_config_group_has_a_check() -> None:
    assert set(GROUPS) == set(CHECKS), "a new config group needs a check in tests/test_configs.py"
    assert {g for g, _ in OPTIONS} == set(GROUPS)  # every group has at least one selectable option


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_instantiates(group: str, option: str, tmp_path: Path) -> None:
    cfg = compose_option(group, option, tmp_path, hydra_node=group in NEEDS_HYDRA_NODE)
    if group in NEEDS_HYDRA_NODE:
        assert cfg.hydra.runtime.choices[group] == option
    plain = without_hydra_node(cfg)
    resolved = OmegaConf.to_container(plain, resolve=True, throw_on_missing=True)  # no dangling interpolation
    assert "${" not in str(resolved)
    CHECKS[group](cfg, tmp_path)


SAMPLERS = sorted(f.stem for f in (CONF / "task" / "sampler").glob("*.yaml"))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_negative_sampler_composes_into_sampled_softmax(sampler: str, tmp_path: Path) -> None:
    overrides = ["task=sampled_softmax", f"task/sampler={sampler}", *run_paths(tmp_path / "out", tmp_path / "data")]
    task = instantiate(compose_config("train", overrides).task)
    assert isinstance(task, NextItemSampledSoftmax) and isinstance(task.sampler, NegativeSampler)
    assert type(task.sampler).__name__.lower().startswith(sampler)


def test_csv_data_loads_a_tiny_file(tmp_path: Path) -> None:
    cfg = compose_option("data", "csv", tmp_path)
    datamodule = instantiate(cfg.data)
    data = datamodule.load()
    assert (data.n_users, data.n_items) == (4, 5)
    assert len(data.test) == 4


def test_init_from_is_a_top_level_key_distinct_from_ckpt_path(tmp_path: Path) -> None:
    cfg = compose_config("train", ["task=finetune", "init_from=b.pt", *run_paths(tmp_path / "out", tmp_path / "d")])
    assert (cfg.init_from, cfg.ckpt_path) == ("b.pt", None)
    assert compose_config("train").init_from is None  # off by default, usable with any task


def test_default_train_config_selects_the_documented_defaults(tmp_path: Path) -> None:
    cfg = compose_config("train", run_paths(tmp_path / "out", tmp_path / "data"), hydra_node=True)
    choices = cfg.hydra.runtime.choices
    assert (choices.data, choices.model, choices.task) == ("ml-100k", "sasrec", "next_item_ce")
    assert cfg.monitor == names.MONITOR == names.metric_key(names.VAL, names.NDCG, 10)
    assert cfg.callbacks.model_checkpoint.monitor == cfg.monitor
    assert cfg.optimized_metric == cfg.monitor


def test_eval_config_composes_and_requires_a_checkpoint(tmp_path: Path) -> None:
    cfg = compose_config("eval", ["ckpt_path=x", *run_paths(tmp_path / "out", tmp_path / "data")])
    assert cfg.ckpt_path == "x"
    assert cfg.task_name == "eval"
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert OmegaConf.is_missing(compose_config("eval"), "ckpt_path")


def test_unknown_key_is_rejected_at_composition() -> None:
    with pytest.raises(ConfigCompositionException, match="foo"):
        compose_config("train", ["foo=1"])
