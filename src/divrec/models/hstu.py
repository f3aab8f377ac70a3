"""HSTU: Hierarchical Sequential Transduction Units, a causal sequence encoder with pointwise (SiLU) attention.

Paper: Jiaqi Zhai, Lucy Liao, Xing Liu, Yueming Wang, Rui Li, Xuan Cao, Leon Gao, Zhaojie Gong, Fangda Gu, Michael
He, Yinghai Lu, Yu Shi: "Actions Speak Louder than Words: Trillion-Parameter Sequential Transducers for Generative
Recommendations", ICML 2024, arXiv:2402.17152. Reference: meta-recsys/generative-recommenders, research code
(``research/modeling/sequential/hstu.py``, its input preprocessor and output postprocessors).

One layer, with x the (B, L, D) layer input and LN a LayerNorm without learned scale or shift (eps 1e-6):

    U, V, Q, K = split(SiLU(LN(x) W))                               W: (D, 2·H·dv + 2·H·dqk), no bias
    A[h, i, j] = SiLU(Q[h, i]·K[h, j] + rab[bucket(i - j)]) / n     for real keys j <= i, else 0
    x' = x + f2(dropout(LN(A V) * U))                               f2: (H·dv → D) linear

The input is item·√D + a learned position embedding (dropout, padding zeroed); the output is LayerNorm'd (or
L2-normalised, ``output_norm=l2_norm``) and scored against the tied item table.

Where divrec differs from the reference code:
- Timestamps: divrec's batches carry none, so ``rab`` is the relative *position* bias only (the reference adds its
  position + log-bucketed time-gap bias only when timestamps are given, and then no bias at all).
- The position bias holds one weight per causal distance i - j (``position_buckets`` = max_len, the reference's
  2·N - 1 weights of which causal attention reads N); fewer buckets keep short distances exact and log-space the rest.
- ``n`` is ``max_len`` (the reference divides by its fixed padded length, max_sequence_len + max_output_len), or,
  with ``attn_divisor=attended``, by each query's number of real keys — both independent of left padding.
- Positions count back from the newest item (divrec's convention; the reference counts from the oldest item of its
  right-padded sequences), so a history gets the same codes whatever the batch's padded length.
- ``attn_dropout`` drops attention weights (the reference accepts the rate but never applies it; default 0).
- Loss: divrec's default task is full-softmax CE over dot products with the tied item table. The reference trains
  with sampled softmax over L2-normalised query and item embeddings at temperature 0.05; normalising the items and
  the temperature belong to the item tower and the objective, so only the query side is offered here
  (``output_norm=l2_norm``) and the default is the reference's other option, a LayerNorm (``layer_norm``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from divrec.models.backbone import Dropout
from divrec.models.encoder import Encoder, EncoderConfig, fail

DIVISORS = ("max_len", "attended")  # what the SiLU attention is divided by
OUTPUT_NORMS = ("layer_norm", "l2_norm")  # the reference's user_embedding_norm options
EPS = 1e-6  # the reference's LayerNorm and L2-norm epsilon


@dataclass(frozen=True)
class HSTUConfig(EncoderConfig):
    n_layers: int = 4  # HSTU layers (blocks)
    n_heads: int = 4  # attention heads
    attention_dim: int = 16  # dqk: query/key width per head
    linear_dim: int = 16  # dv: value and gate (U) width per head
    attn_dropout: float = 0.0  # on the attention weights A (the reference: 0, unused)
    position_buckets: int | None = None  # relative-position bias buckets; null = max_len (one per distance)
    attn_divisor: str = "max_len"  # n in A = SiLU(·) / n: max_len (fixed, the reference) | attended (real keys)
    output_norm: str = "layer_norm"  # layer_norm | l2_norm (unit-length states, as the reference's l2_norm)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_layers", "n_heads", "attention_dim", "linear_dim"):
            if int(getattr(self, name)) < 1:
                fail(f"model.{name}={getattr(self, name)} must be >= 1")
        if not 0.0 <= float(self.attn_dropout) < 1.0:
            fail(f"model.attn_dropout={self.attn_dropout} must be in [0, 1)")
        if self.position_buckets is not None and not 1 <= int(self.position_buckets) <= self.max_len:
            fail(f"model.position_buckets={self.position_buckets} must be in [1, model.max_len={self.max_len}] "
                 "(causal distances are 0..max_len-1), or null for one bucket per distance")
        if self.attn_divisor not in DIVISORS:
            fail(f"model.attn_divisor={self.attn_divisor!r} is not one of {list(DIVISORS)}")
        if self.output_norm not in OUTPUT_NORMS:
            fail(f"model.output_norm={self.output_norm!r} is not one of {list(OUTPUT_NORMS)}")

    @property
    def buckets(self) -> int:
        return self.max_len if self.position_buckets is None else int(self.position_buckets)


def distance_buckets(max_len: int, n_buckets: int) -> Tensor:
    """(max_len,) bucket of each causal distance d = i - j in 0..max_len-1. With ``n_buckets >= max_len`` each
    distance is its own bucket; else distances below ``n_buckets // 2`` are exact and the rest share log-spaced
    buckets up to ``n_buckets - 1`` (T5-style), so the bucket never decreases with the distance."""
    d = torch.arange(max_len)
    if n_buckets >= max_len:
        return d
    exact = n_buckets // 2
    if exact == 0:  # one bucket: a single learned offset
        return torch.zeros_like(d)
    far = d.clamp(min=exact).double() / exact  # >= 1
    log_spaced = exact + (far.log() / math.log(max_len / exact) * (n_buckets - exact)).long()
    return torch.where(d < exact, d, log_spaced.clamp(max=n_buckets - 1))


class RelativePositionBias(nn.Module):
    """rab[i, j] = w[bucket(i - j)]: a learned scalar per bucketed causal distance, shared by the heads (as the
    reference's per-layer bias). It depends on i - j only, so left padding does not move it."""

    def __init__(self, max_len: int, n_buckets: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_buckets).normal_(std=0.02))  # the reference's N(0, 0.02)
        self.register_buffer("bucket", distance_buckets(max_len, n_buckets), persistent=False)  # (max_len,)

    def forward(self, length: int) -> Tensor:
        """→ (L, L) bias; entries j > i (masked by causality) hold distance 0's bias."""
        i = torch.arange(length, device=self.weight.device)
        distance = (i[:, None] - i[None, :]).clamp(min=0)  # (L, L)
        return self.weight[self.bucket[distance]]  # (L, L)


class HSTULayer(nn.Module):
    def __init__(self, cfg: HSTUConfig) -> None:
        super().__init__()
        D, H = cfg.hidden_size, cfg.n_heads
        self.h, self.dqk, self.dv = H, cfg.attention_dim, cfg.linear_dim
        self.uvqk = nn.Linear(D, 2 * H * (cfg.linear_dim + cfg.attention_dim), bias=False)  # f1
        self.o = nn.Linear(H * cfg.linear_dim, D)  # f2
        self.rel_bias = RelativePositionBias(cfg.max_len, cfg.buckets)
        self.drop, self.attn_drop = Dropout(cfg.dropout), Dropout(cfg.attn_dropout)
        nn.init.normal_(self.uvqk.weight, std=0.02)  # the reference's initialisation
        nn.init.xavier_uniform_(self.o.weight)
        nn.init.zeros_(self.o.bias)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(B, L, D) → U (B, L, H·dv) and V (B, H, L, dv), Q, K (B, H, L, dqk)."""
        B, L, D = x.shape
        hdv, hdqk = self.h * self.dv, self.h * self.dqk
        u, v, q, k = F.silu(self.uvqk(F.layer_norm(x, (D,), eps=EPS))).split([hdv, hdv, hdqk, hdqk], dim=-1)
        v, q, k = (t.view(B, L, self.h, -1).transpose(1, 2) for t in (v, q, k))
        return u, v, q, k

    def weights(self, q: Tensor, k: Tensor, keep: Tensor, divisor: Tensor) -> Tensor:
        """Queries, keys (B, H, L, dqk), keep (B, 1, L, L) 0/1, divisor (B, 1, L, 1) → A (B, H, L, L)."""
        scores = q @ k.transpose(-2, -1) + self.rel_bias(q.shape[2])  # (B, H, L, L), no 1/√d (the reference)
        return F.silu(scores) * keep / divisor

    def forward(self, x: Tensor, keep: Tensor, divisor: Tensor) -> Tensor:  # (B, L, D) -> (B, L, D)
        B, L, _ = x.shape
        u, v, q, k = self.project(x)
        a = self.attn_drop(self.weights(q, k, keep, divisor))  # (B, H, L, L)
        y = (a @ v).transpose(1, 2).reshape(B, L, self.h * self.dv)  # (B, L, H·dv)
        return x + self.o(self.drop(u * F.layer_norm(y, (y.shape[-1],), eps=EPS)))


class HSTU(Encoder):
    """Item sequence → causal HSTU states; scores are dot products with the tied item table."""

    Config = HSTUConfig
    CAUSAL = True
    cfg: HSTUConfig

    def __init__(self, n_items: int, **config: object) -> None:
        super().__init__(n_items, **config)
        cfg = self.cfg
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden_size)
        nn.init.xavier_normal_(self.pos_emb.weight)  # what the reference's reset_params leaves on it
        self.emb_drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(HSTULayer(cfg) for _ in range(cfg.n_layers))
        self.out_norm = nn.LayerNorm(cfg.hidden_size, eps=EPS) if cfg.output_norm == "layer_norm" else None

    def embedding_modules(self) -> list[nn.Module]:
        return [self.tower.item_emb, self.pos_emb]

    def embed(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) left-padded ids → (B, L, D) first-layer input: item·√D + position (+ user), padding zeroed."""
        self.check_length(items)
        pos = self.positions(items.shape[1], items.device)  # (L,) newest item = position 0
        x = self.embed_items(items) * self.cfg.hidden_size**0.5 + self.pos_emb(pos)  # (B, L, D)
        x = self.add_users(x, items, users)
        return self.emb_drop(x) * (items != 0)[..., None].to(x.dtype)

    def attention_mask(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L) ids → keep (B, 1, L, L), 1 where query i may read key j (j <= i, j real), and the divisor n,
        (B, 1, L, 1): max_len, or the number of real keys j <= i (at least 1, so padded queries give 0, not NaN)."""
        real = (items != 0).float()  # (B, L)
        L = items.shape[1]
        causal = torch.ones(L, L, device=items.device).tril()  # (L, L)
        keep = causal * real[:, None, None, :]  # (B, 1, L, L)
        if self.cfg.attn_divisor == "attended":
            divisor = real.cumsum(dim=1).clamp(min=1.0)[:, None, :, None]  # (B, 1, L, 1)
        else:
            divisor = real.new_full((1, 1, 1, 1), float(self.cfg.max_len))
        return keep, divisor

    def output(self, x: Tensor, items: Tensor) -> Tensor:
        """Last-layer states → the model's output: LayerNorm or unit length; padding positions are 0."""
        x = self.out_norm(x) if self.out_norm is not None else x / x.norm(dim=-1, keepdim=True).clamp(min=EPS)
        return x * (items != 0)[..., None].to(x.dtype)

    def forward(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) left-padded item ids (0 = padding) and, with ``user_features=add``, (B,) user indices →
        (B, L, D) states; position t reads only items <= t."""
        x = self.embed(items, users)
        keep, divisor = self.attention_mask(items)
        for block in self.blocks:
            x = block(x, keep, divisor)
        return self.output(x, items)

    @torch.no_grad()
    def attention_maps(self, items: Tensor, users: Tensor | None = None) -> list[Tensor]:
        """(B, L) item ids → one (B, H, L, L) tensor per layer of the weights A = SiLU(QKᵀ + rab) / n that the
        layer multiplies V with (query rows, key columns; masked keys 0), without attention dropout (call
        ``eval()`` first for dropout-free inputs too). Unlike softmax weights they may be negative (SiLU >= -0.28)
        and their rows do not sum to 1."""
        x = self.embed(items, users)
        keep, divisor = self.attention_mask(items)
        maps = []
        for block in self.blocks:
            _, _, q, k = block.project(x)
            maps.append(block.weights(q, k, keep, divisor))
            x = block(x, keep, divisor)
        return maps
