"""Full-ranking evaluation at the Beauty shape: plain fp32 vs bf16 scoring with exact fp32 rescoring.

    flock /tmp/divrec-timing.lock .venv/bin/python experiments/speed/eval_bench.py [--ckpt PATH] [--repeats 3]

Times one pass over every evaluated user (22,363 users x 12,101 items, D=64, batches of 1024) of:

* ``plain``: ``query @ table.T`` → ``mask_scores`` → ``target_ranks`` → ``top_k(20)`` (the evaluator today);
* ``plain_chunked``: the same fp32 arithmetic, 256 users at a time, with ``fast_top_k_scored`` (how much of the gain
  is memory behaviour rather than bf16);
* ``mixed``: ``mixed_ranking`` (one ``prepare_table`` per pass included);

on random data with realistic norms, on a trained item table with random queries, and (when the checkpoint's data
loads) on the trained model's own validation queries. Reports the seconds (min and median over repeats), the mean
number of ambiguous (rescored) items per user, the share of users recomputed exactly, and how many ranks / top-20
lists differ from ``plain`` (only fp32 near-ties between two kernels can make them differ).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor

from divrec.metrics import mask_scores, target_ranks, top_k, top_k_scored
from divrec.metrics.mixed import fast_top_k_scored, mixed_ranking, prepare_table
from divrec.precision import bf16_supported

N_USERS, N_ITEMS, DIM, BATCH, K = 22_363, 12_101, 64, 1024, 20
Case = tuple[Tensor, Tensor, Tensor, Tensor]  # query (N, D), table (V+1, D), seen (N, S), target (N,)


def random_case(seed: int, table: Tensor | None = None, query_norm: float = 9.8) -> Case:
    """Random users (norm ~ ``query_norm``) against ``table`` or a random one (item norms lognormal around 0.23,
    as the trained SASRec's), histories of ~9 items (lognormal, 1..200), uniform targets."""
    gen = torch.Generator().manual_seed(seed)
    if table is None:
        norms = (0.23 * torch.exp(0.35 * torch.randn(N_ITEMS + 1, 1, generator=gen))).clamp(max=0.9)
        table = torch.nn.functional.normalize(torch.randn(N_ITEMS + 1, DIM, generator=gen), dim=1) * norms
        table[0] = 0
    n_items = table.shape[0] - 1
    query = torch.nn.functional.normalize(torch.randn(N_USERS, table.shape[1], generator=gen), dim=1) * query_norm
    lengths = torch.exp(1.8 + 0.8 * torch.randn(N_USERS, generator=gen)).long().clamp(1, 200)
    seen = torch.randint(1, n_items + 1, (N_USERS, int(lengths.max())), generator=gen)
    seen[torch.arange(seen.shape[1]) >= lengths.unsqueeze(1)] = 0
    return query, table, seen, torch.randint(1, n_items + 1, (N_USERS,), generator=gen)


def trained_table(ckpt: Path) -> Tensor:
    state = torch.load(ckpt, weights_only=False, map_location="cpu")["state_dict"]
    weight = state["backbone.tower.item_emb.weight"]
    return weight[: weight.shape[0] - 1].float().contiguous()  # rows 0..n_items (drop the [MASK] row)


def model_case(ckpt: Path, experiment: str) -> Case:
    """The checkpoint's own validation queries, histories and targets (needs the dataset)."""
    from hydra import compose, initialize_config_dir

    from divrec import names
    from divrec.configs import config_dir
    from divrec.pipeline import build

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        overrides = [f"experiment={experiment}", "metrics.diversity=false", "paths.output_dir=/tmp/eval_bench"]
        cfg = compose("train", overrides=overrides)
    datamodule, module = build(cfg)
    datamodule.setup("fit")
    module.load_state_dict(torch.load(ckpt, weights_only=False, map_location="cpu")["state_dict"])
    module.eval()
    queries, seens, targets = [], [], []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            queries.append(module.task.query(module.backbone, batch[names.HISTORY], batch.get(names.USER_INDEX)))
            seens.append(batch[names.SEEN])
            targets.append(batch[names.TARGET])
    width = max(s.shape[1] for s in seens)
    seen = torch.cat([torch.nn.functional.pad(s, (0, width - s.shape[1])) for s in seens])
    return torch.cat(queries), module.backbone.item_table().detach().clone(), seen, torch.cat(targets)


def batches(case: Case) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    query, _, seen, target = case
    for start in range(0, len(query), BATCH):
        rows = slice(start, start + BATCH)
        yield query[rows], seen[rows], target[rows]


def plain(case: Case) -> list[tuple[Tensor, Tensor]]:
    out = []
    for query, seen, target in batches(case):
        masked = mask_scores(query @ case[1].T, seen, target, inplace=True)
        out.append((target_ranks(masked, target), top_k(masked, K)))
    return out


def plain_chunked(case: Case, rows: int = 256) -> list[tuple[Tensor, Tensor]]:
    out = []
    for query, seen, target in batches(case):
        parts = []
        for s in range(0, len(query), rows):
            sl = slice(s, s + rows)
            masked = mask_scores(query[sl] @ case[1].T, seen[sl], target[sl], inplace=True)
            parts.append((target_ranks(masked, target[sl]), fast_top_k_scored(masked, K)[1]))
        out.append((torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])))
    return out


def mixed(case: Case, stats: dict[str, int] | None = None) -> list[tuple[Tensor, Tensor]]:
    prepared = prepare_table(case[1])  # once per pass, as once per validation epoch
    out = []
    for query, seen, target in batches(case):
        ranks, _, ids = mixed_ranking(query, prepared, seen, target, K, stats=stats)
        out.append((ranks, ids))
    return out


def timed(fn: Callable[[Case], object], case: Case, repeats: int) -> tuple[float, float]:
    fn((case[0][:BATCH], case[1], case[2][:BATCH], case[3][:BATCH]))  # warm-up (oneDNN kernels, allocator)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(case)
        seconds.append(time.perf_counter() - start)
    return min(seconds), statistics.median(seconds)


def top_k_only(case: Case, repeats: int) -> None:
    """fp32 top-20 of one masked (1024, V+1) batch: ``top_k_scored`` vs ``fast_top_k_scored`` (same results)."""
    query, seen, target = next(batches(case))
    masked = mask_scores(query @ case[1].T, seen, target)
    for label, fn in (("top_k_scored", top_k_scored), ("fast_top_k_scored", fast_top_k_scored)):
        fn(masked, K)
        seconds = []
        for _ in range(5 * repeats):
            start = time.perf_counter()
            fn(masked, K)
            seconds.append(time.perf_counter() - start)
        print(f"   fp32 {label:18s} per batch of {len(query)}: min {min(seconds) * 1e3:6.2f} ms")
    assert all(torch.equal(a, b) for a, b in zip(top_k_scored(masked, K), fast_top_k_scored(masked, K), strict=True))


def report(name: str, case: Case, repeats: int) -> None:
    stats: dict[str, int] = {}
    reference, got = plain(case), mixed(case, stats)
    rank_diff = sum(int((a[0] != b[0]).sum()) for a, b in zip(reference, got, strict=True))
    list_diff = sum(int((a[1] != b[1]).any(1).sum()) for a, b in zip(reference, got, strict=True))
    users = stats["users"]
    print(f"\n== {name}: {users} users x {case[1].shape[0] - 1} items, D={case[1].shape[1]}")
    print(
        f"   ambiguous items rescored per user {stats['band_pairs'] / users:.2f}; exact-path users "
        f"{stats['exact_users'] / users:.4%}; top-{K} check failed (recomputed) {stats['unsure_users'] / users:.4%}"
    )
    print(f"   vs plain: {rank_diff} ranks and {list_diff} top-{K} lists differ (fp32 near-ties between kernels)")
    for label, fn in (("plain", plain), ("plain_chunked", plain_chunked), ("mixed", mixed)):
        best, median = timed(fn, case, repeats)
        print(f"   {label:14s} min {best:6.3f} s  median {median:6.3f} s")
    top_k_only(case, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=Path("/tmp/b32/checkpoints/best.ckpt"))
    parser.add_argument("--experiment", default="sasrec_beauty")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16_supported={bf16_supported()}")
    report("random table, random queries", random_case(0), args.repeats)
    if not args.ckpt.is_file():
        print(f"\n(no checkpoint at {args.ckpt}: trained-table cases skipped)")
        return
    table = trained_table(args.ckpt)
    report(f"trained table ({args.ckpt}), random queries", random_case(1, table), args.repeats)
    try:
        case = model_case(args.ckpt, args.experiment)
    except Exception as error:  # the dataset may be absent: the other cases still stand
        print(f"\n(model queries skipped: {type(error).__name__}: {error})")
        return
    report(f"trained model ({args.experiment}), its validation queries", case, args.repeats)


if __name__ == "__main__":
    main()
