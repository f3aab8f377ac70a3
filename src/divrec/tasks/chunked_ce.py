"""Full-softmax cross-entropy over a huge item table in memory-bounded chunks.

``F.cross_entropy(hidden @ table.T, targets)`` materialises an ``(N, V)`` logit matrix (and its gradient): at
N = 128 windows x 50 positions and V = 1M items that is 25 GB. ``chunked_cross_entropy`` gives the same loss and
the same gradients (up to float rounding) with O(N * chunk_size) extra memory:

* forward: one pass over column chunks keeps a running max ``m`` and a running ``sum exp(z - m)`` per row (online
  logsumexp), so ``lse = m + log(sum)``; the loss of row n is ``lse_n - z_{n, t_n}``;
* backward: the chunk logits are recomputed and turned into ``softmax = exp(z - lse)``; with ``G = softmax - onehot``
  the gradients are ``dL/dhidden = G @ table`` and ``dL/dtable = G^T @ hidden``, accumulated chunk by chunk.

Label smoothing eps follows ``F.cross_entropy``: ``loss_n = (1 - eps)(lse_n - z_{n,t}) + eps(lse_n - mean_j z_{n,j})``,
so ``G = softmax - (1 - eps) onehot - eps / V``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class _ChunkedCE(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: Tensor, table: Tensor, targets: Tensor, chunk_size: int, label_smoothing: float
    ) -> Tensor:
        n, v = hidden.shape[0], table.shape[0]
        run_max = torch.full((n,), float("-inf"), dtype=hidden.dtype, device=hidden.device)  # (N,)
        run_sum = torch.zeros(n, dtype=hidden.dtype, device=hidden.device)  # (N,) sum exp(z - run_max)
        logit_sum = torch.zeros(n, dtype=hidden.dtype, device=hidden.device)  # (N,) for label smoothing
        for start in range(0, v, chunk_size):
            logits = hidden @ table[start : start + chunk_size].T  # (N, c)
            new_max = torch.maximum(run_max, logits.amax(1))
            run_sum = run_sum * torch.exp(run_max - new_max) + torch.exp(logits - new_max[:, None]).sum(1)
            run_max = new_max
            if label_smoothing:
                logit_sum += logits.sum(1)
        lse = run_max + torch.log(run_sum)  # (N,)
        target_logit = (hidden * table[targets]).sum(1)  # (N,)
        per_row = (1.0 - label_smoothing) * (lse - target_logit) + label_smoothing * (lse - logit_sum / v)
        ctx.save_for_backward(hidden, table, targets, lse)
        ctx.chunk_size, ctx.label_smoothing = chunk_size, label_smoothing
        return per_row.mean()

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        hidden, table, targets, lse = ctx.saved_tensors
        eps, n, v = ctx.label_smoothing, hidden.shape[0], table.shape[0]
        scale = grad_out / n
        grad_hidden = torch.zeros_like(hidden)  # (N, D)
        grad_table = torch.zeros_like(table)  # (V, D)
        for start in range(0, v, ctx.chunk_size):
            rows = table[start : start + ctx.chunk_size]  # (c, D)
            g = torch.exp(hidden @ rows.T - lse[:, None])  # (N, c) softmax columns of this chunk
            if eps:
                g -= eps / v
            g *= scale
            grad_hidden += g @ rows
            grad_table[start : start + ctx.chunk_size] = g.T @ hidden
        coef = scale * (1.0 - eps)  # the one-hot part of G
        grad_hidden -= coef * table[targets]
        grad_table.index_add_(0, targets, -coef * hidden)
        return grad_hidden, grad_table, None, None, None


def chunked_cross_entropy(
    hidden: Tensor, table: Tensor, targets: Tensor, chunk_size: int, label_smoothing: float = 0.0
) -> Tensor:
    """Mean over rows of ``cross_entropy(hidden @ table.T, targets)``, computed ``chunk_size`` table rows at a time.

    hidden: (N, D); table: (V, D) (row j = class j); targets: (N,) class indices in ``0..V-1``. Differentiable in
    ``hidden`` and ``table``; peak extra memory O(N * chunk_size) instead of O(N * V).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    if hidden.shape[0] == 0:
        return (hidden.sum() + table.sum()) * float("nan")  # F.cross_entropy's mean over nothing
    return _ChunkedCE.apply(hidden, table, targets.long(), int(chunk_size), float(label_smoothing))
