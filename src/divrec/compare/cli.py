"""``divrec compare PATH… [--metric val/ndcg@10] [--out DIR]``: a plain argparse command (no Hydra config)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from divrec import names
from divrec.compare.report import compare, render_markdown, write_outputs
from divrec.compare.runs import load_runs
from divrec.errors import UserError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="divrec compare",
        description="Compare runs: single run folders and sweep folders (every run folder below a path counts). "
        "Writes runs.csv, groups.csv, compare.md, significance.json and PNG plots into --out.",
    )
    p.add_argument("paths", nargs="+", type=Path, help="run folders, multirun folders or any folder above them")
    p.add_argument("--metric", default=names.MONITOR, help=f"sort and select by this metric (default {names.MONITOR})")
    p.add_argument("--minimize", action="store_true", help="lower is better for --metric")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <first path>/compare)")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = args.out if args.out is not None else args.paths[0] / "compare"
    try:
        comparison = compare(load_runs(args.paths), args.metric, maximize=not args.minimize)
        written = write_outputs(comparison, out, plots=not args.no_plots)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    print(render_markdown(comparison))
    print("wrote " + ", ".join(str(p) for p in written), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
