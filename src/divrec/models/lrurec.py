"""LRURec: linear recurrent units over the item history, a causal sequence encoder without attention.

Paper: Zhenrui Yue, Yueqi Wang, Zhankui He, Huimin Zeng, Julian McAuley, Dong Wang, "Linear Recurrent Units for
Sequential Recommendation", WSDM 2024 (arXiv:2310.02367); reference code github.com/yueqirex/LRURec (model/lru.py).
The unit itself is Orvieto et al.'s LRU ("Resurrecting Recurrent Neural Networks for Long Sequences", ICML 2023,
arXiv:2303.06349). Each block, post-LayerNorm as in the reference (x: (B, L, D) input, h: N complex channels):

    u_t = γ ⊙ (B x_t + b)                           B: D → N complex, γ = exp(γ_log) > 0
    h_t = λ ⊙ h_{t-1} + u_t,   h before the history = 0,   λ = exp(-exp(ν_log) + i·exp(θ_log)), |λ| < 1
    y_t = LN(x_t + drop(Re(C h_t) + c))              the D x_t term: D = identity, the reference's residual
    z_t = LN(y_t + drop(W₂ drop(GELU(W₁ y_t))))       position-wise feed-forward network

The input is the item embedding, dropout, LayerNorm (no position embedding: the recurrence orders the items).
Ring initialisation: |λ|² ~ U[r_min², r_max²] (uniform in area on the ring), arg λ ~ U[0, max_phase],
γ = sqrt(1 - |λ|²). Training runs the recurrence as a log-depth parallel scan (``linear_scan``).

Where divrec differs from the reference code:
- Padding: the reference left-pads each batch again up to a power of two and, in its recursive-doubling scan, drops
  a carry when the left half ends on padding. Here the recurrence input u_t is zeroed at padding, so h = 0 through
  the padding, and a Hillis-Steele scan runs over the batch's own length. Real positions get the same states; padded
  positions (never scored) read h = 0 instead of the reference's state of the padding token's embedding.
- Parameters are real: B and C are real ``nn.Linear`` maps whose rows/columns interleave (Re, Im) per state channel
  (the reference keeps complex ``cfloat`` linears); the same functions (C's imaginary sign folds into the weights),
  and optimisers, clipping, DDP and mixed precision only ever see real tensors. ν_log, θ_log, γ_log are three (N,)
  parameters (the reference stacks them as ``params_log`` (3, N)); the scan itself is complex float32 (float64 for a
  double model), also under autocast.
- Scores are the item tower's tied dot products; the reference adds a learned per-item output bias (the contract's
  ``ItemTower`` has none). Items come from the tower (padding row 0 fixed at zero; the reference learns a row for 0).
- Initialisation: ``Encoder.init_weights`` (N(0, 0.02) weights, zero biases); the reference draws every weight and
  bias from a normal truncated at ±0.04 (std 0.02). ν, θ, γ follow the reference's ring initialisation.
- r_min, r_max, max_phase, state_size, ffn_size, activation are keys (the reference fixes 0.8, 0.99, 2π, 2·D, 4·D,
  GELU); the LRU-output dropout is ``lru_dropout`` (the reference's ``bert_attn_dropout``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from divrec.models.backbone import Dropout, feed_forward
from divrec.models.encoder import ACTIVATIONS, Encoder, EncoderConfig, fail

__all__ = ["LRURec", "LRURecConfig", "linear_scan", "ring_init"]

R2_MAX = 1.0 - 1e-6  # |λ|² drawn at r_max = 1 is kept below 1 (ν > 0, γ > 0: every logarithm finite)


@dataclass(frozen=True)
class LRURecConfig(EncoderConfig):
    """Defaults are the reference's (config.py, LRULayer); conf/model/lrurec.yaml holds its Beauty recipe."""

    n_layers: int = 2  # LRU blocks (reference: bert_num_blocks = 2)
    state_size: int = 128  # N complex state channels per block (reference: 2 x hidden_size)
    ffn_size: int = 256  # inner width of each block's feed-forward network (reference: 4 x hidden_size)
    activation: str = "gelu"  # feed-forward non-linearity: gelu | relu | silu (reference: GELU)
    lru_dropout: float = 0.2  # on the recurrence's output Re(C h) (reference: bert_attn_dropout)
    r_min: float = 0.8  # ring initialisation: r_min <= |λ| <= r_max (reference LRULayer: 0.8, 0.99)
    r_max: float = 0.99
    max_phase: float = math.tau  # arg λ ~ U[0, max_phase] (reference: 2π)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_layers", "state_size", "ffn_size"):
            if int(getattr(self, name)) < 1:
                fail(f"model.{name}={getattr(self, name)} must be >= 1")
        if self.activation not in ACTIVATIONS:
            fail(f"model.activation={self.activation!r} is not one of {sorted(ACTIVATIONS)}")
        if not 0.0 <= float(self.lru_dropout) < 1.0:
            fail(f"model.lru_dropout={self.lru_dropout} must be in [0, 1)")
        if not 0.0 <= float(self.r_min) < float(self.r_max) <= 1.0:
            fail(f"model.r_min={self.r_min}, model.r_max={self.r_max}: need 0 <= r_min < r_max <= 1 (eigenvalue "
                 "radii inside the unit disc; the reference uses 0.8 and 0.99)")
        if not 0.0 < float(self.max_phase) <= math.tau:
            fail(f"model.max_phase={self.max_phase} must be in (0, 2π] ({math.tau}), the range of arg λ")


def ring_init(n: int, r_min: float, r_max: float, max_phase: float) -> tuple[Tensor, Tensor, Tensor]:
    """(N,) ν_log, θ_log, γ_log of eigenvalues uniform (in area) on the ring r_min <= |λ| <= r_max with phases in
    [0, max_phase], and γ = sqrt(1 - |λ|²) (Orvieto et al., Sec. 3). Drawn in float64 from the global generator and
    clamped so that r_min = 0 or r_max = 1 still give finite logarithms; returned as float32."""
    u1, u2 = torch.rand(n, dtype=torch.float64), torch.rand(n, dtype=torch.float64)
    r2 = (u1 * (r_max**2 - r_min**2) + r_min**2).clamp(1e-12, R2_MAX)  # (N,) |λ|²
    nu = -0.5 * r2.log()  # |λ| = exp(-ν), ν > 0
    theta = (u2 * max_phase).clamp_min(1e-12)  # (N,) arg λ
    gamma = 0.5 * torch.log1p(-r2)  # log sqrt(1 - |λ|²)
    return nu.log().float(), theta.log().float(), gamma.float()


def linear_scan(u: Tensor, lam: Tensor) -> Tensor:
    """Every state of h_t = λ ⊙ h_{t-1} + u_t (h = 0 before t = 0) at once: (B, L, N) complex inputs and (N,)
    complex λ → (B, L, N) complex states.

    Hillis-Steele scan, ceil(log2 L) steps and no loop over positions: after the step of offset k (1, 2, 4, …),
    h_t = Σ_{s=t-2k+1..t} λ^{t-s} u_s, because that step adds λ^k · h_{t-k} of the previous one. A step reads
    offsets only, so extra left padding (u = 0, hence h = 0 there) changes no real position's arithmetic."""
    h, power, k = u, lam, 1  # power = λ^k
    while k < u.shape[1]:
        h = torch.cat([h[:, :k], h[:, k:] + power * h[:, :-k]], dim=1)  # (B, L, N)
        power, k = power * power, 2 * k
    return h


class LinearRecurrence(nn.Module):
    """One LRU layer with its residual and LayerNorm: (B, L, D) → (B, L, D)."""

    def __init__(self, cfg: LRURecConfig) -> None:
        super().__init__()
        n, d = cfg.state_size, cfg.hidden_size
        self.in_proj = nn.Linear(d, 2 * n)  # B x + b; output 2j = Re, 2j + 1 = Im of state channel j
        self.out_proj = nn.Linear(2 * n, d)  # Re(C h) + c from (Re h_j, Im h_j) interleaved the same way
        nu_log, theta_log, gamma_log = ring_init(n, cfg.r_min, cfg.r_max, cfg.max_phase)
        self.nu_log = nn.Parameter(nu_log)  # (N,) |λ| = exp(-exp(ν_log))
        self.theta_log = nn.Parameter(theta_log)  # (N,) arg λ = exp(θ_log)
        self.gamma_log = nn.Parameter(gamma_log)  # (N,) input normalisation γ = exp(γ_log)
        self.drop = Dropout(cfg.lru_dropout)
        self.norm = nn.LayerNorm(d)

    def scan_dtype(self) -> torch.dtype:
        """float32, or float64 for a double model: the recurrence never runs in half precision."""
        return torch.promote_types(self.nu_log.dtype, torch.float32)

    def eigenvalues(self) -> Tensor:
        """(N,) complex λ = exp(-exp(ν_log) + i·exp(θ_log)), strictly inside the unit disc."""
        nu, theta = self.nu_log.to(self.scan_dtype()).exp(), self.theta_log.to(self.scan_dtype()).exp()
        return torch.exp(torch.complex(-nu, theta))

    def states(self, x: Tensor, real: Tensor) -> Tensor:
        """(B, L, D) inputs, (B, L) bool real positions → (B, L, N) complex states h (0 at padding)."""
        B, L, _ = x.shape
        bu = self.in_proj(x).to(self.scan_dtype()) * real[..., None]  # (B, L, 2N), zero input at padding
        gamma = self.gamma_log.to(self.scan_dtype()).exp()  # (N,)
        u = torch.view_as_complex(bu.view(B, L, -1, 2)) * gamma  # (B, L, N) complex
        return linear_scan(u, self.eigenvalues())

    def forward(self, x: Tensor, real: Tensor) -> Tensor:
        B, L, _ = x.shape
        h = torch.view_as_real(self.states(x, real)).reshape(B, L, -1)  # (B, L, 2N) interleaved (Re, Im)
        return self.norm(x + self.drop(self.out_proj(h)))  # (B, L, D)


class LRUBlock(nn.Module):
    """An LRU layer, then a position-wise feed-forward network with its residual and LayerNorm."""

    def __init__(self, cfg: LRURecConfig) -> None:
        super().__init__()
        self.lru = LinearRecurrence(cfg)
        self.ffn = feed_forward(cfg.hidden_size, cfg.ffn_size, cfg.activation, cfg.dropout)
        self.drop = Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.hidden_size)

    def forward(self, x: Tensor, real: Tensor) -> Tensor:  # (B, L, D), (B, L) bool -> (B, L, D)
        x = self.lru(x, real)
        return self.norm(x + self.drop(self.ffn(x)))


class LRURec(Encoder):
    """Item history → one state per position from stacked linear recurrent units; causal by construction (the
    recurrence runs left to right), so it trains on every position with ``task=next_item_ce``."""

    Config = LRURecConfig
    CAUSAL = True
    cfg: LRURecConfig

    def __init__(self, n_items: int, **config: object) -> None:
        super().__init__(n_items, **config)
        cfg = self.cfg
        self.emb_drop = Dropout(cfg.dropout)
        self.emb_norm = nn.LayerNorm(cfg.hidden_size)
        self.blocks = nn.ModuleList(LRUBlock(cfg) for _ in range(cfg.n_layers))
        self.blocks.apply(self.init_weights)  # linears only: ν, θ, γ keep their ring initialisation

    def embedding_modules(self) -> list[nn.Module]:
        return [self.tower.item_emb, self.emb_norm]

    def forward(self, items: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) left-padded item ids (0 = padding) and, with ``user_features=add``, (B,) user indices → (B, L, D)."""
        self.check_length(items)
        real = items != 0  # (B, L)
        x = self.add_users(self.embed_items(items), items, users)  # (B, L, D)
        x = self.emb_norm(self.emb_drop(x))  # the reference's order: dropout, then LayerNorm
        for block in self.blocks:
            x = block(x, real)
        return x
