r"""Exact full-catalog ranking from one bf16 matrix product: ranks and top-K equal to fp32 rescoring.

``mixed_ranking`` returns what ``chunked_ranking`` returns (less the log-normaliser): the pessimistic target rank
and the top-K by (score descending, id ascending), exact with respect to the fp32 *rescoring kernel*

    :math:`f(b, j) = \mathrm{fl}_{32}(\sum_i q_{bi} e_{ji})`, computed as ``(q_b * e_j).sum(-1)`` on fp32 rows,

used for every target and every candidate. Only the items that bf16 cannot decide are rescored: the catalog is
scored once in bf16 and a rigorous per-user error bound says which items are certainly above or below.

**The bf16 product.** With :math:`\hat x = \mathrm{bf16}(x)` (round to nearest even, unit roundoff
:math:`u = 2^{-8}`) the fp32 residuals :math:`dq = q - \hat q`, :math:`de = e - \hat e` are exact, and so are
:math:`\rho q = dq - \widehat{dq}`, :math:`\rho e = de - \widehat{de}`. Each user's shift
:math:`C_b = c_1 + c_2 + c_3` (three bf16 pieces of :math:`f(b, t_b)`, :math:`t_b` = the target) is folded into
the product, so that one bf16 matrix product with inner size :math:`K = 3D + 3` gives

    :math:`\tilde y_{bj} = \mathrm{bf16}\big(\mathrm{fl}_{32}(\hat q\cdot\hat e_j + \hat q\cdot\widehat{de}_j
    + \widehat{dq}\cdot\hat e_j - c_1 - c_2 - c_3)\big)`,

rows ``[q̂, q̂, dq̂, -c1, -c2, -c3]`` against ``[ê, dê, ê, 1, 1, 1]``. The shift puts the target near 0, where the
bf16 output rounding is tiny, so the ambiguous band around the target is a few items wide, not thousands.

**The bound.** Let :math:`g_{bj} = f(b, j) - C_b` (a common shift: :math:`g_j \ge g_t \iff f_j \ge f_t`). Exactly,
:math:`s = q\cdot e = P + \hat q\cdot\rho e + \widehat{dq}\cdot de + \rho q\cdot e` with :math:`P` the three
computed dot products, so by Cauchy-Schwarz, for every rankable item :math:`j`,

    :math:`|g_{bj} - \tilde y_{bj}| \le A_b + u\,|\tilde y_{bj}|`, where
    :math:`A_b = 2\,[\gamma_D \|q\| M_e + \|\hat q\| M_{\rho e} + \|\widehat{dq}\| M_{de} + \|\rho q\| M_e
    + \gamma_{2K}(\|\hat q\|(M_{\hat e} + M_{\widehat{de}}) + \|\widehat{dq}\| M_{\hat e} + \textstyle\sum|c|)
    + \tau_b]`,

:math:`M_x = \max_j \|x_j\|`, :math:`\gamma_n = n u_{32} / (1 - n u_{32})`, :math:`u_{32} = 2^{-24}`. Terms:
:math:`\gamma_D \|q\| M_e` bounds the rescoring kernel (``|f - s|``, any summation order); the next three are the
dropped residual products; :math:`\gamma_{2K}(\cdot)` bounds fp32 accumulation of the :math:`K` exact bf16
products in any order (doubled for kernels that round a pair's sum twice); :math:`u|\tilde y|` is the output
rounding (for round-to-nearest :math:`|\tilde y - \hat y| \le u|\tilde y|`); :math:`\tau_b = 2^{-100}(1 + \|q\|)
(1 + M_e)` covers denormals flushed by the bf16 units. The leading 2 is a safety factor (it also absorbs the float64
rounding of the bound itself). The model assumes fp32 accumulation, which CPU oneDNN and cuBLAS (with
``allow_bf16_reduced_precision_reduction`` off, as set here) provide; it is checked for free on every user: the
target's own :math:`\tilde y` must lie within the bound of :math:`g_{bt} = f_t - C_b`, else the chunk is redone
exactly.

**Ranks.** :math:`g_{bt}` is known exactly (``f_t`` and the pieces of :math:`C_b`). :math:`h^\mp(y) = y \mp
(A_b + u|y|)` are increasing, so item ``j`` is certainly ahead (:math:`g_j > g_t`) when :math:`h^-(\tilde y_j) >
g_t` and certainly behind when :math:`h^+(\tilde y_j) < g_t`: one threshold :math:`\mu_b > 0` (rounded up to bf16)
with ahead ⟸ :math:`\tilde y > \mu_b`, behind ⟸ :math:`\tilde y < -\mu_b`. The band :math:`|\tilde y| \le \mu_b`
is rescored and counted where :math:`f_j \ge f_t`: rank = 1 + ahead + band ahead (``target_ranks``' rule). On the
bf16 bit patterns viewed as int16 (sign-magnitude), :math:`\tilde y > \mu` is ``y16 > μ16`` and
:math:`|\tilde y| \le \mu` is ``(y16 & 0x7FFF) <= μ16``: vectorised integer passes with integer outputs.

**Top-K.** A set of the :math:`n = k + m` largest :math:`\tilde y` is rescored and ordered by (f descending, id
ascending). With :math:`v` the least :math:`\tilde y` in the set, every other item has :math:`g \le h^+(v)`, so the
first ``k`` are the exact top-K when :math:`g_{(k)} > h^+(v)` (strict: no other item can tie). Users failing the
check get their top-K from the rescoring kernel over the whole catalog; users with a non-finite query or target
score (``target_ranks``' handling of ``-inf``/NaN targets), near overflow, or in a chunk that broke the error
model get ranks and top-K that way.

**Block pre-selection** (``block_top_n``): split the row into blocks of contiguous columns and keep the ``n`` blocks
with the largest maxima (ties broken any way). If an item of the top ``n`` lay in a dropped block, each of the ``n``
kept blocks would hold a distinct item (its maximum) at least as large, so the kept columns hold ``n`` items as
large as the global top ``n``: the ``n`` largest values of the kept columns are the ``n`` largest of the row, and
every dropped item is at most their minimum. With (max descending, block id ascending) block ties and the kept
blocks in id order, the same argument holds for the total order (score descending, id ascending): a tied block
maximum in a lower block has a lower id. ``fast_top_k_scored`` uses it for exact fp32 top-K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from divrec.metrics.ranking import mask_scores, order_by_score_then_id, target_ranks, top_k_scored

_NEG_INF = float("-inf")
_U = 2.0**-8  # bf16 unit roundoff
_U32 = 2.0**-24  # fp32 unit roundoff
_SAFETY = 2.0
_TINY = 2.0**-100
_OVERFLOW = 2.0**100  # ||q|| * max ||e|| above this: exact path (no bf16 overflow, in the products or the bound)
BLOCK = 64  # columns per block of the top-K pre-selection
ROW_CHUNK = 256  # users per bf16 product: the (R, V) scores and masks stay in cache and reuse the heap
_EXACT_ELEMENTS = 2**22  # (rows, items, D) elements per product of the exact path
BAND_LIMIT = 1024  # band pairs of one user beyond which the user goes to the exact path (wide, near-tied tables)


def _gamma(n: int) -> float:
    return n * _U32 / (1 - n * _U32)


def dot_rows(a: Tensor, b: Tensor) -> Tensor:
    """The rescoring kernel f: fp32 ``(a * b).sum(-1)`` over broadcast (…, D) rows, the same for every caller."""
    return (a * b).sum(-1)


@dataclass(frozen=True)
class MixedTable:
    """An item table prepared for ``mixed_ranking`` (build once per table with ``prepare_table``).

    ``table`` (V+1, D) fp32 for rescoring; ``aug`` (Vp, K) bf16 rows ``[ê, dê, ê, 1, 1, 1, 0…]``, zero rows after
    V+1 up to a multiple of ``block``; ``norms`` float64 maxima ``(M_e, M_ê, M_de, M_dê, M_ρe)``; ``finite``
    whether every entry is finite (else every user takes the exact path).
    """

    table: Tensor
    aug: Tensor
    norms: tuple[float, float, float, float, float]
    finite: bool
    block: int

    @property
    def n_rows(self) -> int:
        return self.table.shape[0]


def _split(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x (fp32) → (x̂, dx, dx̂, ρx): bf16 of x, its exact fp32 residual, the residual's bf16 and its residual."""
    hat = x.bfloat16()
    d = x - hat.float()
    d_hat = d.bfloat16()
    return hat, d, d_hat, d - d_hat.float()


def _inner_size(dim: int) -> int:
    return -(-(3 * dim + 3) // 4) * 4  # padded to a multiple of 4 (zeros): oneDNN prefers it


@torch.no_grad()
def prepare_table(table: Tensor, block: int = BLOCK) -> MixedTable:
    """(V+1, D) fp32 item table (row 0 = padding) → ``MixedTable`` (one (Vp, K) bf16 copy, ~3x the bf16 table)."""
    if table.dim() != 2 or block < 1:
        raise ValueError(f"table must be (V+1, D) and block >= 1, got shape {tuple(table.shape)}, block={block}")
    e = table.float()
    hat, d, d_hat, rho = _split(e)
    n_rows, dim = e.shape
    padded = -(-n_rows // block) * block
    aug = torch.zeros(padded, _inner_size(dim), dtype=torch.bfloat16, device=e.device)
    aug[:n_rows, :dim], aug[:n_rows, dim : 2 * dim], aug[:n_rows, 2 * dim : 3 * dim] = hat, d_hat, hat
    aug[:n_rows, 3 * dim : 3 * dim + 3] = 1.0

    def norm(x: Tensor) -> float:
        return float(x.double().norm(dim=1).max())

    norms = (norm(e), norm(hat), norm(d), norm(d_hat), norm(rho))
    return MixedTable(e, aug, norms, bool(torch.isfinite(e).all()), block)


@dataclass(frozen=True)
class _QuerySide:
    aug: Tensor  # (B, K) bf16 rows [q̂, q̂, dq̂, -c1, -c2, -c3, 0…]
    target_score: Tensor  # (B,) fp32 f(b, target)
    shift: Tensor  # (B,) float64 C_b = c1 + c2 + c3
    bound: Tensor  # (B,) float64 A_b
    exact: Tensor  # (B,) bool: users that take the exact path
    mu: Tensor  # (B, 1) int16 bits of the band half-width μ_b (-1 for exact-path users: no band)

    @property
    def target_gap(self) -> Tensor:
        """(B,) float64 g_bt = f(b, t) - C_b, exact."""
        return self.target_score.double() - self.shift


def _query_side(query: Tensor, target: Tensor, mt: MixedTable) -> _QuerySide:
    q = query.float()
    ts = dot_rows(q, mt.table[target.long()])  # (B,)
    q_hat, _, dq_hat, rho_q = _split(q)
    c1 = ts.bfloat16()
    r1 = ts - c1.float()
    c2 = r1.bfloat16()
    cs = torch.stack([c1, c2, (r1 - c2.float()).bfloat16()], 1)  # (B, 3)
    dim, width = q.shape[1], mt.aug.shape[1]
    pad = torch.zeros(len(q), width - 3 * dim - 3, dtype=torch.bfloat16, device=q.device)
    aug = torch.cat([q_hat, q_hat, dq_hat, -cs, pad], 1)  # (B, K)
    m_e, m_hat, m_d, m_dhat, m_rho = mt.norms
    n_q, n_hat, n_dhat, n_rho = (x.double().norm(dim=1) for x in (q, q_hat, dq_hat, rho_q))  # (B,) each
    c_abs = cs.double().abs().sum(1)
    bound = _SAFETY * (
        _gamma(dim) * n_q * m_e
        + n_hat * m_rho
        + n_dhat * m_d
        + n_rho * m_e
        + _gamma(2 * width) * (n_hat * (m_hat + m_dhat) + n_dhat * m_hat + c_abs)
        + _TINY * (1 + n_q) * (1 + m_e)
    )
    exact = ~torch.isfinite(q).all(1) | ~torch.isfinite(ts) | ~(n_q * m_e < _OVERFLOW) | (not mt.finite)
    shift = cs.double().sum(1)
    mu = _band_magnitude(ts.double() - shift, bound).masked_fill(exact, -1).unsqueeze(1)
    return _QuerySide(aug, ts, shift, bound, exact, mu)


def _to_bf16_up(x: Tensor) -> Tensor:
    """(R,) float64 > 0 → the bit pattern (int16) of the smallest bf16 >= x (positive: bit order = value order)."""
    x32 = x.float()
    x32 = torch.where(x32.double() < x, torch.nextafter(x32, torch.full_like(x32, float("inf"))), x32)
    bits = x32.view(torch.int32)
    return ((bits >> 16) + ((bits & 0xFFFF) != 0).int()).to(torch.int16)


def _band_magnitude(gap: Tensor, bound: Tensor) -> Tensor:
    """(B,) int16 bits of μ > 0 such that ỹ_j > μ ⇒ g_j > g_t (certainly ahead) and ỹ_j < -μ ⇒ g_j < g_t.

    ``gap`` is the exact g_t. Ahead when ỹ_j - u|ỹ_j| > g_t + A_b (an increasing function of ỹ_j), i.e. ỹ_j > hi;
    behind when ỹ_j + u|ỹ_j| < g_t - A_b, i.e. ỹ_j < lo; μ = max(hi, -lo) > 0 (lo < hi), rounded up to bf16.
    """
    r_hi, r_lo = gap + bound, gap - bound
    hi = torch.where(r_hi >= 0, r_hi / (1 - _U), r_hi / (1 + _U))
    lo = torch.where(r_lo >= 0, r_lo / (1 + _U), r_lo / (1 - _U))
    return _to_bf16_up(torch.maximum(hi, -lo))


def block_top_n(scores: Tensor, n: int, block: int) -> tuple[Tensor, Tensor]:
    """A set of ``n`` largest values of each (R, V) row and their columns (unsorted, ties broken any way), through
    the ``n`` blocks of ``block`` columns with the largest maxima (module docstring); V a multiple of ``block``."""
    rows, width = scores.shape
    n_blocks = width // block
    if n_blocks <= 2 * n:  # the blocks would not prune much
        return torch.topk(scores, n, dim=1, sorted=False)
    blocks = scores.view(rows, n_blocks, block)
    top = torch.topk(blocks.amax(2), n, dim=1, sorted=False).indices  # (R, n) block ids
    flat = (top + torch.arange(rows, device=scores.device).unsqueeze(1) * n_blocks).view(-1)
    sub = blocks.reshape(rows * n_blocks, block).index_select(0, flat).view(rows, n * block)
    vals, local = torch.topk(sub, n, dim=1, sorted=False)
    return vals, top.gather(1, local // block) * block + local % block


def fast_top_k_scored(scores: Tensor, k: int, block: int = BLOCK) -> tuple[Tensor, Tensor]:
    """``top_k_scored`` through a block pre-selection: the same (B, k) scores and ids, bit for bit.

    The ``k`` best blocks by (max descending, block id ascending) hold the exact top-K (module docstring); their
    columns, gathered in id order, go through ``top_k_scored``. Rows with a NaN take ``top_k_scored`` itself.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rows, width = scores.shape
    n = min(k, width)
    n_blocks = -(-width // block)
    if n_blocks <= 2 * n:
        return top_k_scored(scores, k)
    full = width // block * block
    maxima = scores[:, :full].reshape(rows, -1, block).amax(2)  # (B, nb)
    if full < width:
        maxima = torch.cat([maxima, scores[:, full:].amax(1, keepdim=True)], 1)
    best, blocks = top_k_scored(maxima, n)  # (B, n); empty blocks (-inf) come back as id 0
    blocks = torch.where(best > _NEG_INF, blocks, n_blocks).sort(1).values  # ascending; empty → past the end
    cols = (blocks.unsqueeze(2) * block + torch.arange(block, device=scores.device)).view(rows, n * block)
    valid = cols < width
    sub = scores.gather(1, cols.clamp(max=width - 1)).masked_fill(~valid, _NEG_INF)  # (B, n * block)
    vals, local = top_k_scored(sub, k)
    ids = torch.where(vals > _NEG_INF, cols.gather(1, local.clamp(max=cols.shape[1] - 1)), 0)
    nan_rows = maxima.isnan().any(1).nonzero().squeeze(1)
    if len(nan_rows):
        vals[nan_rows], ids[nan_rows] = top_k_scored(scores[nan_rows], k)
    return vals, ids


def _bf16_product(a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """(R, K) @ (V, K).T into ``out``, bf16 with fp32 accumulation (on CUDA: no reduced-precision split-K)."""
    if a.device.type != "cuda":
        return torch.matmul(a, b.T, out=out)
    flag = torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    try:
        return torch.matmul(a, b.T, out=out)
    finally:
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = flag


def _mask(y: Tensor, seen: Tensor, target: Tensor) -> Tensor:
    """``mask_scores`` in place on (R, W) scores, by flat ``index_fill_`` (bf16 ``scatter_`` is far slower);
    returns the flat positions of the targets."""
    base = torch.arange(len(y), device=y.device).unsqueeze(1) * y.shape[1]  # (R, 1)
    at_target = (base + target.unsqueeze(1)).view(-1)  # (R,)
    flat = y.view(-1)
    kept = flat[at_target]
    y[:, 0] = _NEG_INF
    if seen.numel():
        flat.index_fill_(0, (base + seen.long()).view(-1), _NEG_INF)
    flat[at_target] = kept
    return at_target


def _row_counts(flags: Tensor) -> Tensor:
    """(R, W) int16 0/1 → (R,) int64 row sums, from int16 sums over < 2**15 columns (vectorised, no overflow)."""
    step = 2**15 - 1
    return (
        torch.stack([flags[:, s : s + step].sum(1, dtype=torch.int16) for s in range(0, flags.shape[1], step)])
        .long()
        .sum(0)
    )


def _band_pairs(magnitude: Tensor, mu: Tensor, block: int) -> tuple[Tensor, Tensor]:
    """(rows, cols), row-major, where the (R, W) int16 magnitude bits are <= μ (R, 1): blocks whose least
    magnitude is within the band first, then their entries (a band is a few items: no full-size mask)."""
    rows, width = magnitude.shape
    blocks = magnitude.view(rows, width // block, block)
    r, b = (blocks.amin(2) <= mu).nonzero(as_tuple=True)
    i, j = (blocks[r, b] <= mu[r]).nonzero(as_tuple=True)
    return r[i], b[i] * block + j


def _off_model(y_target: Tensor, side: _QuerySide, row_chunk: int) -> Tensor:
    """(B,) True for every user of a chunk where a target's ỹ breaks the bound (a kernel outside the error model:
    that chunk takes the exact path)."""
    yt = y_target.double()
    broken = ((yt - side.target_gap).abs() > side.bound + _U * yt.abs()) & ~side.exact  # NaN: not broken
    chunk = torch.arange(len(yt), device=yt.device) // row_chunk
    hit = torch.zeros(int(chunk[-1]) + 1 if len(chunk) else 0, dtype=torch.bool, device=yt.device)
    return hit.index_fill_(0, chunk[broken], True)[chunk]


def _top_set(y: Tensor, ahead: Tensor, n: int, block: int) -> tuple[Tensor, Tensor]:
    """(R, n) values and ids of a set of the ``n`` largest ỹ per row. On int16 bit patterns (faster) where a row
    has >= n positive ỹ (their bit order is their value order, above every negative); else on bf16."""
    vals, ids = block_top_n(y.view(torch.int16), n, block)
    few = (ahead < n).nonzero().squeeze(1)
    if len(few):
        v, i = torch.topk(y[few], n, dim=1, sorted=False)
        vals[few], ids[few] = v.view(torch.int16), i
    return vals.view(torch.bfloat16), ids


def _rescored_top_k(side: _QuerySide, f: Tensor, ids: Tensor, floor: Tensor, k: int) -> tuple[Tensor, ...]:
    """(B, k) top-K of the rescored (B, n) top sets (f, ids), and (B,) whether it is certainly the exact one:
    every item outside a set has ỹ <= ``floor`` (the set's least ỹ), hence g <= floor + A_b + u|floor|."""
    f, ids = order_by_score_then_id(f, ids)
    n = ids.shape[1]
    if n < k:
        f = torch.nn.functional.pad(f, (0, k - n), value=_NEG_INF)
        ids = torch.nn.functional.pad(ids, (0, k - n), value=0)
    f, ids = f[:, :k], ids[:, :k]
    v = floor.double()
    ok = (v == _NEG_INF) | (f[:, k - 1].double() - side.shift > v + side.bound + _U * v.abs())
    return f, ids, ok


def _rescore_set(query: Tensor, mt: MixedTable, y_vals: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """(R, n) f and ids of a top set of ỹ (empty slots: -inf and id 0)."""
    empty = y_vals == _NEG_INF
    ids = ids.clamp(max=mt.n_rows - 1).masked_fill(empty, 0)  # padding columns are never real
    return dot_rows(query.float().unsqueeze(1), mt.table[ids]).masked_fill(empty, _NEG_INF), ids


@dataclass(frozen=True)
class _Batch:
    """One ``mixed_ranking`` call: its inputs, the prepared table and query side, and per-chunk workspaces
    (reused: fresh multi-MB tensors per chunk cost page faults)."""

    query: Tensor
    seen: Tensor
    target: Tensor
    table: MixedTable
    side: _QuerySide
    n: int  # candidates rescored for the top-K
    scores: Tensor  # (row_chunk, W) bf16
    flags: Tensor  # (row_chunk, W) int16


def _scan_rows(batch: _Batch, rows: slice) -> tuple[Tensor, ...]:
    """One chunk of users through the bf16 product: certainly-ahead counts, band (row, item) pairs, the targets'
    ỹ, and a top-``n`` set rescored (f, ids) with its least ỹ."""
    mt, side, tgt = batch.table, batch.side, batch.target[rows].long()
    y = _bf16_product(side.aug[rows], mt.aug, batch.scores[: len(tgt)])  # (R, W) bf16
    y[:, mt.n_rows :] = _NEG_INF  # padding rows of the prepared table
    at_target = _mask(y, batch.seen[rows], tgt)
    y16, flags, mu = y.view(torch.int16), batch.flags[: len(tgt)], side.mu[rows]
    # bf16 bits: for μ > 0, ỹ > μ ⟺ y16 > μ, and |ỹ| <= μ ⟺ (y16 & 0x7FFF) <= μ; int16 outputs are vectorised
    ahead = _row_counts(torch.gt(y16, mu, out=flags))
    magnitude = torch.bitwise_and(y16, 0x7FFF, out=flags)
    magnitude.view(-1)[at_target] = 0x7FFF  # the target itself is not in its band
    band_rows, band_cols = _band_pairs(magnitude, mu, mt.block)
    y_vals, ids = _top_set(y, ahead, batch.n, mt.block)
    f, ids = _rescore_set(batch.query[rows], mt, y_vals, ids)
    return ahead, band_rows + rows.start, band_cols, y.view(-1)[at_target], f, ids, y_vals.amin(1)


def _exact_rows(query: Tensor, table: Tensor, seen: Tensor, target: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Ranks and top-K of a few users with the rescoring kernel over the whole catalog (item chunks)."""
    step = max(1, _EXACT_ELEMENTS // max(1, len(query) * table.shape[1]))
    q = query.float().unsqueeze(1)  # (R, 1, D)
    parts = [dot_rows(q, table[start : start + step].unsqueeze(0)) for start in range(0, table.shape[0], step)]
    masked = mask_scores(torch.cat(parts, 1), seen, target, inplace=True)  # (R, V+1)
    return target_ranks(masked, target), *top_k_scored(masked, k)


_CACHE: list[tuple[tuple[object, ...], Tensor, MixedTable]] = []


def _prepared(table: Tensor) -> MixedTable:
    """``prepare_table`` with a one-entry cache keyed by storage address, layout and version counter (an in-place
    update bumps it); the source tensor is held, so its address cannot be reused by another table meanwhile.
    Inference tensors (a table computed under ``torch.inference_mode``, e.g. fused with side features) have no
    version counter: they are prepared every time, never cached."""
    if table.is_inference():
        return prepare_table(table)
    key = (table.data_ptr(), table.device, table.dtype, tuple(table.shape), table.stride(), table._version)
    if _CACHE and _CACHE[0][0] == key:
        return _CACHE[0][2]
    mt = prepare_table(table)
    _CACHE[:] = [(key, table, mt)]
    return mt


def _band_scores(query: Tensor, table: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``dot_rows`` of the (row, item) band pairs, a bounded number of (pairs, D) elements at a time."""
    step = max(1, _EXACT_ELEMENTS // max(1, table.shape[1]))
    parts = [dot_rows(query[rows[s : s + step]].float(), table[cols[s : s + step]]) for s in range(0, len(rows), step)]
    return torch.cat(parts) if parts else query.new_zeros(0)


@torch.no_grad()
def mixed_ranking(
    query: Tensor,
    table: Tensor | MixedTable,
    seen: Tensor,
    target: Tensor,
    k: int,
    *,
    extra: int | None = None,
    row_chunk: int = ROW_CHUNK,
    stats: dict[str, int] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Ranks and top-K of every user against every item from one bf16 product, exact w.r.t. fp32 rescoring.

    Args:
        query: ``(B, D)`` user representations; table: ``(V+1, D)`` item table (row 0 = padding), or a
            ``prepare_table`` result (a raw table is prepared once and cached while it is unchanged).
        seen: ``(B, S)`` item ids to exclude (0-padded); target: ``(B,)`` target ids in ``1..V``.
        k: list length; extra: bf16 candidates beyond ``k`` that are rescored (default ``max(8, k // 4)``).
        row_chunk: users per bf16 product.
        stats: when given, incremented with ``users``, ``band_pairs`` (rescored for the ranks), ``exact_users``
            (recomputed exactly: non-finite, near overflow) and ``unsure_users`` (top-K check failed, recomputed).
    Returns:
        ``(B,)`` ranks ``1 + #{j != t : f(b, j) >= f(b, t)}`` over the rankable (unmasked) items, and the
        ``(B, k)`` fp32 scores ``f`` and ids of the best items by (f descending, id ascending), ``-inf``/0 past
        the rankable items: ``target_ranks`` and ``top_k_scored`` of ``mask_scores(f)``, f the rescoring kernel
        (``dot_rows``), which agrees with ``query @ table.T`` to fp32 rounding.
    """
    if k < 1 or row_chunk < 1:
        raise ValueError(f"k and row_chunk must be >= 1, got k={k}, row_chunk={row_chunk}")
    mt = table if isinstance(table, MixedTable) else _prepared(table)
    if len(query) == 0:
        return _exact_rows(query, mt.table, seen, target, k)
    side = _query_side(query, target, mt)
    n = min(k + (max(8, k // 4) if extra is None else max(0, extra)), mt.aug.shape[0])
    shape = (min(row_chunk, len(query)), mt.aug.shape[0])
    scores = torch.empty(shape, dtype=torch.bfloat16, device=query.device)
    batch = _Batch(query, seen, target, mt, side, n, scores, torch.empty_like(scores, dtype=torch.int16))
    chunks = [_scan_rows(batch, slice(s, s + row_chunk)) for s in range(0, len(query), row_chunk)]
    ahead, band_rows, band_cols, y_target, top_f, top_ids, floor = (torch.cat(c) for c in zip(*chunks, strict=True))
    exact = side.exact | _off_model(y_target, side, row_chunk)
    vals, ids, ok = _rescored_top_k(side, top_f, top_ids, floor, k)
    unsure = ~ok
    exact |= torch.bincount(band_rows, minlength=len(query)) > BAND_LIMIT  # e.g. EASE's 12k-wide item-item rows
    keep = ~exact[band_rows]
    band_rows, band_cols = band_rows[keep], band_cols[keep]
    band_f = _band_scores(query, mt.table, band_rows, band_cols)  # (P,) rescored band pairs
    band_ahead = torch.bincount(band_rows[band_f >= side.target_score[band_rows]], minlength=len(query))
    ranks = 1 + ahead + band_ahead
    if stats is not None:
        counts = {"users": len(query), "band_pairs": len(band_rows), "exact_users": int(exact.sum())}
        for key, value in {**counts, "unsure_users": int((unsure & ~exact).sum())}.items():
            stats[key] = stats.get(key, 0) + value
    redo = (exact | unsure).nonzero().squeeze(1)  # unsure top-K only: their ranks are exact already
    if len(redo):
        redone, vals[redo], ids[redo] = _exact_rows(query[redo], mt.table, seen[redo], target[redo], k)
        ranks[redo] = torch.where(exact[redo], redone, ranks[redo])
    return ranks, vals, ids
