"""Latency of an exported scorer (onnxruntime, and optionally TorchScript) against the eager PyTorch module, at
batch 1 and 64: median and p99 over ``--repeats`` calls, a Markdown table printed and written to ``--out``.

Both sides answer the same request: the newest ``max_len`` items of a dataset user's history in, the top-``k`` ids
with the whole history excluded out. Eager is ``SeqRecModule.scores`` + ``mask_seen`` + divrec's top-k (what
``divrec recommend`` runs per batch); the exported side is the file ``divrec export`` writes (exported here into a
temporary folder, parity-checked, unless ``--onnx`` names one). One intra-op thread by default on both sides (a
shared machine; ``--threads`` to change it); each timing starts after ``--warmup`` calls.

    .venv/bin/python experiments/serving/export_bench.py outputs/train/runs/<time>/checkpoints/best.ckpt \\
        --out experiments/serving/export_bench.md --repeats 500 [--torchscript] [paths.data_dir=... (Hydra)]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from divrec.cli import config_dir
from divrec.serving.export import eager_lists, export, probe, restore, runner

BATCHES = (1, 64)


def timings_ms(call: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def row(runtime: str, batch: int, ms: list[float]) -> str:
    median, p99 = statistics.median(ms), float(np.percentile(ms, 99))
    return f"| {runtime} | {batch} | {median:.3f} | {p99:.3f} | {batch / median * 1e3:,.0f} |"


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def config(args: argparse.Namespace, *extra: str) -> DictConfig:
    """conf/export.yaml with the checkpoint, k and the command line's overrides (``extra`` last)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("export", [f"ckpt_path={args.ckpt}", f"k={args.k}", *args.overrides, *extra])


def exported(args: argparse.Namespace, folder: str) -> dict[str, Path]:
    """The files to time, by runtime: ``--onnx`` or a fresh export, and TorchScript with ``--torchscript``."""
    files = {"onnxruntime": args.onnx or export(config(args, "format=onnx", f"output={folder}/m.onnx"), args.overrides)}
    if args.torchscript:
        files["torchscript"] = export(config(args, "format=torchscript", f"output={folder}/m.pt"), args.overrides)
    return files


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="the checkpoint to export and time")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/export.yaml (e.g. paths.data_dir=...)")
    parser.add_argument("--out", type=Path, required=True, help="the Markdown file to write")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of torch and onnxruntime")
    parser.add_argument("--onnx", type=Path, default=None, help="an already exported file (default: export now)")
    parser.add_argument("--torchscript", action="store_true", help="also export and time TorchScript")
    return parser.parse_args()


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    _, module, data = restore(config(args), args.overrides)
    sample = probe(data, max(BATCHES), module.backbone.max_len)
    reps = -(-max(BATCHES) // len(sample.items))  # a dataset with fewer users: repeat them
    items, lengths = sample.items.repeat(reps, 1).numpy(), sample.lengths.repeat(reps).numpy()
    history, seen = sample.history.repeat(reps, 1), sample.seen.repeat(reps, 1)
    lines = ["| runtime | batch | median ms | p99 ms | users/s |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        runs = {name: runner(path, "onnx" if name == "onnxruntime" else "torchscript", threads=args.threads)
                for name, path in exported(args, folder).items()}
        for b in BATCHES:
            calls = {"eager (PyTorch)": lambda b=b: eager_lists(module, history[:b], seen[:b], args.k)}
            calls |= {name: lambda run=run, b=b: run(items[:b], lengths[:b]) for name, run in runs.items()}
            lines += [row(name, b, timings_ms(call, args.repeats, args.warmup)) for name, call in calls.items()]
    header = (f"# Exported vs eager latency\n\ncheckpoint `{args.ckpt}` ({type(module.backbone).__name__}, "
              f"{data.n_items:,} items, max_len {module.backbone.max_len}), top-{args.k}, {args.threads} thread(s), "
              f"{args.repeats} repeats after {args.warmup} warm-up calls; divrec {git_sha()}, torch "
              f"{torch.__version__}\n")
    text = header + "\n" + "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
