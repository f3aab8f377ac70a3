"""Which reduced-precision arithmetic this machine runs natively (decides whether a bf16 fast path pays)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import torch

_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def bf16_supported(device: str = "cpu") -> bool:
    """True when ``device`` has native bf16 matrix units, so a bf16 matrix product beats the fp32 one.

    ``"cpu"``: Linux with the ``avx512_bf16`` or ``amx_bf16`` flag in ``/proc/cpuinfo`` and torch built with oneDNN
    (``torch.backends.mkldnn``); False elsewhere (bf16 is then emulated, slower than fp32). ``"cuda"``: a CUDA device
    that reports bf16 support. Cached per device string.
    """
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device != "cpu" or not sys.platform.startswith("linux") or not torch.backends.mkldnn.is_available():
        return False
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return not _BF16_CPU_FLAGS.isdisjoint(line.partition(":")[2].split())
    return False
