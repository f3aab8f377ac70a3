"""Micro-benchmark (not a test): re-ranking throughput in users/s, top-10 of 200 candidates, 1024 users per batch.

Random catalog (5,000 items, 20 categories, 1-3 per item), random candidate sets and scores. Prints one JSON line:
``{"dpp_users_per_s": ..., "mmr_users_per_s": ..., ...}``. Run: ``.venv/bin/python experiments/rerank_speed/bench.py``.

``--device cuda``: the same inputs and re-rankers on a GPU (timed with a device synchronisation after each call);
``--users 8192`` for GPU-sized batches.

Default 1 intra-op thread: these (B, N) ops gain little from more, and with 2 threads on a shared 2-core machine
OpenMP spin-waiting made every op ~20x slower (measured: DPP 19k users/s at 1 thread, 0.4k at 2, under load).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from divrec.rerank import DPP, MMR, Calibrated, NoRerank, RerankContext, XQuAD


def _catalog(n_items: int, n_cat: int, gen: torch.Generator) -> torch.Tensor:
    m = torch.zeros(n_items + 1, n_cat, dtype=torch.bool)
    for width in (1, 2, 3):
        rows = torch.arange(1, n_items + 1)[torch.rand(n_items, generator=gen) < 1 / width]
        m[rows, torch.randint(0, n_cat, (rows.numel(),), generator=gen)] = True
    m[1:, 0] |= ~m[1:].any(1)
    return m


def _users_per_s(fn: Callable[[], torch.Tensor], users: int, repeats: int, device: torch.device) -> float:
    def sync() -> None:  # GPU calls return before the work is done
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()  # warm-up
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return users * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1024)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:n]")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    n_items = 5000
    m = _catalog(n_items, 20, gen)
    cands = torch.stack([torch.randperm(n_items, generator=gen)[: args.candidates] + 1 for _ in range(args.users)])
    scores = torch.randn(args.users, args.candidates, generator=gen)
    ctx = RerankContext(histories=torch.randint(1, n_items + 1, (args.users, 50), generator=gen))
    scores, cands, ctx.histories = scores.to(device), cands.to(device), ctx.histories.to(device)
    rerankers: dict[str, torch.nn.Module] = {
        "none": NoRerank(),
        "mmr": MMR(0.5, item_categories=m),
        "dpp": DPP(0.5, item_categories=m),
        "dpp_window5": DPP(0.5, window=5, item_categories=m),
        "dpp_identity_mix": DPP(0.5, item_categories=m, identity_mix=0.1, order="score"),
        "mmr_sum_softmax_jaccard": MMR(
            0.993, "jaccard", item_categories=m, relevance="softmax", aggregate="sum", order="score"
        ),
        "xquad": XQuAD(m, 0.1),
        "calibrated": Calibrated(m, lambda_=0.5),
    }
    out: dict[str, object] = {"users": args.users, "candidates": args.candidates, "k": args.k, "threads": args.threads}
    if device.type != "cpu":
        out["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    with torch.inference_mode():
        for name, reranker in rerankers.items():
            reranker.to(device)  # category tables as buffers, on the device of the inputs
            rate = _users_per_s(lambda r=reranker: r(scores, cands, args.k, ctx), args.users, args.repeats, device)
            out[f"{name}_users_per_s"] = round(rate)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
