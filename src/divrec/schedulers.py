"""Learning-rate schedules as ``_partial_`` factories: Hydra fills the hyperparameters, the LightningModule passes
``optimizer`` and ``total_steps`` (Lightning's estimate of the run's optimizer steps)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.05, min_lr_ratio: float = 0.0
) -> LambdaLR:
    """Linear warmup over ``warmup_ratio`` of the steps, then cosine decay to ``min_lr_ratio`` × the base lr.

    factor(s) = s / w for s < w;  min + (1 - min) · ½ (1 + cos(π · (s - w) / (T - w))) afterwards.
    """
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"scheduler.warmup_ratio={warmup_ratio} must be in [0, 1)")
    total = max(int(total_steps), 1)
    warmup = int(warmup_ratio * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
