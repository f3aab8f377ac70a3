"""Which reduced-precision arithmetic this machine runs natively (decides whether a bf16 fast path pays)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import torch

BF16_MIXED = "bf16-mixed"
AUTO = "auto"  # divrec's trainer.precision: resolved by ``trainer_precision`` before Lightning sees it
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


def trainer_device(accelerator: str) -> str:
    """The device kind a Lightning ``trainer.accelerator`` runs on: ``cuda`` for gpu/cuda (and auto with a CUDA
    device present), else ``cpu``."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def trainer_precision(cfg: Any) -> str:
    """``cfg.trainer.precision`` as Lightning must get it: ``auto`` = ``bf16-mixed`` where the device the trainer
    runs on has native bf16 matrix units (``bf16_supported``), else ``32-true``; other values unchanged. Every
    place that builds a Trainer or decides the evaluation precision passes this, never the raw value."""
    trainer_cfg = cfg.get("trainer") or {}
    requested = str(trainer_cfg.get("precision", "32-true"))
    if requested != AUTO:
        return requested
    device = trainer_device(str(trainer_cfg.get("accelerator", "auto")))
    return BF16_MIXED if bf16_supported(device) else "32-true"
