"""The matrix-product rates this CPU reaches at the logits shape (positions x D) @ (D x items), bf16 vs fp32, and
at the two backward shapes, on all cores: the peak the training step's fraction is measured against.

    .venv/bin/python experiments/speed/gemm_peak.py --out outputs/speed/gemm.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch


def seconds(fn: Callable[[], object], repeat: int = 10) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def rates(n: int, d: int, v: int, dtype: torch.dtype) -> dict[str, float]:
    """GFLOP/s of z = h @ E^T (n, v), dh = G @ E (n, d) and dE = G^T @ h (v, d)."""
    h, e, g = torch.randn(n, d, dtype=dtype), torch.randn(v, d, dtype=dtype), torch.randn(n, v, dtype=dtype)
    flops = 2.0 * n * d * v
    return {
        "logits": flops / seconds(lambda: h @ e.T) / 1e9,
        "grad_hidden": flops / seconds(lambda: g @ e) / 1e9,
        "grad_table": flops / seconds(lambda: g.T @ h) / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shape", type=int, nargs=3, default=(12_800, 64, 12_101), metavar=("N", "D", "V"))
    args = parser.parse_args()
    n, d, v = args.shape
    result = {"shape": [n, d, v], "threads": torch.get_num_threads(), "torch": torch.__version__,
              "bf16": rates(n, d, v, torch.bfloat16), "fp32": rates(n, d, v, torch.float32)}
    for dtype in ("bf16", "fp32"):
        r = result[dtype]
        r["step"] = 3.0 / sum(1.0 / x for x in r.values())  # the three products of one step, time-weighted
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
