"""``train(cfg)`` and ``evaluate(cfg)``: build everything from a composed config, run it, return the metrics.

Importable and free of Hydra's runtime, so sweeps, tests and notebooks call them with a composed ``DictConfig``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning_fabric.plugins import CheckpointIO
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

from divrec import names
from divrec.checkpointing import (
    AtomicCheckpointIO,
    check_resumable,
    load_weights,
    read_checkpoint,
    remove_partials,
    resume_path,
    stored_config,
)
from divrec.data.datamodule import SeqDataModule
from divrec.data.types import ProcessedData
from divrec.errors import UserError
from divrec.inspection.hparams import flat_hparams, log_hparams
from divrec.lit.module import SeqRecModule
from divrec.lit.strategies import check_launcher
from divrec.metrics import DiversityEvaluator, categories_multi_hot
from divrec.models import ModelConfigError, ModelSpec, SequenceEncoder, check_model_config
from divrec.models.warmstart import save_backbone, warm_start
from divrec.precision import BF16_MIXED, trainer_precision
from divrec.recipes import apply_recipe
from divrec.report import metrics_table, write_config, write_metrics, write_per_user
from divrec.rerank import Reranker
from divrec.tasks import Objective
from divrec.tasks.finetune import FineTune
from divrec.validation import validate

log = logging.getLogger(__name__)


def check_config(cfg: DictConfig) -> tuple[Objective, ModelSpec]:
    """Everything that can be refused from the config alone, before any data is loaded: the model against its own
    class's config, the objective against what the model serves, the inspection callbacks against the model. First
    every settable value against its type and range (``divrec.validation``), the trainer's against this machine."""
    validate(cfg)
    spec = check_model_config(cfg.model)
    try:
        task: Objective = instantiate(cfg.task)
    except InstantiationException as err:  # the objective's own one-line refusal, not Hydra's wrapper around it
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None
        raise
    task.check_backbone(spec)
    maps = OmegaConf.select(cfg, "callbacks.attention_maps.users", default=None)
    if isinstance(maps, int) and maps > 0 and not spec.attention_maps:
        raise ModelConfigError(
            f"callbacks.attention_maps.users={maps}: {spec.name} has no attention maps; set "
            "callbacks.attention_maps.users=auto (explanations only) or 0, or use an attention model (model=sasrec)"
        )
    chunk = OmegaConf.select(cfg, "metrics.eval_chunk_size", default=None)
    if chunk is not None and not spec.dot_scores:
        raise ModelConfigError(f"metrics.eval_chunk_size={chunk}: {spec.name} does not score by one dot product with "
                               "an item table, which chunked ranking needs; drop metrics.eval_chunk_size")
    if cfg.get("init_from") and not spec.trainable:
        raise ModelConfigError(f"init_from={cfg.init_from}: {spec.name} is fitted in closed form and has no weights "
                               "to warm-start; drop init_from= (or warm-start a learned model, e.g. model=sasrec)")
    return task, spec


def build(cfg: DictConfig) -> tuple[SeqDataModule, SeqRecModule]:
    """The one assembly path of train, eval and recommend: check the config, instantiate the datamodule (loading
    the data), then the LightningModule (``build_module``)."""
    task, _ = check_config(cfg)  # before any data is loaded
    datamodule: SeqDataModule = instantiate(cfg.data)
    datamodule.prefixes = task.prefix_windows  # the objective's training windows (positions=last: every prefix)
    return datamodule, build_module(cfg, datamodule.load(), task=task)


def build_module(
    cfg: DictConfig, data: ProcessedData, task: Objective | None = None, evaluation: bool = True
) -> SeqRecModule:
    """The model, objective, optimizer, scheduler, re-ranker and evaluators for ``data``; each gets the dataset
    facts it needs through ``bind(data)``. ``evaluation=False`` (the feedback loop) leaves out the re-ranker and
    the diversity evaluators."""
    task = task if task is not None else check_config(cfg)[0]
    backbone: SequenceEncoder = instantiate(cfg.model, n_items=data.n_items)
    if cfg.get("compile"):  # torch.compile in place: parameter names (and checkpoints) stay the same
        backbone.compile()  # type: ignore[operator]
    backbone.bind(data)  # side features; a closed-form baseline is fitted here
    task.bind(backbone, data)  # heads sized by the data (attributes), samplers, freezing (task=finetune)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    metrics_cfg = cfg.metrics
    module = SeqRecModule(
        backbone=backbone, task=task, optimizer=instantiate(cfg.optim), scheduler=scheduler, ks=list(metrics_cfg.ks),
        reranker=build_reranker(cfg, data) if evaluation else None, rerank_candidates=metrics_cfg.rerank_candidates,
        diversity=build_diversity(metrics_cfg, data, backbone) if evaluation and metrics_cfg.diversity else None,
        diversity_during_fit=metrics_cfg.diversity_during_fit, eval_chunk_size=metrics_cfg.get("eval_chunk_size"),
        mixed_precision=trainer_precision(cfg) == BF16_MIXED and backbone.trainable,  # closed forms rank in fp32
    )
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    return module


def build_reranker(cfg: DictConfig, data: ProcessedData) -> Reranker | None:
    """The configured re-ranker (``rerank=``), given the dataset's multi-hot item categories; None = plain top-K."""
    if not cfg.get("rerank"):
        return None
    categories = None
    if len(data.item_category_ids):
        categories = categories_multi_hot(data.item_category_offsets, data.item_category_ids, len(data.category_names))
    reranker: Reranker = instantiate(cfg.rerank, item_categories=categories)
    reranker.bind(data)
    return reranker


def build_diversity(metrics_cfg: DictConfig, data: ProcessedData, backbone: SequenceEncoder) -> dict[str, Any]:
    """Beyond-accuracy evaluators for val and test; embedding ILD reads the model's live item table."""
    options = {"head_share": metrics_cfg.tail_head_share, "alpha": metrics_cfg.calibration_alpha}
    return {
        stage: DiversityEvaluator.from_data(
            data, stage, list(metrics_cfg.ks), embeddings=lambda: backbone.item_table().detach(), **options
        )
        for stage in (names.VAL, names.TEST)
    }


def make_trainer(cfg: DictConfig, output_dir: Path) -> pl.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    if not loggers:  # a learning-rate curve needs somewhere to go
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    plugins = [instantiate(p) for p in cfg.trainer.get("plugins") or []]
    if not any(isinstance(p, CheckpointIO) for p in plugins):  # unless the config brings its own
        plugins.append(AtomicCheckpointIO())  # every checkpoint written atomically and read safely
    profiler = instantiate(cfg.profiler) if cfg.get("profiler") else None
    trainer = instantiate(
        cfg.trainer,
        precision=trainer_precision(cfg),
        callbacks=callbacks,
        logger=loggers or False,
        plugins=plugins,
        profiler=profiler,
        default_root_dir=str(output_dir),
    )
    check_launcher(trainer)
    return trainer


def finish(cfg: DictConfig, trainer: pl.Trainer, metrics: dict[str, float], output_dir: Path) -> dict[str, float]:
    """Write metrics.json, log hparams with the final metrics (TensorBoard's HPARAMS tab), print the test table
    (files: process 0 only)."""
    if trainer.is_global_zero:
        write_metrics(output_dir, metrics)
        write_per_user(output_dir, getattr(trainer.lightning_module, "test_per_user", {}))
    for logger in trainer.loggers:
        log_hparams(logger, flat_hparams(cfg), metrics, step=trainer.global_step)
        logger.save()
    if trainer.is_global_zero:
        print(f"\n{metrics_table(metrics, names.TEST)}\n\nrun folder: {output_dir}", flush=True)
    return metrics


def _stage_metrics(results: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(v) for r in results for k, v in r.items()}


def train(
    cfg: DictConfig, callbacks: Sequence[pl.Callback] = (), overrides: Sequence[str] | None = None
) -> dict[str, float]:
    """Fit (resuming ``ckpt_path``; ``last`` = this run folder's last.ckpt), then evaluate the best checkpoint (by
    ``callbacks.model_checkpoint.monitor``) on val and test. ``callbacks``: Lightning callbacks added to the
    configured ones (``divrec tune``'s trial reporter), run after them. ``overrides``: the command line's
    ``key=value`` strings, which a ``recipe=`` never changes (None = Hydra's task overrides where Hydra runs)."""
    output_dir = Path(cfg.paths.output_dir)
    check_config(cfg)  # what the config alone refuses, before the trainer and before anything is written
    cfg = apply_recipe(cfg, overrides)  # the data's size-class recipe (divrec.recipes), before anything is made
    ckpt_path = resume_path(cfg)
    if ckpt_path:  # a bad or foreign checkpoint fails here, before anything is written
        check_resumable(cfg, read_checkpoint(ckpt_path, mmap=True), ckpt_path)
    pl.seed_everything(cfg.seed, workers=True)
    trainer = make_trainer(cfg, output_dir)
    trainer.callbacks.extend(callbacks)
    if trainer.is_global_zero:
        remove_partials(cfg)  # temporaries of a checkpoint write that a kill interrupted
        write_config(output_dir, cfg)
    datamodule, module = build(cfg)
    init_counts = init_backbone(cfg, datamodule, module)
    start = time.perf_counter()
    if module.backbone.trainable:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        train_time, best, metrics = time.perf_counter() - start, _best_checkpoint(trainer), {}
    else:  # a closed-form baseline, fitted by bind(data) inside build: no gradient epochs
        train_time, best = float(getattr(module.backbone, "fit_seconds", 0.0)), None
        metrics = {f"{names.FITTED}/{k}": v for k, v in getattr(module.backbone, "fit_summary", {}).items()}
    metrics |= _stage_metrics(trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False))
    metrics |= _stage_metrics(trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False))
    metrics |= {names.TRAIN_TIME: round(train_time, 3), names.EPOCHS: trainer.current_epoch, "seed": cfg.seed}
    if not module.backbone.trainable:  # the same checkpoints/best.ckpt as a trained run (config + fitted state)
        trainer.save_checkpoint(output_dir / "checkpoints" / "best.ckpt")
    elif trainer.is_global_zero:  # the evaluated (best) weights, for init_from= of a later run
        save_backbone(output_dir / names.BACKBONE_FILE, module.backbone, datamodule.load().item_raw_ids.tolist())
    return finish(cfg, trainer, metrics | init_counts, output_dir)


def init_backbone(cfg: DictConfig, datamodule: SeqDataModule, module: SeqRecModule) -> dict[str, float]:
    """Warm start (``init_from=<run>/backbone.pt``): backbone weights only, items matched by raw id; returns the
    match counts for metrics.json. Not a resume: ``ckpt_path=`` restores the full trainer state."""
    if not cfg.get("init_from"):
        if isinstance(module.task, FineTune):
            log.warning("task=finetune without init_from: training from scratch (the baseline of a warm start)")
        return {}
    match = warm_start(module.backbone, cfg.init_from, datamodule.load().item_raw_ids.tolist())
    print(f"init_from {cfg.init_from}: {match.summary()}", flush=True)
    if match.n_fresh and isinstance(module.task, FineTune) and module.task.freeze_embeddings:
        log.warning("task.freeze_embeddings=true keeps the %d new items at their random initialisation", match.n_fresh)
    return {names.INIT_MATCHED: match.n_matched, names.INIT_FRESH: match.n_fresh, names.INIT_UNUSED: match.n_unused}


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    ckpt = trainer.checkpoint_callback
    if isinstance(ckpt, ModelCheckpoint) and ckpt.best_model_path:
        return ckpt.best_model_path
    return None  # no checkpointing (e.g. fast_dev_run): evaluate the final weights


def load_checkpoint(path: str) -> dict[str, Any]:
    """Read a checkpoint with safe deserialisation (tensors and plain containers only, no pickled code)."""
    return read_checkpoint(path)


def evaluate(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Evaluate a checkpoint on val and test without training; data/model/task come from the checkpoint's own
    config. ``overrides`` (the command line's) that select a group (``data=beauty``) replace it; those that set
    one of its keys (``data.eval_batch_size=64``) change that key of the checkpoint's group. Nothing is written
    until the checkpoint's weights are loaded into a model built for the data (same catalog size)."""
    output_dir = Path(cfg.paths.output_dir)
    checkpoint = load_checkpoint(cfg.ckpt_path)
    cfg = checkpoint_config(cfg, checkpoint, overrides)
    datamodule, module = build(cfg)  # check_config first: what the config alone refuses, before any data
    load_weights(module, checkpoint, cfg.ckpt_path, module.backbone.n_items)
    trainer = make_trainer(cfg, output_dir)
    if trainer.is_global_zero:
        write_config(output_dir, cfg)
    metrics = _stage_metrics(trainer.validate(module, datamodule=datamodule, verbose=False))
    metrics |= _stage_metrics(trainer.test(module, datamodule=datamodule, verbose=False))
    return finish(cfg, trainer, metrics, output_dir)


def checkpoint_config(cfg: DictConfig, checkpoint: dict[str, Any], overrides: Sequence[str]) -> DictConfig:
    """``cfg`` with data/model/task taken from the config stored in ``checkpoint``, except what ``overrides`` set:
    a group override (``data=beauty``) replaces the group, a key override (``data.x=1``) changes that key. A file
    without a stored config (a warm-start ``backbone.pt``, a foreign Lightning checkpoint) is refused."""
    stored = stored_config(checkpoint, str(cfg.ckpt_path))
    keys = [o.lstrip("+").split("=")[0] for o in overrides if not o.startswith("~")]
    replaced = {key for key in keys if "." not in key}  # `data=beauty`: the whole group
    cfg = cfg.copy()
    with open_dict(cfg):
        for group in ("data", "model", "task"):
            if group in replaced or group not in stored:
                continue
            node = OmegaConf.merge(stored[group], _paths_only(cfg[group]))
            for key in keys:  # `data.eval_batch_size=64`: that key, on top of the checkpoint's group
                if key.startswith(f"{group}."):
                    OmegaConf.update(node, key[len(group) + 1 :], OmegaConf.select(cfg, key), force_add=True)
            cfg[group] = node
    return cfg


def _paths_only(node: DictConfig) -> DictConfig:
    """Keep this machine's data locations when reusing a checkpoint's data config."""
    return OmegaConf.create({k: node[k] for k in ("data_dir", "mirror", "cache_dir") if k in node})
