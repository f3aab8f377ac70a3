"""ANN retrieval vs exact top-K on a big synthetic catalog: recall@10, batch-1 latency, build time, index memory.

The catalog is clustered like trained item embeddings (a fixed seed): items are noisy copies of cluster centres
with log-normal norms (popular items score higher), queries mix one to three centres (a user's interests). Each of
``--queries`` queries is answered one at a time (batch 1, ``--seen`` random seen items excluded) by the exact
``chunked_top_k`` and by each ``AnnIndex`` kind (``divrec.serving.ann``: candidates from faiss, then exact
re-scoring); recall@10 is the overlap of the two top-10 lists. Targets: recall@10 >= 0.98, >= 10x lower latency.

    .venv/bin/python experiments/serving/ann_bench.py --items 1000000 --out experiments/serving/ann_1M.md
    .venv/bin/python experiments/serving/ann_bench.py --items 50000 --queries 200 --out /tmp/ann_50k.md  # smoke

Memory at 1M items, D=64: the table (256 MiB), one float32 copy inside each index (256 MiB) and the HNSW graph
(~2 * M * 4 bytes per item); kinds are built one after the other, the previous one freed first.
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from divrec.metrics.chunked import chunked_top_k
from divrec.serving.ann import KINDS, AnnConfig, AnnIndex

MiB = 2**20
Answer = Callable[[Tensor, Tensor], Tensor]  # (1, D) query, (1, S) seen → (1, 10) item ids


def rss_mib() -> float:
    """This process's resident set size (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def clustered_catalog(n_items: int, dim: int, n_queries: int, seed: int) -> tuple[Tensor, Tensor]:
    """``(n_items + 1, dim)`` item table (row 0 = zero padding) and ``(n_queries, dim)`` queries, float32."""
    g = torch.Generator().manual_seed(seed)
    n_clusters = max(16, int(math.sqrt(n_items)))  # 1000 topics at 1M items
    centres = torch.randn(n_clusters, dim, generator=g)  # (C, D)
    table = torch.empty(n_items + 1, dim)
    table[0] = 0
    for start in range(1, n_items + 1, 262_144):  # in blocks: no (V, D) temporaries beyond the table itself
        stop = min(start + 262_144, n_items + 1)
        topic = torch.randint(0, n_clusters, (stop - start,), generator=g)
        rows = centres[topic] + 0.6 * torch.randn(stop - start, dim, generator=g)
        table[start:stop] = rows * torch.exp(0.3 * torch.randn(stop - start, 1, generator=g))  # popularity norm
    picked = torch.randint(0, n_clusters, (n_queries, 3), generator=g)  # up to three interests per user
    used = torch.arange(3) < torch.randint(1, 4, (n_queries, 1), generator=g)  # (N, 3), the first always used
    weight = (0.1 + torch.rand(n_queries, 3, generator=g)) * used  # (N, 3)
    mixed = (weight[:, :, None] * centres[picked]).sum(1) / weight.sum(1, keepdim=True)  # (N, D)
    queries = mixed + 0.3 * torch.randn(n_queries, dim, generator=g)
    return table, queries.contiguous()


def time_batch1(answer: Answer, queries: Tensor, seen: Tensor, warmup: int = 5) -> tuple[Tensor, list[float]]:
    """Answer each query alone; ``(N, 10)`` ids and per-query wall times (ms)."""
    for i in range(min(warmup, len(queries))):
        answer(queries[i : i + 1], seen[i : i + 1])
    ids, times = [], []
    for i in range(len(queries)):
        start = time.perf_counter()
        ids.append(answer(queries[i : i + 1], seen[i : i + 1]))
        times.append((time.perf_counter() - start) * 1000)
    return torch.cat(ids), times


def recall(found: Tensor, exact: Tensor) -> float:
    """Mean |found ∩ exact| / 10 over queries."""
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, exact, strict=True))
    return hits / exact.numel()


def p99(times: list[float]) -> float:
    return sorted(times)[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)]


def bench_kind(kind: str, args: argparse.Namespace, table: Tensor, queries: Tensor, seen: Tensor) -> dict[str, Any]:
    """Build one index kind, measure it, free it; one table row."""
    config = AnnConfig(
        kind=kind, candidates=args.candidates, M=args.M, ef_construction=args.ef_construction,
        ef_search=args.ef_search, nlist=args.nlist, nprobe=args.nprobe,
    )
    gc.collect()
    before = rss_mib()
    start = time.perf_counter()
    index = AnnIndex(config).build(table)
    build_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp) / "index.faiss")
        file_mib = (Path(tmp) / "index.faiss").stat().st_size / MiB
    ids, times = time_batch1(lambda q, s: index.retrieve(q, 10, s)[0], queries, seen)
    return {"method": kind, "ids": ids, "times": times, "build_s": build_s, "index_mib": file_mib,
            "rss_mib": rss_mib() - before}  # the index is freed on return, before the next kind is built


def markdown(args: argparse.Namespace, rows: list[dict[str, Any]], exact_ids: Tensor) -> str:
    exact = next(r for r in rows if r["method"] == "exact")
    base = statistics.median(exact["times"])
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"ANN vs exact top-10: {args.items:,} clustered items, D={args.dim}, seed {args.seed}, {args.queries} "
        f"batch-1 queries with {args.seen} seen items each, {torch.get_num_threads()} thread(s), "
        f"{platform.processor() or platform.machine()}, git {sha or '?'}; candidates={args.candidates}, "
        f"M={args.M}, efConstruction={args.ef_construction}, efSearch={args.ef_search}, "
        f"nlist={args.nlist or 'auto'}, nprobe={args.nprobe}.",
        "",
        "| method | recall@10 | median ms | p99 ms | speed-up (median) | build s | index MiB | RSS +MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        med = statistics.median(r["times"])
        lines.append(
            f"| {r['method']} | {recall(r['ids'], exact_ids):.4f} | {med:.3f} | {p99(r['times']):.3f} | "
            f"{base / med:.1f}x | {r['build_s']:.1f} | {r['index_mib']:.0f} | {r['rss_mib']:.0f} |"
        )
    lines.append(f"\nPeak RSS {args.peak_mib:.0f} MiB. Targets: recall@10 >= 0.98, speed-up >= 10x.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000, help="batch-1 queries timed per method")
    parser.add_argument("--seen", type=int, default=50, help="random seen items excluded per query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {KINDS}")
    parser.add_argument("--chunk-size", type=int, default=0, help="exact top-K chunk (0 = whole catalog at once)")
    parser.add_argument("--threads", type=int, default=0, help="torch/faiss threads (0 = torch's default)")
    defaults = AnnConfig()
    for key in ("candidates", "M", "ef_construction", "ef_search", "nlist", "nprobe"):
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, type=int, default=getattr(defaults, key))
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    table, queries = clustered_catalog(args.items, args.dim, args.queries, args.seed)
    seen = torch.randint(1, args.items + 1, (args.queries, args.seen), generator=torch.Generator().manual_seed(1))
    chunk = args.chunk_size or table.shape[0]
    exact_ids, times = time_batch1(lambda q, s: chunked_top_k(q, table, s, 10, chunk)[1], queries, seen)
    rows = [{"method": "exact", "ids": exact_ids, "times": times, "build_s": 0.0, "index_mib": 0.0, "rss_mib": 0.0}]
    for kind in args.kinds.split(","):
        rows.append(bench_kind(kind.strip(), args, table, queries, seen))
        print(f"{kind}: built in {rows[-1]['build_s']:.1f} s, recall@10 {recall(rows[-1]['ids'], exact_ids):.4f}")
    args.peak_mib = peak_rss_mib()
    text = markdown(args, rows, exact_ids)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    main()
