"""Why was an item recommended? Gradient × input attribution of each recommended item's score to the history items.

For user u and recommended item j with score s_j = q(u) · e_j, the weight of history position t is

    a_t = ⟨∂s_j / ∂x_t, x_t⟩,   x_t = the item embedding fed at position t,

summed over the positions of the same item and divided by Σ_t |a_t|, so the weights of a list entry are signed
shares of the total attribution (largest positive = the history item that pushed j up most). Unlike attention
weights, this is specific to each recommended item, goes through every layer (not only one attention map) and
works for any objective's query (SASRec's last position, BERT4Rec's appended [MASK]): the item embeddings are
captured with a hook wherever the objective feeds them. Cost: one backward pass per list position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from divrec import names
from divrec.data.types import ProcessedData
from divrec.lit.module import SeqRecModule
from divrec.models import ModelConfigError

if TYPE_CHECKING:  # annotations only
    import pandas as pd


@dataclass(frozen=True)
class Explanation:
    """For each user (B) and recommended item (k), the ``top`` history items that weighted it most."""

    items: Tensor  # (B, k, top) internal item ids, 0 = none (histories shorter than top)
    weights: Tensor  # (B, k, top) their signed attribution shares (0 where items is 0)


def attributions(
    module: SeqRecModule, history: Tensor, recommended: Tensor, users: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(B, L) histories, (B, k) recommended ids (and (B,) user indices, for user features) → the ids the backbone
    read (B, L') and the gradient × input attribution of each recommended item's score to each of those positions
    (B, k, L')."""
    captured: list[Tensor] = []
    if module.backbone.tower is None:
        raise ModelConfigError(f"{type(module.backbone).__name__} has no learned item embeddings to attribute "
                               "scores to; explanations need a learned model (e.g. model=sasrec)")
    hook = module.backbone.tower.item_emb.register_forward_hook(lambda m, args, out: captured.extend([args[0], out]))
    was_training = module.training
    module.eval()
    try:
        # Lightning evaluates under inference mode; leave it, and copy its inference tensors into normal ones.
        # Eager even when the backbone is compiled (compile=true): a compiled graph returns the hooked embeddings as
        # a side output, off the autograd path from the scores, so there would be no gradient to take.
        with torch.inference_mode(False), torch.enable_grad(), torch.compiler.set_stance("force_eager"):
            history, recommended = history.clone(), recommended.clone()
            users = None if users is None else users.clone()
            scores = module.backbone.score(module.task.query(module.backbone, history, users))  # (B, V)
            ids, embedded = captured  # (B, L'), (B, L', D)
            picked = scores.gather(1, recommended)  # (B, k)
            rows = []
            for r in range(recommended.shape[1]):  # users are independent: one backward serves the batch
                (grad,) = torch.autograd.grad(picked[:, r].sum(), embedded, retain_graph=True)
                rows.append((grad * embedded).sum(-1).detach())  # (B, L')
    finally:
        hook.remove()
        module.train(was_training)
    return ids, torch.stack(rows, dim=1)  # (B, L'), (B, k, L')


def explain(
    module: SeqRecModule, history: Tensor, recommended: Tensor, top: int = 3, users: Tensor | None = None
) -> Explanation:
    """The ``top`` history items with the largest attribution share for each recommended item (see module doc)."""
    ids, attr = attributions(module, history, recommended, users)  # (B, L'), (B, k, L')
    real = (ids != 0) & (ids != module.backbone.n_items + 1)  # (B, L') padding and [MASK] explain nothing
    attr = attr * real[:, None, :]
    same = (ids[:, :, None] == ids[:, None, :]) & real[:, :, None]  # (B, L', L') positions of one item
    per_item = attr @ same.to(attr.dtype)  # (B, k, L') each position carries its item's total
    later = same.triu(1).any(dim=-1)  # (B, L') the item occurs again later: count it once, at its last position
    keep = real & ~later
    share = per_item / attr.abs().sum(-1, keepdim=True).clamp_min(1e-12)  # (B, k, L')
    ranked = share.masked_fill(~keep[:, None, :], float("-inf"))
    n = min(top, ids.shape[1])
    values, positions = ranked.topk(n, dim=-1)  # (B, k, n)
    found = torch.isfinite(values)
    items = ids[:, None, :].expand_as(share).gather(-1, positions).masked_fill(~found, 0)
    weights = values.masked_fill(~found, 0.0)
    if n < top:  # very short model input: pad to the requested width
        pad = (0, top - n)
        items, weights = torch.nn.functional.pad(items, pad), torch.nn.functional.pad(weights, pad)
    return Explanation(items=items, weights=weights)


def explain_lists(
    module: SeqRecModule,
    history: Tensor,
    recommended: np.ndarray,
    top: int,
    batch_size: int = 1024,
    users: Tensor | None = None,
) -> Explanation:
    """``explain`` over many users in batches: (U, L) histories, (U, k) recommended ids (0 = empty slot), (U,)
    user indices (for user features)."""
    chunks = [
        explain(
            module, history[i : i + batch_size], torch.from_numpy(recommended[i : i + batch_size]), top,
            None if users is None else users[i : i + batch_size],
        )
        for i in range(0, len(history), batch_size)
    ]
    if not chunks:
        empty = torch.zeros((0, recommended.shape[1], top))
        return Explanation(items=empty.long(), weights=empty)
    return Explanation(torch.cat([c.items for c in chunks]), torch.cat([c.weights for c in chunks]))


def with_explanations(frame: pd.DataFrame, data: ProcessedData, ids: np.ndarray, why: Explanation) -> pd.DataFrame:
    """``frame`` (``recommend.as_frame`` of ``ids``: one row per non-empty slot, user-major) plus the columns
    ``because_of`` (raw ids), ``because_of_title`` (where the dataset has titles) and ``because_of_weight``."""
    keep = ids.reshape(-1) != 0
    items = why.items.reshape(-1, why.items.shape[-1]).numpy()[keep]  # (rows, top)
    weights = why.weights.reshape(-1, why.weights.shape[-1]).numpy()[keep]
    found = items != 0

    def joined(values: np.ndarray) -> list[str]:
        return ["|".join(row[mask]) for row, mask in zip(values, found, strict=True)]

    frame = frame.copy()
    frame[names.BECAUSE_OF] = joined(data.item_raw_ids[items].astype(str))
    if data.item_titles is not None:
        frame[names.BECAUSE_OF_TITLE] = joined(data.item_titles[items].astype(str))
    frame[names.BECAUSE_OF_WEIGHT] = joined(np.char.mod("%.4f", weights))
    return frame
