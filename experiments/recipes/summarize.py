"""experiments/recipes/run.sh's runs → a table: dataset x recipe, val / test NDCG@10, epochs, seconds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def main(root: Path = Path("outputs/recipes")) -> None:
    print("| dataset | recipe | median train length | val NDCG@10 (selects) | test NDCG@10 | epochs | train s |")
    print("|---" * 7 + "|")
    for run in sorted(root.glob("*/*")):
        if not (run / "metrics.json").exists():
            continue
        m = json.loads((run / "metrics.json").read_text())
        applied = yaml.safe_load((run / "config.yaml").read_text()).get("recipe_applied") or {}
        median = applied.get("median_train_length")
        print(f"| {run.parent.name} | {run.name} | {median if median is not None else 'forced'} | "
              f"{m['val/ndcg@10']:.4f} | {m['test/ndcg@10']:.4f} | {m['epochs']} | {m['train_time_s']:.0f} |")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:]))
