"""Per-position sampled softmax (``task.share=position``): the (N, n, D) embedding gather against the table path
(blocks of the full logit matrix), one training step of the objective's output layer (forward + backward), at
Beauty's shapes. The two paths alternate run by run; medians of ``--repeats``.

    .venv/bin/python experiments/speed/position_logits.py --widths 64 256 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from divrec.tasks.next_item import NextItemSampledSoftmax, table_logits


def step(task: NextItemSampledSoftmax, hidden: torch.Tensor, table: torch.nn.Embedding, targets: torch.Tensor,
         neg: torch.Tensor, path: str) -> float:
    start = time.perf_counter()
    n_items = table.num_embeddings - 1
    if path == "table":
        neg_logit = table_logits(hidden, table.weight, neg)
        loss = task.logit_loss(hidden, targets, neg, table(targets), neg_logit, n_items)
    else:
        loss = task.sampled_loss(hidden, targets, neg, table(targets), table(neg), n_items)
    loss.backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--positions", type=int, default=900)  # Beauty, batch 128: ~875 real positions per batch
    parser.add_argument("--items", type=int, default=12_101)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    task = NextItemSampledSoftmax(n_negatives=args.negatives, share="position")
    print(f"torch threads {torch.get_num_threads()}; N={args.positions} V={args.items} n={args.negatives}, fp32")
    print("| width | gather ms / step | table ms / step | speed-up | max loss gap |")
    print("| --- | --- | --- | --- | --- |")
    for width in args.widths:
        torch.manual_seed(0)
        table = torch.nn.Embedding(args.items + 1, width)
        hidden = torch.randn(args.positions, width, requires_grad=True)
        targets = torch.randint(1, args.items + 1, (args.positions,))
        neg = torch.randint(1, args.items + 1, (args.positions, args.negatives))
        times: dict[str, list[float]] = {"gather": [], "table": []}
        for i in range(args.repeats + 1):
            for path in ("gather", "table"):
                seconds = step(task, hidden, table, targets, neg, path)
                if i:  # the first round warms up
                    times[path].append(seconds)
        with torch.no_grad():
            a = task.sampled_loss(hidden, targets, neg, table(targets), table(neg), args.items)
            b = task.logit_loss(hidden, targets, neg, table(targets), table_logits(hidden, table.weight, neg),
                                args.items)
        g, t = (statistics.median(times[p]) * 1000 for p in ("gather", "table"))
        print(f"| {width} | {g:.1f} | {t:.1f} | {g / t:.2f}x | {float((a - b).abs()):.1e} |")


if __name__ == "__main__":
    main()
