"""Micro-benchmark (not a test): cost of the beyond-accuracy metrics' ``update`` per 1,024-user batch at Beauty's
shape (12,101 items, 637 categories, 1–6 per item, K = 5/10/20, histories of 50), for one source tree.

    python experiments/rerank_speed/metrics_bench.py <src folder>   # e.g. src, or an older checkout's src
Compare two trees by running it once per tree (same machine, back to back).
"""

from __future__ import annotations

import sys
import time

import torch

sys.path.insert(0, sys.argv[1])
from divrec.metrics import DiversityEvaluator

torch.manual_seed(0)
torch.set_num_threads(1)
n_items, n_cat = 12101, 637
counts = torch.randint(1, 7, (n_items,))
offsets = torch.cat([torch.zeros(2, dtype=torch.long), counts.cumsum(0)])
cat_ids = torch.randint(0, n_cat, (int(counts.sum()),))
evaluator = DiversityEvaluator(
    "test", n_items, (5, 10, 20), item_category_offsets=offsets.numpy(), item_category_ids=cat_ids.numpy(),
    n_categories=n_cat, popularity=torch.randint(0, 50, (n_items + 1,)),
)
lists, histories = torch.randint(1, n_items + 1, (1024, 20)), torch.randint(0, n_items + 1, (1024, 50))
for subset in ("all", "miscalibration"):
    keys = [key for key, name in evaluator._keys if subset == "all" or name == subset]
    start = time.perf_counter()
    for _ in range(5):
        if subset == "all":
            evaluator.update(lists, histories=histories)
        else:
            for key in keys:
                evaluator.metrics[key].update(lists, histories=histories)
    print(f"{sys.argv[1]} {subset}: {(time.perf_counter() - start) / 5 * 1000:.0f} ms per 1,024-user batch")
