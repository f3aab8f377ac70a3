"""FMLP-Rec: an all-MLP sequence encoder whose token mixing is a learnable filter in the frequency domain.

Paper: Kun Zhou, Hui Yu, Wayne Xin Zhao, Ji-Rong Wen, "Filter-enhanced MLP is All You Need for Sequential
Recommendation", WWW 2022, arXiv:2202.13556. Reference code: github.com/Woeee/FMLP-Rec and its copy in
github.com/yehjin-shin/BSARec (src/model/fmlprec.py), which this file follows.

    x0    = Dropout(LayerNorm(item + position))                          # (B, N, D), N = max_len
    block = FFN(LayerNorm(x + Dropout(irfft(rfft(x) * W))))               # W: (N//2 + 1, D) complex, learned
    FFN   = LayerNorm(h + Dropout(W2 act(W1 h)))                          # post-LN, inner width ffn_size

The filter W has one complex weight per frequency bin and channel, so its length is tied to the sequence length:
like the reference (which pads every sequence to max_len), each filter LEFT-pads its input to ``max_len`` with zeros
(the other layers run on the batch's L positions only: padded states are zeroed before every filter, so this equals
the full window exactly), and a history's outputs never depend on how far its batch was padded. The filter
mixes every position (a circular convolution over the whole window), so the model is NOT causal: it is trained on
each window's last position only (``task=next_item_last``, selected by conf/model/fmlp.yaml).

Where divrec differs from the reference code:
- padded positions are zeroed before every filter: the FFT reads the real items only. In the reference a padded
  slot holds LayerNorm(position embedding) at the input and, after the first block, whatever the filter leaked
  into it, and all of that is mixed into the real positions. Zeroing makes each filter a function of the history
  alone (the same history gives the same filter input whatever stands in the padded slots);
- positions count back from the newest item (divrec's convention; the reference counts from the oldest slot of
  its max_len window, which is the same table read in reverse, as every sequence is padded to max_len);
- the objective is divrec's ``task=next_item_last``: full-softmax cross-entropy over all items at the last position
  of every prefix with a non-empty history. The reference trains FMLP-Rec with binary cross-entropy against one
  random negative at the last position of every prefix (``task=next_item_bce task.positions=last`` reproduces
  that); its prefixes include the empty history, divrec's do not;
- the FFN has no dropout between its two linear layers, like the reference; ``activation`` defaults to the exact
  (erf) GELU of the reference; LayerNorm eps = 1e-12 as in the reference;
- user side features (``model.user_features=add``) are added to the real positions' input (divrec extension).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from divrec.models.backbone import Dropout
from divrec.models.encoder import ACTIVATIONS, Encoder, EncoderConfig, fail

EPS = 1e-12  # LayerNorm epsilon of the reference implementation


@dataclass(frozen=True)
class FMLPConfig(EncoderConfig):
    n_layers: int = 2  # filter blocks
    ffn_size: int = 256  # inner width of each block's feed-forward network (the reference: 4 x hidden_size)
    activation: str = "gelu"  # feed-forward non-linearity: gelu | relu | silu

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_layers", "ffn_size"):
            if int(getattr(self, name)) < 1:
                fail(f"model.{name}={getattr(self, name)} must be >= 1")
        if self.activation not in ACTIVATIONS:
            fail(f"model.activation={self.activation!r} is not one of {sorted(ACTIVATIONS)}")

    @property
    def n_bins(self) -> int:
        """Frequency bins of a real FFT over the max_len window: the length of every filter."""
        return self.max_len // 2 + 1


class FeedForward(nn.Module):
    """Point-wise FFN with a post-LN residual: LayerNorm(h + Dropout(W2 act(W1 h)))."""

    def __init__(self, cfg: FMLPConfig) -> None:
        super().__init__()
        self.inner = nn.Linear(cfg.hidden_size, cfg.ffn_size)
        self.act = ACTIVATIONS[cfg.activation]()
        self.outer = nn.Linear(cfg.ffn_size, cfg.hidden_size)
        self.drop = Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=EPS)

    def forward(self, h: Tensor) -> Tensor:  # (B, L, D) -> (B, L, D)
        return self.norm(h + self.drop(self.outer(self.act(self.inner(h)))))


def learned_filter(x: Tensor, weight: Tensor, n: int | None = None) -> Tensor:
    """(B, L, D) real signal, (n//2 + 1, D) complex weight → irfft(rfft(x) * weight) (B, L, D), FFT over the
    sequence axis with orthonormal scaling, in float32 (FFTs do not run in half precision), returned in x's dtype.
    ``n`` (default L): the window the filter is defined on; x holds its last L positions, the first n - L are zero
    (left padding), so they are zero-filled here instead of being carried through every layer."""
    n = x.shape[1] if n is None else n
    padded = nn.functional.pad(x.float(), (0, 0, n - x.shape[1], 0))  # (B, n, D)
    spectrum = torch.fft.rfft(padded, dim=1, norm="ortho")  # (B, n//2 + 1, D) complex
    out = torch.fft.irfft(spectrum * weight, n=n, dim=1, norm="ortho")  # (B, n, D)
    return out[:, n - x.shape[1] :].to(x.dtype)  # (B, L, D)


class FilterLayer(nn.Module):
    """The learnable filter: LayerNorm(x + Dropout(irfft(rfft(x) * W))) with W (N//2 + 1, D) complex."""

    def __init__(self, cfg: FMLPConfig) -> None:
        super().__init__()
        # (bins, D, 2): real and imaginary parts, N(0, 0.02^2) like the reference
        self.complex_weight = nn.Parameter(torch.randn(cfg.n_bins, cfg.hidden_size, 2) * 0.02)
        self.window = cfg.max_len
        self.drop = Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=EPS)

    def weight(self) -> Tensor:
        return torch.view_as_complex(self.complex_weight)  # (bins, D) complex

    def forward(self, x: Tensor) -> Tensor:  # (B, L, D) -> (B, L, D)
        return self.norm(x + self.drop(learned_filter(x, self.weight(), self.window)))


class FMLPBlock(nn.Module):
    def __init__(self, cfg: FMLPConfig) -> None:
        super().__init__()
        self.filter = FilterLayer(cfg)
        self.ffn = FeedForward(cfg)

    def forward(self, x: Tensor) -> Tensor:  # (B, L, D) -> (B, L, D)
        return self.ffn(self.filter(x))


class WindowEncoder(Encoder):
    """Base of the models whose mixing spans a fixed ``max_len`` window (FMLP-Rec, BSARec): item + learned position
    embeddings over the input left-padded to max_len, and the mask that zeroes padded positions."""

    CAUSAL = False  # frequency filters mix every position of the window
    cfg: FMLPConfig

    def __init__(self, n_items: int, **config: object) -> None:
        super().__init__(n_items, **config)
        cfg = self.cfg
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden_size)
        self.emb_norm = nn.LayerNorm(cfg.hidden_size, eps=EPS)
        self.emb_drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(self.block(cfg) for _ in range(cfg.n_layers))
        for module in (self.pos_emb, self.blocks):
            module.apply(self.init_weights)  # linears and positions N(0, 0.02); filter weights keep their own init

    def block(self, cfg: FMLPConfig) -> nn.Module:
        raise NotImplementedError

    def embedding_modules(self) -> list[nn.Module]:
        return [self.tower.item_emb, self.pos_emb, self.emb_norm]

    def window(self, items: Tensor) -> Tensor:
        """(B, L) left-padded ids → the same (B, L) ids, checked against max_len. The filters zero-fill the window's
        first N - L positions themselves (``learned_filter``, ``low_pass``): every padded state is zeroed before each
        layer, so computing the attention, FFN and LayerNorms at the last L positions only gives the outputs of the
        full max_len window exactly, at L / N of the cost (Beauty prefixes: L ~ 10 of N = 50)."""
        self.check_length(items)
        return items

    def embed(self, window: Tensor, users: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, L) window → the first block's input (B, L, D), LayerNorm(item + position) with dropout, and the
        (B, L, 1) mask of real positions (1.0) versus padding (0.0) that zeroes the padding before each filter."""
        pos = self.positions(window.shape[1], window.device)  # (L,) newest item = position 0
        x = self.add_users(self.embed_items(window) + self.pos_emb(pos), window, users)  # (B, L, D)
        x = self.emb_drop(self.emb_norm(x))
        return x, (window != 0)[..., None].to(x.dtype)


class FMLPRec(WindowEncoder):
    """Item sequence → (B, L, D) states from stacked learnable-filter blocks; scores are tied to the item table."""

    Config = FMLPConfig

    def block(self, cfg: FMLPConfig) -> nn.Module:
        return FMLPBlock(cfg)

    def forward(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) left-padded item ids (0 = padding) and, with ``user_features``, (B,) user indices → (B, L, D)."""
        window = self.window(items)  # (B, L)
        x, real = self.embed(window, users)  # (B, L, D), (B, L, 1)
        for block in self.blocks:
            x = block(x * real)  # the filter reads real items only
        return x  # (B, L, D)
