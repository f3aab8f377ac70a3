"""The Transformer sequence encoder: item + positional embeddings, N self-attention blocks, tied item scores.

One plain ``nn.Module`` serves SASRec (causal attention) and BERT4Rec (bidirectional attention + a mask token).
Sequences are LEFT-padded with item id 0, and positions count back from the most recent item (the newest item has
position 0), so a history gets the same position codes whatever the batch's padded length — the same convention
as the original SASRec's fixed-length left-padded arrays, without padding every batch to ``max_len``.

Optional side features: item attributes fused into the item table (``item_attribute_fusion``, models/side.py) and
user features added to every position or prepended as a user token (``user_features``, models/user_side.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from divrec.models.contract import ModelConfigError
from divrec.models.encoder import ACTIVATIONS, Encoder, EncoderConfig, fail
from divrec.models.user_side import USER_FEATURE_MODES

__all__ = ["ACTIVATIONS", "BackboneConfig", "ModelConfigError", "TransformerBackbone"]


@dataclass(frozen=True)
class BackboneConfig(EncoderConfig):
    n_heads: int = 2  # attention heads; hidden_size must divide evenly among them
    n_layers: int = 2  # Transformer blocks
    ffn_size: int = 256  # inner width of each block's feed-forward network
    activation: str = "gelu"  # feed-forward non-linearity: gelu | relu | silu
    attn_dropout: float = 0.2  # on attention weights
    norm_first: bool = True  # pre-LayerNorm (stable, usual today) or post-LayerNorm (original Transformer)
    causal: bool = True  # SASRec: each position sees only the past; BERT4Rec: False (bidirectional)

    USER_MODES: ClassVar[tuple[str, ...]] = USER_FEATURE_MODES  # add | token

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_heads", "n_layers", "ffn_size"):
            if int(getattr(self, name)) < 1:
                fail(f"model.{name}={getattr(self, name)} must be >= 1")
        if self.hidden_size % self.n_heads:
            fail(
                f"model.hidden_size={self.hidden_size} is not divisible by model.n_heads={self.n_heads}; "
                f"choose n_heads among {[h for h in range(1, self.hidden_size + 1) if self.hidden_size % h == 0][:8]}"
                " or change hidden_size"
            )
        if self.activation not in ACTIVATIONS:
            fail(f"model.activation={self.activation!r} is not one of {sorted(ACTIVATIONS)}")
        if not 0.0 <= float(self.attn_dropout) < 1.0:
            fail(f"model.attn_dropout={self.attn_dropout} must be in [0, 1)")


DROPOUT_BITS = 16  # random bits per keep decision: p is rounded to a multiple of 2**-16


def keep_mask(x: Tensor, drop: int) -> Tensor:
    """(…) bool like ``x``: True with probability ``1 - drop / 2**16``. Four decisions per 64-bit random word
    (``random_`` over the full int64 range, whose four int16 lanes are each uniform on -2**15..2**15-1): a quarter
    of the generator calls of ``rand_like``, and no float draw."""
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)  # (⌈n/4⌉,)
    lanes = words.view(torch.int16)[:n].view(x.shape)  # (…) uniform int16
    return lanes >= drop - 2 ** (DROPOUT_BITS - 1)


class Dropout(nn.Module):
    """Inverted dropout with keep decisions from 16 random bits (``keep_mask``): the distribution of ``nn.Dropout``
    with ``p`` rounded to a multiple of 2**-16, the kept values scaled by 1 / (1 - that p), in ``x``'s dtype. On
    this CPU 2x (fp32) to 3.5x (bf16 activations) faster than ``rand_like``, whose draws dominated the step time of
    small Transformers (experiments/speed/README.md, "dropout")."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.drop = round(p * 2**DROPOUT_BITS)  # dropped outcomes out of 2**16

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop == 0:
            return x
        if self.drop >= 2**DROPOUT_BITS:
            return x * 0.0
        scale = 2**DROPOUT_BITS / (2**DROPOUT_BITS - self.drop)
        return x * (keep_mask(x, self.drop).to(x.dtype) * scale)


def feed_forward(width: int, inner: int, activation: str, dropout: float) -> nn.Sequential:
    """The position-wise FFN: Linear(D → inner), activation, dropout, Linear(inner → D); (B, L, D) → (B, L, D)."""
    return nn.Sequential(nn.Linear(width, inner), ACTIVATIONS[activation](), Dropout(dropout), nn.Linear(inner, width))


class SelfAttention(nn.Module):
    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.attn_dropout = cfg.attn_dropout
        self.attn_drop = Dropout(cfg.attn_dropout)

    def heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, L, D) → queries, keys, values, each (B, H, L, D/H)."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # 3 x (B, L, D)
        shape = (B, L, self.n_heads, D // self.n_heads)
        return q.view(shape).transpose(1, 2), k.view(shape).transpose(1, 2), v.view(shape).transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        B, L, D = x.shape
        q, k, v = self.heads(x)  # (B, H, L, d)
        p = self.attn_dropout if self.training else 0.0
        if p and x.device.type == "cpu":  # SDPA's own CPU path for dropout is this math, with bernoulli_ draws
            y = self.attn_drop(self.weights(q, k, mask)) @ v  # (B, H, L, d)
        else:  # GPUs keep their fused (flash / memory-efficient) kernels, dropout included
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, L, d)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))  # (B, L, D)

    def probabilities(self, x: Tensor, mask: Tensor) -> Tensor:
        """(B, L, D) inputs, (B, 1, L, L) mask → (B, H, L, L) attention weights, written out for inspection: what
        ``scaled_dot_product_attention`` computes inside ``forward`` (without dropout), softmax(q·kᵀ/√d) over the
        keys each query may attend to; row i of head h holds query i's weights over keys 0..L-1 (rows sum to 1)."""
        q, k, _ = self.heads(x)  # (B, H, L, d)
        return self.weights(q, k, mask)

    @staticmethod
    def weights(q: Tensor, k: Tensor, mask: Tensor) -> Tensor:
        """(B, H, L, d) queries and keys, (B, 1, L, L) mask → (B, H, L, L) softmax(q·kᵀ/√d) over allowed keys."""
        logits = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (B, H, L, L)
        return logits.masked_fill(~mask, float("-inf")).softmax(dim=-1)


class Block(nn.Module):
    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.norm_first = cfg.norm_first
        self.ln1 = nn.LayerNorm(cfg.hidden_size)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.hidden_size)
        self.ffn = feed_forward(cfg.hidden_size, cfg.ffn_size, cfg.activation, cfg.dropout)
        self.drop = Dropout(cfg.dropout)

    def attention_input(self, x: Tensor) -> Tensor:
        """What the attention sub-layer reads from the block input: LayerNorm'd (pre-LN) or as is (post-LN)."""
        return self.ln1(x) if self.norm_first else x

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # (B, L, D) -> (B, L, D)
        if self.norm_first:
            x = x + self.drop(self.attn(self.ln1(x), mask))
            return x + self.drop(self.ffn(self.ln2(x)))
        x = self.ln1(x + self.drop(self.attn(x, mask)))
        return self.ln2(x + self.drop(self.ffn(x)))


class TransformerBackbone(Encoder):
    """Item sequence → contextual item representations; scores are dot products with the tied item table.

    Papers: SASRec (Kang & McAuley, ICDM 2018, causal) and BERT4Rec (Sun et al., CIKM 2019, bidirectional + [MASK]).
    The [MASK] row of the item tower is readable by both (CL4SRec-style masking augments causal models too).
    """

    Config = BackboneConfig
    MASK_TOKEN = True
    cfg: BackboneConfig

    def __init__(self, n_items: int, **config: object) -> None:
        super().__init__(n_items, **config)
        cfg = self.cfg
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden_size)
        self.emb_norm = nn.LayerNorm(cfg.hidden_size)
        self.emb_drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.hidden_size) if cfg.norm_first else nn.Identity()
        for module in (self.pos_emb, self.blocks):
            module.apply(self.init_weights)

    def embedding_modules(self) -> list[nn.Module]:
        return [self.tower.item_emb, self.pos_emb, self.emb_norm]

    @property
    def n_prefix(self) -> int:
        """Extra positions before the items in the blocks' input: 1 with a user token, else 0."""
        return int(self.user_side is not None and self.cfg.user_features == "token")

    def attention_mask(self, items: Tensor) -> Tensor:
        """(B, L) ids → (B, 1, L', L') bool, True = may attend: real keys (causal: only the past) + the diagonal.
        L' = L + ``n_prefix``: a user token (column 0) is a real key for every query, the causal ones included."""
        real = items != 0  # (B, L)
        if self.n_prefix:
            real = torch.cat([real.new_ones(real.shape[0], self.n_prefix), real], dim=1)  # (B, L')
        L = real.shape[1]
        keys = real[:, None, None, :]  # (B, 1, 1, L')
        eye = torch.eye(L, dtype=torch.bool, device=items.device)  # a padded query attends to itself: no NaN rows
        if self.cfg.causal:
            keys = keys & torch.ones(L, L, dtype=torch.bool, device=items.device).tril()
        return keys | eye

    def embed(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) left-padded item ids, (B,) user indices (needed with ``user_features``) → (B, L', D) input of the
        first block: item + positional embeddings (+ the user vector, added or as a leading token, L' = L + 1)."""
        self.check_length(items)
        pos = self.positions(items.shape[1], items.device)  # (L,) newest item = position 0
        x = self.embed_items(items) * self.cfg.hidden_size**0.5 + self.pos_emb(pos)  # (B, L, D)
        if self.n_prefix:
            u = self.user_vectors(users)  # (B, D), unscaled like the position embeddings
            assert u is not None
            x = torch.cat([u[:, None, :], x], dim=1)  # (B, L + 1, D): the user token, no position embedding
        else:
            x = self.add_users(x, items, users)  # (B, L, D), real positions only
        return self.emb_drop(self.emb_norm(x))

    def forward(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) left-padded item ids (0 = padding, ``mask_token`` allowed) and, with ``user_features``, (B,)
        internal user indices → (B, L, D) hidden states (a user token's own output is dropped)."""
        x, mask = self.embed(items, users), self.attention_mask(items)
        for block in self.blocks:
            x = block(x, mask)
        return self.final_norm(x)[:, self.n_prefix :]  # (B, L, D)

    @torch.no_grad()
    def attention_maps(self, items: Tensor, users: Tensor | None = None) -> list[Tensor]:
        """(B, L) item ids → one (B, H, L, L) tensor of attention weights per layer (query rows, key columns), as
        the forward pass of the current mode uses them (call ``eval()`` first for dropout-free weights). The
        weights are recomputed explicitly because ``scaled_dot_product_attention`` does not return them. With a
        user token its row and column are left out: item rows then sum to 1 minus the weight on the user token."""
        x, mask = self.embed(items, users), self.attention_mask(items)
        maps, p = [], self.n_prefix
        for block in self.blocks:
            maps.append(block.attn.probabilities(block.attention_input(x), mask)[:, :, p:, p:])
            x = block(x, mask)
        return maps
