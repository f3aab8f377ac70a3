"""``run_feedback(cfg)``: train on data up to t_0, then, window after window, evaluate the served model on the window
and let each update strategy turn the window's interactions into the next model (``divrec feedback``).

All strategies start from the same initial checkpoint and are evaluated on the same rows, so their curves differ
only by how they update. Every served model is written as a checkpoint (``checkpoints/<strategy>-w<k>.ckpt``) and
the next update starts from that file, as a deployment would.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from divrec import names
from divrec.data.datamodule import SeqDataModule
from divrec.data.features import item_categories, user_features
from divrec.data.locate import locate
from divrec.data.preprocess import Sequences
from divrec.data.types import EvalSplit, ProcessedData
from divrec.feedback.report import FeedbackRow, write_report
from divrec.feedback.rounds import cutoffs, known_before, times_of, window_targets
from divrec.feedback.strategies import UpdateStrategy
from divrec.lit.module import SeqRecModule
from divrec.pipeline import build_module, check_config, load_checkpoint
from divrec.precision import trainer_precision
from divrec.report import write_config

log = logging.getLogger(__name__)
NDCG10 = names.metric_key(names.TEST, names.NDCG, 10)
INITIAL = "initial"  # checkpoint name of the model every strategy starts from


Categories = tuple[np.ndarray, np.ndarray, np.ndarray]  # CSR over items 0..n_items: offsets, ids, names
UserFeatures = tuple[dict[str, np.ndarray], dict[str, list[str]]]  # name → (n_users,) codes, name → vocab


def load_sequences(data_cfg: DictConfig) -> tuple[Sequences, Categories, UserFeatures]:
    """The configured dataset, preprocessed into chronological per-user sequences (with timestamps), unsplit, its
    item categories/attributes (for side features and attribute objectives) and its user feature codes."""
    datamodule: SeqDataModule = instantiate(data_cfg)
    source = datamodule.source
    folder = datamodule.data_dir / source.name
    if source.files:
        folder = locate(source, datamodule.data_dir, datamodule.mirror, datamodule.download)
    raw = source.load(folder)
    seqs = datamodule.preprocessing(raw)
    users = user_features(raw.user_features, seqs.user_raw_ids)
    return seqs, item_categories(raw.item_features, seqs.item_raw_ids), users


class FeedbackRunner:
    """Builds, trains, evaluates, saves and restores models for the loop; strategies call it."""

    def __init__(
        self, cfg: DictConfig, seqs: Sequences, categories: Categories, output_dir: Path, users: UserFeatures = ({}, {})
    ) -> None:
        self.cfg, self.seqs, self.categories, self.output_dir = cfg, seqs, categories, output_dir
        self.users = users  # user feature codes (for model.user_features), indexed like seqs' users
        self.initial_epochs: int = cfg.feedback.initial_epochs
        self.run_config = OmegaConf.to_container(cfg, resolve=True)
        self.progress: bool = cfg.feedback.get("progress_bars", True)  # a bar per training run

    def new_model(self, train: tuple[np.ndarray, np.ndarray] | None = None) -> SeqRecModule:
        """A fresh module through the pipeline's one assembly path; ``train`` (CSR sequences) is what a model
        fitted in ``bind`` (a closed-form baseline) sees, default none."""
        train = train if train is not None else _no_csr(self.seqs.n_users)
        module = build_module(self.cfg, self._processed(train, _no_rows()), evaluation=False)
        module.run_config = self.run_config
        return module

    def fit(self, module: SeqRecModule, train: tuple[np.ndarray, np.ndarray], epochs: int) -> None:
        """``epochs`` epochs on the CSR training sequences ``train`` (no validation: the window is the test)."""
        if not module.backbone.trainable:  # a closed-form baseline: fitted by bind on these sequences
            module.backbone.bind(self._processed(train, _no_rows()))
            return
        pl.seed_everything(self.cfg.seed, workers=True)
        trainer = self._trainer(max_epochs=epochs, limit_val_batches=0, enable_progress_bar=self.progress)
        datamodule = self._datamodule(train, _no_rows())
        datamodule.prefixes = module.task.prefix_windows  # as pipeline.build: the objective's training windows
        trainer.fit(module, datamodule=datamodule)

    def evaluate(self, module: SeqRecModule, split: EvalSplit) -> dict[str, float]:
        trainer = self._trainer()
        datamodule = self._datamodule(_no_csr(self.seqs.n_users), split)
        return {k: float(v) for k, v in trainer.test(module, datamodule=datamodule, verbose=False)[0].items()}

    def checkpoint(self, module: SeqRecModule, name: str) -> Path:
        """Write the module's weights and run config to ``checkpoints/<name>.ckpt`` atomically; return the path."""
        path = self.output_dir / "checkpoints" / f"{name}.ckpt"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".ckpt.partial")
        torch.save({"state_dict": module.state_dict(), names.CONFIG_KEY: self.run_config}, partial)
        os.replace(partial, path)
        return path

    def restore(self, path: Path) -> SeqRecModule:
        module = self.new_model()
        module.load_state_dict(load_checkpoint(str(path))["state_dict"])
        return module

    def _datamodule(self, train: tuple[np.ndarray, np.ndarray], split: EvalSplit) -> SeqDataModule:
        data_cfg = self.cfg.data
        datamodule = SeqDataModule(
            source=None,
            preprocessing=None,
            split=None,
            max_len=data_cfg.max_len,
            batch_size=data_cfg.batch_size,
            eval_batch_size=data_cfg.eval_batch_size,
            group_batches=data_cfg.group_batches,
            seed=self.cfg.seed,
        )
        datamodule.data = self._processed(train, split)
        return datamodule

    def _processed(self, train: tuple[np.ndarray, np.ndarray], split: EvalSplit) -> ProcessedData:
        seqs, (offsets, ids, category_names) = self.seqs, self.categories
        return ProcessedData(
            n_users=seqs.n_users,
            n_items=seqs.n_items,
            train_offsets=train[0],
            train_items=train[1],
            val=split,
            test=split,
            item_raw_ids=seqs.item_raw_ids,
            user_raw_ids=seqs.user_raw_ids,
            item_category_offsets=offsets,
            item_category_ids=ids,
            category_names=category_names,
            user_features=self.users[0],
            user_feature_vocab=self.users[1],
        )

    def _trainer(self, **overrides: Any) -> pl.Trainer:
        fixed = {
            "logger": False,
            "callbacks": [],
            "enable_checkpointing": False,
            "num_sanity_val_steps": 0,
            "enable_progress_bar": False,  # evaluations are short; fit() turns the bar on for training
            "enable_model_summary": False,
        }
        precision = trainer_precision(self.cfg)  # auto → this machine's
        return instantiate(
            self.cfg.trainer, **(fixed | {"precision": precision} | overrides), default_root_dir=str(self.output_dir)
        )


def _no_csr(n_users: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(n_users + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)


def _no_rows() -> EvalSplit:
    empty = np.zeros(0, dtype=np.int64)
    return EvalSplit(users=empty, history_offsets=np.zeros(1, dtype=np.int64), history_items=empty, targets=empty)


def run_feedback(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """The whole loop; writes the table, plot, TensorBoard curves and metrics.json into the run folder. With
    ``source=<database URL>``: one online update of ``ckpt_path`` from stored events instead (``feedback.online``)."""
    if cfg.get("source"):
        from divrec.feedback.online import run_online

        return run_online(cfg, overrides)
    output_dir = Path(cfg.paths.output_dir)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)  # one trainer per step
    check_config(cfg)  # before any data is loaded
    seqs, categories, users = load_sequences(cfg.data)
    loop = cfg.feedback
    cuts = cutoffs(times_of(seqs), loop.start_quantile, loop.n_windows)
    write_config(output_dir, cfg)  # only once the data is known to fit the loop: a refused run leaves nothing
    runner = FeedbackRunner(cfg, seqs, categories, output_dir, users)
    start = time.perf_counter()
    initial = runner.new_model()
    runner.fit(initial, known_before(seqs, cuts[0]), runner.initial_epochs)
    initial_s = time.perf_counter() - start
    initial_path = runner.checkpoint(initial, INITIAL)
    splits = [window_targets(seqs, cuts[w - 1], cuts[w], loop.min_history) for w in range(1, len(cuts))]
    strategies: Sequence[UpdateStrategy] = [instantiate(s) for s in loop.strategies.values() if s is not None]
    with tqdm(total=len(strategies) * len(splits), desc="feedback windows", unit="window") as progress:
        rows = [row for s in strategies for row in _run_strategy(runner, s, initial_path, cuts, splits, progress)]
    return write_report(output_dir, rows, initial_s)


def _run_strategy(
    runner: FeedbackRunner,
    strategy: UpdateStrategy,
    initial: Path,
    cuts: np.ndarray,
    splits: list[EvalSplit],
    progress: tqdm,
) -> list[FeedbackRow]:
    rows, served = [], initial
    for window, split in enumerate(splits, start=1):
        start = time.perf_counter()
        if window == 1:
            model = runner.restore(initial)
        else:
            model = strategy.update(runner, served, cuts[window - 2], cuts[window - 1])
            served = runner.checkpoint(model, f"{strategy.name}-w{window}")
        update_s = time.perf_counter() - start if window > 1 else 0.0
        metrics = runner.evaluate(model, split)
        log.debug("feedback %s window %d: %s", strategy.name, window, metrics)
        rows.append(FeedbackRow(strategy.name, window, float(cuts[window - 1]), len(split), update_s, metrics))
        progress.set_postfix_str(f"{strategy.name} w{window} ndcg@10={metrics.get(NDCG10, float('nan')):.4f}")
        progress.update()
    return rows
