"""BSARec: self-attention mixed with a frequency-rescaling "beyond self-attention" inductive bias.

Paper: Yehjin Shin, Jeongwhan Choi, Hyowon Wi, Noseong Park, "An Attentive Inductive Bias for Sequential
Recommendation beyond the Self-Attention", AAAI 2024, arXiv:2312.10325. Reference code:
github.com/yehjin-shin/BSARec (src/model/bsarec.py, _modules.py, _abstract_model.py), which this file follows.

Each layer runs two branches on the same input x (B, N, D), N = max_len, and mixes them with a fixed alpha:

    low   = irfft(rfft(x)[:c'])                    # the lowest c' = c // 2 + 1 frequency bins of the window
    dsp   = LayerNorm(x + Dropout(low + beta² * (x - low)))      # beta (D,) learned: rescales the high frequencies
    gsp   = LayerNorm(x + Dropout(MultiHeadAttention(x)))        # attention over the real past items (causal mask)
    layer = alpha * dsp + (1 - alpha) * gsp,  then the post-LN FFN of FMLP-Rec (models/fmlp.py)

The input is the FMLP-Rec one (models/fmlp.py): item + learned position embeddings, LayerNorm, dropout, over the
history left-padded to max_len with zeros inside the frequency branch (the frequency split is defined on that window;
the other layers run on the batch's L positions only, which gives the full window's outputs exactly). The attention is
causal like the reference's (its ``get_attention_mask``), but the frequency branch mixes every position, so the model
is NOT causal and is trained on each window's last position (``task=next_item_last``, selected by
conf/model/bsarec.yaml), which is also the reference's objective: full-softmax cross-entropy at the last position of
every prefix.

Where divrec differs from the reference code:
- padded positions are zeroed before every layer (both branches read the same zeroed input): the FFT reads the
  real items only, where the reference also transforms LayerNorm(position embedding) and the states that grow in
  its padded slots;
- ``c`` keeps its reference meaning (c // 2 + 1 bins are low-pass); a ``c`` that leaves no high-frequency bin is
  refused (the reference would silently turn beta into a no-op);
- the softmax of the objective runs over the items only (the reference's item table also scores the padding row);
  prefixes with an empty history are not trained on; positions count back from the newest item;
- attention masks use -inf on masked keys (the reference adds -10000) and a padded query attends to itself;
- user side features (``model.user_features=add``) are added to the real positions' input (divrec extension).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from divrec.models.backbone import Dropout, SelfAttention
from divrec.models.encoder import fail
from divrec.models.fmlp import EPS, FeedForward, FMLPConfig, WindowEncoder, learned_filter


@dataclass(frozen=True)
class BSARecConfig(FMLPConfig):
    n_heads: int = 2  # attention heads; hidden_size must divide evenly among them
    attn_dropout: float = 0.5  # on attention weights
    c: int = 3  # low-pass cut-off: the lowest c // 2 + 1 frequency bins of the max_len window are "low"
    alpha: float = 0.9  # weight of the frequency branch: alpha * dsp + (1 - alpha) * attention

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.n_heads) < 1:
            fail(f"model.n_heads={self.n_heads} must be >= 1")
        if self.hidden_size % self.n_heads:
            divisors = [h for h in range(1, self.hidden_size + 1) if self.hidden_size % h == 0][:8]
            fail(f"model.hidden_size={self.hidden_size} is not divisible by model.n_heads={self.n_heads}; choose "
                 f"n_heads among {divisors} or change hidden_size")
        if not 0.0 <= float(self.attn_dropout) < 1.0:
            fail(f"model.attn_dropout={self.attn_dropout} must be in [0, 1)")
        if not 0.0 <= float(self.alpha) <= 1.0:
            fail(f"model.alpha={self.alpha} must be in [0, 1] (the frequency branch's share; 1 - alpha: attention)")
        self.check_cutoff()

    def check_cutoff(self) -> None:
        """c // 2 + 1 low bins must leave at least one of the window's max_len // 2 + 1 bins high."""
        largest = 2 * (self.max_len // 2) - 1  # the largest c with c // 2 + 1 <= max_len // 2
        if largest < 0:
            fail(f"model.max_len={self.max_len}: the frequency split needs a window of at least 2 positions")
        if not 0 <= int(self.c) <= largest:
            fail(f"model.c={self.c} is impossible for model.max_len={self.max_len}: c keeps the lowest c // 2 + 1 of "
                 f"the max_len // 2 + 1 = {self.n_bins} frequency bins and must leave one high; choose "
                 f"0 <= model.c <= {largest} (or a longer max_len)")

    @property
    def low_bins(self) -> int:
        return int(self.c) // 2 + 1


def low_pass(x: Tensor, bins: int, n: int | None = None) -> Tensor:
    """(B, L, D) real signal → its projection on the lowest ``bins`` real-FFT frequencies of an ``n``-window
    (default L) whose first n - L positions are zero (left padding) and whose last L are x: (B, L, D). It is the
    learned filter of FMLP-Rec with a fixed 0/1 weight per bin (float32 FFT, returned in x's dtype)."""
    n = x.shape[1] if n is None else n
    keep = torch.zeros(n // 2 + 1, 1, device=x.device)  # (bins of the n-window, 1): 1 = low, kept
    keep[:bins] = 1.0
    return learned_filter(x, keep, n)


class FrequencyLayer(nn.Module):
    """dsp = LayerNorm(x + Dropout(low + beta² (x - low))), beta (D,) learned per channel."""

    def __init__(self, cfg: BSARecConfig) -> None:
        super().__init__()
        self.bins, self.window = cfg.low_bins, cfg.max_len
        self.sqrt_beta = nn.Parameter(torch.randn(cfg.hidden_size))  # N(0, 1) like the reference
        self.drop = Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=EPS)

    def rescale(self, x: Tensor) -> Tensor:
        """(B, L, D) → low + beta² * high, the frequency-rescaled signal before dropout and the residual."""
        low = low_pass(x, self.bins, self.window)  # (B, L, D)
        return low + self.sqrt_beta**2 * (x - low)

    def forward(self, x: Tensor) -> Tensor:  # (B, L, D) -> (B, L, D)
        return self.norm(x + self.drop(self.rescale(x)))


class AttentionLayer(nn.Module):
    """gsp = LayerNorm(x + Dropout(MultiHeadAttention(x))): the reference's post-LN attention sub-layer."""

    def __init__(self, cfg: BSARecConfig) -> None:
        super().__init__()
        self.attn = SelfAttention(cfg)  # type: ignore[arg-type]  # reads hidden_size, n_heads, attn_dropout
        self.drop = Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=EPS)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # (B, L, D), (B, 1, L, L) -> (B, L, D)
        return self.norm(x + self.drop(self.attn(x, mask)))


class BSARecBlock(nn.Module):
    def __init__(self, cfg: BSARecConfig) -> None:
        super().__init__()
        self.alpha = float(cfg.alpha)
        self.frequency = FrequencyLayer(cfg)
        self.attention = AttentionLayer(cfg)
        self.ffn = FeedForward(cfg)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # (B, L, D) -> (B, L, D)
        mixed = self.alpha * self.frequency(x) + (1.0 - self.alpha) * self.attention(x, mask)
        return self.ffn(mixed)


class BSARec(WindowEncoder):
    """Item sequence → (B, L, D) states from BSARec layers; scores are tied to the item table."""

    Config = BSARecConfig
    cfg: BSARecConfig

    def block(self, cfg: BSARecConfig) -> nn.Module:  # type: ignore[override]
        return BSARecBlock(cfg)

    @staticmethod
    def attention_mask(window: Tensor) -> Tensor:
        """(B, L) ids → (B, 1, L, L) bool, True = may attend: real keys at or before the query (the reference's
        left-to-right mask), plus the diagonal so that a padded query has a key (no NaN rows)."""
        n = window.shape[1]
        past = torch.ones(n, n, dtype=torch.bool, device=window.device).tril()  # (L, L)
        eye = torch.eye(n, dtype=torch.bool, device=window.device)
        return ((window != 0)[:, None, None, :] & past) | eye

    def forward(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) left-padded item ids (0 = padding) and, with ``user_features``, (B,) user indices → (B, L, D)."""
        window = self.window(items)  # (B, L): the filters zero-fill the max_len window's first N - L positions
        (x, real), mask = self.embed(window, users), self.attention_mask(window)  # (B, L, D), (B, L, 1)
        for block in self.blocks:
            x = block(x * real, mask)  # both branches read real items only
        return x  # (B, L, D)

    @torch.no_grad()
    def attention_maps(self, items: Tensor, users: Tensor | None = None) -> list[Tensor]:
        """(B, L) item ids → one (B, H, L, L) tensor per layer: the attention branch's weights (query rows, key
        columns) over the returned L positions, as the current mode's forward pass computes them (call ``eval()``
        first for dropout-free inputs); rows sum to 1.
        The frequency branch (alpha of each layer's output) has no attention weights and is not shown."""
        window = self.window(items)
        (x, real), mask = self.embed(window, users), self.attention_mask(window)
        maps = []
        for block in self.blocks:
            maps.append(block.attention.attn.probabilities(x * real, mask))  # (B, H, L, L)
            x = block(x * real, mask)
        return maps
