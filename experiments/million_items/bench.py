"""One size of the million-item benchmark: data → one training epoch → chunked full-ranking test, timed, with RSS.

Everything goes through divrec's own pieces: the Hydra config (conf/), ``SeqDataModule`` (synthetic source,
preprocessing, leave-one-out split, windows, cache), the backbone, the objective and ``SeqRecModule`` driven by a
``pytorch_lightning.Trainer``. Only the catalog is set explicitly: the backbone scores all ``--items`` generated items
(items that no user happened to interact with are cold items: still ranked, still in every softmax).

    python experiments/million_items/bench.py --interactions 1000000 --out results/1M.json
    python experiments/million_items/bench.py --interactions 1000000 --mode chunked_ce --train-batches 3 --out x.json
"""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from divrec import names
from divrec.cli import config_dir
from divrec.lit.module import SeqRecModule

MiB = 2**20


class RssSampler(threading.Thread):
    """Samples this process's resident set size (VmRSS) every ``interval`` s; keeps the peak of each phase."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval, self.phase, self.peaks = interval, "start", {}
        self.running = True

    @staticmethod
    def rss_mib() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def run(self) -> None:
        while self.running:
            rss = self.rss_mib()
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)
            time.sleep(self.interval)

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.peaks[phase] = self.rss_mib()


class EpochTimer(pl.Callback):
    """Wall time of each training epoch (dataloader + steps + optimizer), excluding Trainer setup."""

    def __init__(self) -> None:
        self.start, self.cpu_start, self.seconds, self.cpu_seconds, self.steps = 0.0, 0.0, [], [], 0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, *args: Any) -> None:
        self.steps += 1
        if self.steps % 25 == 0:
            print(f"step {self.steps}: {time.perf_counter() - self.start:.0f} s", flush=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self.start)
        self.cpu_seconds.append(time.process_time() - self.cpu_start)


def loadavg() -> float:
    """The machine's 1-minute load average (other processes share the CPU cores)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def overrides(args: argparse.Namespace) -> list[str]:
    n_users = round(args.interactions / args.mean_length)
    task = (
        ["task=sampled_softmax", "task/sampler=popularity", f"task.n_negatives={args.negatives}"]
        if args.mode == "sampled"
        else ["task=next_item_ce", f"task.chunk_size={args.chunk}"]
    )
    return [
        "data=synthetic", f"data.source.n_users={n_users}", f"data.source.n_items={args.items}",
        f"data.source.mean_length={args.mean_length}", "data.max_len=50", f"data.batch_size={args.batch_size}",
        "data.eval_batch_size=1024", f"data.cache_dir={args.cache_dir}", "seed=0",
        "model.hidden_size=64", "model.n_heads=2", "model.n_layers=2", "model.ffn_size=256",
        *task, f"metrics.eval_chunk_size={args.chunk}", "metrics.diversity=false", "logger=none",
        "trainer=cpu", "trainer.max_epochs=1", "+trainer.limit_val_batches=0", "+trainer.enable_checkpointing=false",
        "+trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "trainer.log_every_n_steps=50",
    ]


def popularity_summary(train_items: np.ndarray, n_items: int) -> dict[str, float]:
    counts = np.sort(np.bincount(train_items, minlength=n_items + 1)[1:])[::-1]
    total = counts.sum()
    return {
        "items_with_interactions": int((counts > 0).sum()),
        "top1pct_share": float(counts[: n_items // 100].sum() / total),
        "top20pct_share": float(counts[: n_items // 5].sum() / total),
        "max_item_count": int(counts[0]),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interactions", type=int, required=True)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--mean-length", type=float, default=50.0)
    parser.add_argument("--mode", choices=["sampled", "chunked_ce"], default="sampled")
    parser.add_argument("--negatives", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-batches", type=int, default=0, help="stop the epoch after this many (0 = all)")
    parser.add_argument("--test-batches", type=int, default=-1, help="1024-user test batches (-1 = all, 0 = none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", default="/tmp/divrec-million-cache")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    rss = RssSampler()
    rss.start()
    out: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "load_start": loadavg()}
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides(args))
    pl.seed_everything(0, workers=True)
    rss.enter("data")
    datamodule, data = data_phase(cfg, args, out)
    rss.enter("train")
    module = train_phase(cfg, args, datamodule, data, out)
    if args.test_batches:
        rss.enter("eval")
        eval_phase(cfg, args, datamodule, module, out)
    rss.running = False
    out["load_end"] = loadavg()
    out["peak_rss_mib"] = {phase: round(v, 1) for phase, v in rss.peaks.items()}
    out["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


def data_phase(cfg: Any, args: argparse.Namespace, out: dict[str, Any]) -> tuple[Any, Any]:
    """Generate, preprocess, split, cache and window the data; record sizes and times."""
    start, cpu_start = time.perf_counter(), time.process_time()
    datamodule = instantiate(cfg.data)
    data = datamodule.load()
    datamodule.setup()
    out["data_s"], out["data_cpu_s"] = time.perf_counter() - start, time.process_time() - cpu_start
    out |= {"n_users": data.n_users, "n_interactions": data.n_interactions, "catalog": args.items}
    out |= {"train_windows": len(datamodule.tensors[names.TRAIN][names.ITEMS]), "test_users": len(data.test)}
    out |= popularity_summary(data.train_items, data.n_items)
    return datamodule, data


def train_phase(cfg: Any, args: argparse.Namespace, datamodule: Any, data: Any, out: dict[str, Any]) -> SeqRecModule:
    """One training epoch (or its first ``--train-batches`` steps) through ``pytorch_lightning.Trainer.fit``."""
    backbone = instantiate(cfg.model, n_items=args.items)
    task = instantiate(cfg.task)
    task.bind(backbone, data)
    module = SeqRecModule(backbone=backbone, task=task, optimizer=instantiate(cfg.optim), ks=list(cfg.metrics.ks),
                          eval_chunk_size=cfg.metrics.eval_chunk_size)
    timer = EpochTimer()
    limits = {"limit_train_batches": args.train_batches} if args.train_batches else {}
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[timer], default_root_dir="/tmp/divrec-million",
                          **limits)
    trainer.fit(module, datamodule=datamodule)
    steps_per_epoch = len(datamodule.train_dataloader())
    out |= {"train_s": timer.seconds[0], "train_steps": timer.steps, "steps_per_epoch": steps_per_epoch}
    out["train_cpu_s"] = timer.cpu_seconds[0]  # CPU seconds of all threads: less sensitive to other load
    out["epoch_s"] = timer.seconds[0] * steps_per_epoch / timer.steps  # = train_s for a full epoch
    out["epoch_cpu_s"] = timer.cpu_seconds[0] * steps_per_epoch / timer.steps
    out["train_loss"] = float(trainer.callback_metrics[names.metric_key(names.TRAIN, names.LOSS)])
    return module


def eval_phase(cfg: Any, args: argparse.Namespace, datamodule: Any, module: SeqRecModule, out: dict[str, Any]) -> None:
    """The chunked full-ranking test over all (or the first ``--test-batches`` x 1024) test users."""
    data = datamodule.load()
    limit = {"limit_test_batches": args.test_batches} if args.test_batches > 0 else {}
    tester = instantiate(cfg.trainer, logger=False, callbacks=[], default_root_dir="/tmp/divrec-million", **limit)
    start, cpu_start = time.perf_counter(), time.process_time()
    metrics = tester.test(module, datamodule=datamodule, verbose=False)[0]
    out["eval_cpu_s"] = time.process_time() - cpu_start
    users = min(len(data.test), args.test_batches * 1024) if args.test_batches > 0 else len(data.test)
    out |= {"eval_s": time.perf_counter() - start, "eval_users": users}
    out["eval_all_users_s"] = out["eval_s"] * len(data.test) / users
    out["eval_all_users_cpu_s"] = out["eval_cpu_s"] * len(data.test) / users
    key = names.metric_key(names.TEST, names.NDCG, 10)
    out[key] = metrics[key]


if __name__ == "__main__":
    main()
