"""The fused output layer: full-softmax cross-entropy and its gradients in one pass over blocks of positions.

``F.cross_entropy(hidden @ table.T, targets)`` keeps an fp32 ``(N, V)`` logit matrix for its backward and walks
it several times (logits, log-softmax, its gradient, two matrix products over the gradient). ``fused_cross_entropy``
takes ``rows`` positions at a time, so that the block's ``(rows, V)`` logits stay in cache, and computes in the
forward pass both the loss and the gradients (as Liger-Kernel's fused linear cross-entropy does on GPUs):

* ``z = h_r @ E^T`` in ``compute_dtype`` (bf16: the CPU's bf16 matrix units; products accumulated in fp32), then in
  fp32: ``m = max_j z``, ``s = sum_j exp(z - m)``, ``lse = m + log s`` and the loss of each row
  ``(1 - eps)(lse - z_t) + eps (lse - mean_j z_j)`` (label smoothing ``eps``, as ``F.cross_entropy``);
* ``G = (softmax(z) - (1 - eps) onehot(t) - eps / V) / N``, cast to ``compute_dtype``, and
  ``dL/dh_r = G @ E``, ``dL/dE += G^T @ h_r`` (accumulated in fp32).

The backward only scales the stored gradients by the incoming gradient: three matrix products per step instead of
four, no ``(N, V)`` tensor ever, and the loss, log-sum-exp and gradient sums in fp32 whatever ``compute_dtype``
(the master weights stay fp32 under ``trainer.precision=bf16-mixed``). With ``compute_dtype=float32`` the loss and
gradients equal ``F.cross_entropy``'s up to float rounding; with bf16 within bf16 rounding of the inputs (tested).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)
BLOCK_ELEMENTS = 1 << 21  # logits per block (rows x V): 8 MB in fp32, measured best on 2 MB-L2 cores (README)


def block_rows(n_rows: int, n_classes: int, elements: int = BLOCK_ELEMENTS) -> int:
    """Positions per block: ``elements // n_classes`` rounded down to a multiple of 16, at least 16, at most
    ``n_rows``."""
    return max(1, min(n_rows, max(16, (elements // max(n_classes, 1)) // 16 * 16)))


class _FusedCE(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: Tensor, table: Tensor, targets: Tensor, label_smoothing: float,
        compute_dtype: torch.dtype, rows: int, compiled: bool,
    ) -> Tensor:
        n, wants_grad = hidden.shape[0], any(ctx.needs_input_grad[:2])
        acc = torch.promote_types(compute_dtype, torch.float32)  # sums: fp32 (fp64 for fp64 inputs)
        h, e = hidden.to(compute_dtype), table.to(compute_dtype)  # (N, D), (V, D)
        grad_h = torch.empty(hidden.shape, dtype=acc, device=hidden.device)
        grad_e = torch.zeros(table.shape, dtype=acc, device=table.device)
        total = torch.zeros((), dtype=acc, device=hidden.device)
        block = COMPILED_BLOCK if compiled else block_loss_and_grad
        for start in range(0, n, rows):
            h_r, t_r = h[start : start + rows], targets[start : start + rows, None]  # (r, D), (r, 1)
            loss_r, g = block(h_r @ e.T, t_r, label_smoothing, n, wants_grad)  # (r,), (r, V) in compute_dtype
            total += loss_r.sum()
            if g is None:
                continue
            grad_h[start : start + rows] = g @ e
            if compute_dtype == acc:
                grad_e.addmm_(g.T, h_r)
            else:
                grad_e += g.T @ h_r
        ctx.save_for_backward(grad_h.to(hidden.dtype), grad_e.to(table.dtype))
        return total / n  # fp32 (fp64 for fp64 inputs), like F.cross_entropy under autocast

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        grad_h, grad_e = ctx.saved_tensors
        return grad_h * grad_out, grad_e * grad_out, None, None, None, None, None


def block_loss_and_grad(
    logits: Tensor, targets: Tensor, eps: float, n: int, wants_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """(r,) per-row losses of a block's (r, V) logits (any float dtype; the math in fp32 or wider) and, when
    ``wants_grad``, the block's (r, V) ``dL/dz`` of the mean over ``n`` rows, in the logits' dtype. In place on one
    fp32 copy of the logits: every pass over the block is a read-modify-write of that one buffer."""
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))  # (r, V) a copy for bf16/fp64 logits
    z = z if z is not logits else z.clone()
    target_logit = z.gather(1, targets).squeeze(1)  # (r,)
    mean_logit = z.mean(1) if eps else None
    m = z.amax(1, keepdim=True)  # (r, 1)
    z.sub_(m).exp_()  # exp(z - m)
    total = z.sum(1, keepdim=True)  # (r, 1)
    lse = (m + total.log()).squeeze(1)  # (r,)
    loss = (1.0 - eps) * (lse - target_logit)
    if mean_logit is not None:
        loss = loss + eps * (lse - mean_logit)
    if not wants_grad:
        return loss, None
    z.mul_(total.reciprocal_().mul_(1.0 / n))  # softmax / N
    if eps:
        z.sub_(eps / (z.shape[1] * n))
    z.scatter_add_(1, targets, torch.full(targets.shape, -(1.0 - eps) / n, dtype=z.dtype, device=z.device))
    return loss, z.to(logits.dtype)


class CompiledBlock:
    """``block_loss_and_grad`` through torch.compile (inductor: one fused C++ loop per reduction instead of one
    pass per operator), compiled once for every block shape (``dynamic=True``); eager if compiling fails."""

    def __init__(self) -> None:
        self.compiled: Callable[..., tuple[Tensor, Tensor | None]] | None = None
        self.failed = False

    def __call__(self, *args: Any) -> tuple[Tensor, Tensor | None]:
        if not self.failed:
            try:
                if self.compiled is None:
                    self.compiled = torch.compile(block_loss_and_grad, dynamic=True)
                return self.compiled(*args)
            except Exception as err:  # no C++ compiler, an inductor bug: the eager path is exact
                self.failed = True
                log.warning("task.compile=true: torch.compile of the output layer failed (%s: %s); running it "
                            "eagerly", type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        return block_loss_and_grad(*args)


COMPILED_BLOCK = CompiledBlock()


def fused_cross_entropy(
    hidden: Tensor, table: Tensor, targets: Tensor, label_smoothing: float = 0.0,
    compute_dtype: torch.dtype | None = None, rows: int | None = None, compiled: bool = False,
) -> Tensor:
    """Mean over rows of ``cross_entropy(hidden @ table.T, targets, label_smoothing)``, fused (module docstring).

    hidden: (N, D); table: (V, D), row j = class j; targets: (N,) in ``0..V-1``. ``compute_dtype`` of the matrix
    products: None = bf16 when autocast to bf16 is on for the tensors' device (``trainer.precision=bf16-mixed``),
    else ``hidden``'s dtype; sums in fp32 or wider. ``rows``: positions per block (None = ``block_rows``).
    ``compiled``: the per-block softmax and gradient through torch.compile (``CompiledBlock``). Differentiable in
    ``hidden`` and ``table``.
    """
    if hidden.shape[0] == 0:
        return (hidden.sum() + table.sum()) * float("nan")  # F.cross_entropy's mean over nothing
    device = hidden.device.type
    if compute_dtype is None:
        bf16 = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16
        compute_dtype = torch.bfloat16 if bf16 else hidden.dtype
    rows = rows if rows is not None else block_rows(hidden.shape[0], table.shape[0])
    with torch.autocast(device, enabled=False):  # the casts above are explicit; autocast would add its own
        return _FusedCE.apply(
            hidden, table, targets.long(), float(label_smoothing), compute_dtype, int(rows), compiled
        )
