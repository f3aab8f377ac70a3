"""glibc ``malloc`` settings for training loops: keep the large per-step tensors on the heap.

A training step allocates and frees the same multi-megabyte tensors every step (the fused output layer's
``(rows, V)`` logit blocks are 8 MB, the FFN activations a few MB). glibc serves blocks above its mmap threshold
(128 kB at start, adapted upwards as blocks are freed) with a fresh ``mmap`` and returns them with ``munmap``, and
it gives the top of the heap back to the kernel above its trim threshold; each fresh page is then zero-filled by a
page fault on first touch. On this project's 2-core CPU that costs a third of a Beauty SASRec epoch and more than
half of ml-100k's first epoch (experiments/speed/README.md, "malloc"). Fixing both thresholds (which also turns off
glibc's adaptive threshold) lets freed blocks be reused:

* ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's maximum on 64-bit): blocks up to 32 MiB come from the heap;
* ``M_TRIM_THRESHOLD`` = 256 MiB: up to that much freed memory stays mapped at the heap's top.

The cost is resident memory: up to ~256 MiB more than the live tensors need. ``divrec`` applies this at the start
of every command (``divrec.cli.main``); library users may call :func:`tune_malloc` themselves. It does nothing where
the user already chose (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``,
``GLIBC_TUNABLES``, or an allocator preloaded with ``LD_PRELOAD``: jemalloc, tcmalloc, mimalloc), with
``DIVREC_MALLOC=default``, or off glibc.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # bytes; glibc refuses more than HEAP_MAX_SIZE / 2 = 32 MiB on 64-bit
TRIM_THRESHOLD = 256 << 20  # bytes; 64 MiB measured slower on Beauty's step, 1 GiB no faster
OPT_OUT = "DIVREC_MALLOC"  # DIVREC_MALLOC=default: leave malloc as the process started it
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (``gnu_get_libc_version`` and ``mallopt`` present), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version, libc.mallopt  # noqa: B018 - AttributeError off glibc (musl)
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc(environ: dict[str, str] | None = None) -> bool:
    """Set glibc's mmap and trim thresholds for training (module docstring); True when both were set.

    False, changing nothing, when ``environ`` (default ``os.environ``) has ``DIVREC_MALLOC=default`` or one of the
    user's own malloc settings, or when the C library is not glibc. Idempotent."""
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT, "").strip().lower() == "default" or any(env.get(key) for key in USER_SETTINGS):
        return False
    if "malloc" in env.get("LD_PRELOAD", ""):  # libjemalloc, libtcmalloc, libmimalloc: not glibc's malloc
        return False
    libc = glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
