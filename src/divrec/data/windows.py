"""Vectorised construction of padded tensors from CSR sequences: training windows and evaluation histories."""

from __future__ import annotations

import numpy as np


def window_ends(
    lengths: np.ndarray, width: int, stride: int, prefixes: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per sequence, the end positions (exclusive) of the windows that cover it, newest window first.

    A sequence of length n gets windows ending at n, n - stride, n - 2·stride, … until a window reaches the
    sequence's start, so every interaction is inside some window (none wasted); with ``stride = width - 1`` every
    next-item target is predicted exactly once. ``prefixes``: a window ends at every position n, n - 1, …, 2 (each
    prefix of at least 2 items, cut to its last ``width``), what last-position objectives train on.
    Returns (sequence index, end) arrays of equal length.
    """
    if stride < 1:
        raise ValueError(f"data.stride={stride} must be >= 1")
    lengths = np.asarray(lengths, dtype=np.int64)
    extra = np.maximum(lengths - width, 0)
    counts = np.where(lengths > 0, 1 + -(-extra // stride), 0)  # ceil division
    if prefixes:
        counts, stride = np.maximum(lengths - 1, 0), 1
    seq = np.repeat(np.arange(len(lengths)), counts)
    first = np.cumsum(counts) - counts  # index of each sequence's first window
    k = np.arange(len(seq)) - np.repeat(first, counts)  # window number within its sequence
    ends = lengths[seq] - k * stride
    return seq, ends


def gather_left_padded(
    flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int
) -> np.ndarray:
    """(N, width) array whose row r holds flat[max(starts[r], ends[r]-width) : ends[r]], left-padded with 0."""
    cols = np.arange(width, dtype=np.int64) - width  # (width,) offsets from the end: -width … -1
    idx = ends[:, None] + cols[None, :]  # (N, width) absolute positions
    valid = idx >= starts[:, None]
    out = np.zeros(idx.shape, dtype=np.result_type(flat.dtype, np.int64))  # ids stay int64; ratings float
    out[valid] = flat[idx[valid]]
    return out


def training_windows(
    offsets: np.ndarray, items: np.ndarray, width: int, stride: int, prefixes: bool = False
) -> np.ndarray:
    """Cut every CSR sequence into (N, width) left-padded windows (see ``window_ends``)."""
    lengths = np.diff(offsets)
    seq, ends = window_ends(lengths, width, stride, prefixes)
    return gather_left_padded(items, offsets[seq], offsets[seq] + ends, width)


def last_items(offsets: np.ndarray, items: np.ndarray, width: int) -> np.ndarray:
    """(U, width): the most recent ``width`` items of each CSR sequence, left-padded."""
    return gather_left_padded(items, offsets[:-1], offsets[1:], width)


def right_padded(offsets: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(U, S) all items of each CSR sequence, right-padded with 0 to the longest (S >= 1)."""
    lengths = np.diff(offsets)
    width = max(int(lengths.max(initial=0)), 1)
    cols = np.arange(width, dtype=np.int64)
    valid = cols[None, :] < lengths[:, None]
    out = np.zeros((len(lengths), width), dtype=np.int64)
    out[valid] = items[(offsets[:-1, None] + cols[None, :])[valid]]
    return out
