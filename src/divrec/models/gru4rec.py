"""GRU4Rec: a gated recurrent network over the item history, scores tied to the item table.

Papers: Hidasi, Karatzoglou, Baltrunas & Tikk, "Session-based Recommendations with Recurrent Neural Networks",
ICLR 2016 (arXiv:1511.06939); Hidasi & Karatzoglou, "Recurrent Neural Networks with Top-k Gains for Session-based
Recommendations", CIKM 2018 (arXiv:1706.03847).

divrec follows the form in which GRU4Rec is the usual sequential-recommendation baseline (RecBole's
``sequential_recommender/gru4rec.py`` and the GRU4Rec baseline of yehjin-shin/BSARec, itself taken from RecBole):

    x_t = Dropout(e_{i_t} (+ u))                       item embedding from the tower (+ the user vector, ``add``)
    h_t = GRU_N(x_1 … x_t)                             N stacked bias-free GRU layers of width G = ``gru_size``
    y_t = W h_t + b                                    (D) the tied item-table width; score(i) = y_t · e_i

One GRU layer (PyTorch's gate order r, z, n):
    r = σ(W_ir x + W_hr h),  z = σ(W_iz x + W_hz h),  n = tanh(W_in x + r ⊙ W_hn h),  h' = (1 − z) ⊙ n + z ⊙ h

Left padding: the recurrence must start at h = 0 on each history's first real item, so the batch is shifted to
right padding (each row by its count of leading padding), run as a ``PackedSequence`` (the GRU never reads a
padding step), unpacked and shifted back; padding positions output zeros. A left-padded history therefore gives
exactly the outputs of the unpadded one, whatever the padding embedding is (e.g. ``item_attribute_fusion=concat``
gives the padding row a non-zero vector). No positional embeddings: the recurrence orders the items.

Differences from the reference code (RecBole / BSARec):
- Objective: the default ``task=next_item_ce``, full-softmax cross-entropy at every position of a causal model;
  RecBole trains CE (or BPR) at the last position of every prefix; BSARec's gru4rec.py (commit b9d056b) a pairwise
  -log σ(s⁺ − s⁻) loss at the last position of every prefix, one sampled negative. Every-position training covers
  the same prefixes per epoch.
- Padding: RecBole pads on the right and gathers the last real state; BSARec runs the GRU over left padding, which
  keeps h = 0 only because its padding embedding is zero and the GRU has no bias. divrec packs, so any padding
  vector and user features are safe.
- Layers: one single-layer ``nn.GRU`` per layer in ``self.blocks`` (so freezing / layer-wise learning rates see
  layers), fed the ``PackedSequence`` in turn; the same function as one ``nn.GRU(num_layers=N)`` without
  inter-layer dropout (both references use none).
- Initialisation: Xavier-uniform input and recurrent weights of every layer; the references do it for layer 0 only
  (``weight_*_l0``; later layers keep PyTorch's U(±1/√G)). The projection is N(0, 0.02) with zero bias (BSARec; RecBole
  keeps PyTorch's default); the item table is the tower's N(0, 0.02) (BSARec; RecBole: Xavier-normal).
- Dropout: divrec's uniform-draw ``Dropout`` (same distribution as ``nn.Dropout``, faster on CPU).
- The original GRU4Rec's session-parallel mini-batches, sampled output and TOP1 / BPR-max losses (ICLR 2016, CIKM
  2018) are not reproduced: like the references, this is the GRU architecture under divrec's objectives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from divrec.models.backbone import Dropout
from divrec.models.encoder import Encoder, EncoderConfig, fail

__all__ = ["GRU4Rec", "GRU4RecConfig"]


@dataclass(frozen=True)
class GRU4RecConfig(EncoderConfig):
    gru_size: int = 64  # G: width of the GRU state (BSARec --gru_hidden_size 64; RecBole hidden_size 128)
    n_layers: int = 2  # stacked GRU layers (BSARec --num_hidden_layers 2; RecBole num_layers 1)
    dropout: float = 0.5  # on the input embeddings (BSARec --hidden_dropout_prob 0.5; RecBole dropout 0.3)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("gru_size", "n_layers"):
            if int(getattr(self, name)) < 1:
                fail(f"model.{name}={getattr(self, name)} must be >= 1")


def shift_rows(x: Tensor, offset: Tensor) -> Tensor:
    """(B, L, C), (B,) → (B, L, C) with out[b, t] = x[b, t + offset[b]] (indices clamped to [0, L - 1]; the caller
    masks or ignores the clamped positions)."""
    B, L, C = x.shape
    index = (torch.arange(L, device=x.device) + offset[:, None]).clamp(0, L - 1)  # (B, L)
    return x.gather(1, index[..., None].expand(B, L, C))


class GRU4Rec(Encoder):
    """Item sequence → GRU states projected to the item-table width; scores are dot products with the item table."""

    Config = GRU4RecConfig
    CAUSAL = True
    cfg: GRU4RecConfig

    def __init__(self, n_items: int, **config: object) -> None:
        super().__init__(n_items, **config)
        cfg = self.cfg
        self.emb_drop = Dropout(cfg.dropout)
        widths = [cfg.hidden_size] + [cfg.gru_size] * (cfg.n_layers - 1)  # each layer's input width
        self.blocks = nn.ModuleList(nn.GRU(w, cfg.gru_size, bias=False, batch_first=True) for w in widths)
        self.proj = nn.Linear(cfg.gru_size, cfg.hidden_size)  # G → D, the tied item-table width
        for gru in self.blocks:
            nn.init.xavier_uniform_(gru.weight_ih_l0)  # (3G, D_in)
            nn.init.xavier_uniform_(gru.weight_hh_l0)  # (3G, G)
        self.proj.apply(self.init_weights)

    def forward(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) left-padded item ids and, with ``user_features=add``, (B,) user indices → (B, L, D) states, zero
        at padding positions."""
        self.check_length(items)
        L = items.shape[1]
        pad = ((items != 0).cumsum(dim=1) == 0).sum(dim=1)  # (B,) leading padding of each row
        x = self.emb_drop(self.add_users(self.embed_items(items), items, users))  # (B, L, D)
        x = shift_rows(x, pad)  # (B, L, D) right-padded: row b's items in columns 0 .. L - pad[b] - 1
        lengths = (L - pad).clamp(min=1).cpu()  # an all-padding row runs one step, masked below
        h = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        for gru in self.blocks:
            h, _ = gru(h)  # PackedSequence of (Σ lengths, G)
        out, _ = pad_packed_sequence(h, batch_first=True, total_length=L)  # (B, L, G), right-padded
        out = shift_rows(out, -pad)  # (B, L, G) back to left padding
        real = torch.arange(L, device=items.device) >= pad[:, None]  # (B, L)
        return self.proj(out) * real[..., None].to(out.dtype)  # (B, L, D)
