"""Fast in-process re-ranker sweep on one checkpoint: scores each val/test user once, caches the top-N candidates,
then evaluates many re-ranker settings on the cache (NDCG@10, ILD@10, CategoryCoverage@10, ItemCoverage@10).

Used to explore settings quickly; the recorded fronts come from ``divrec eval -m`` (run.sh), which computes the same
numbers through the full pipeline.

    python experiments/diversity_tradeoff/explore.py <best.ckpt> --out grid.csv \
        --grid "mmr lambda_=0.5,0.7" --grid "xquad lambda_=0.1,0.3 +candidates=20,50"
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from divrec import names
from divrec.metrics import CategoryCoverage, IntraListDiversity, categories_multi_hot, mask_scores
from divrec.pipeline import build, checkpoint_config, load_checkpoint
from divrec.rerank import RerankContext, list_ranks

CONF = Path(__file__).resolve().parents[2] / "conf"


def cache_candidates(ckpt: str, n: int) -> tuple[dict[str, list[dict[str, torch.Tensor]]], Any]:
    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose("eval", overrides=[f"ckpt_path={ckpt}", "logger=none", "paths.output_dir=outputs/explore"])
    checkpoint = load_checkpoint(ckpt)
    cfg = checkpoint_config(cfg, checkpoint, [])
    datamodule, module = build(cfg)
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    datamodule.setup()
    out: dict[str, list[dict[str, torch.Tensor]]] = {}
    for stage, loader in ((names.VAL, datamodule.val_dataloader()), (names.TEST, datamodule.test_dataloader())):
        out[stage] = []
        for batch in loader:
            with torch.no_grad():
                masked = mask_scores(module.scores(batch[names.HISTORY]), batch[names.SEEN], batch[names.TARGET])
                lse = masked.logsumexp(1, keepdim=True)
                scores, cands = masked.topk(n, dim=1)
            out[stage].append({"scores": scores, "cands": cands, "lse": lse, "seen": batch[names.SEEN],
                               "target": batch[names.TARGET]})
    return out, datamodule.load()


def evaluate(cache: list[dict[str, torch.Tensor]], reranker: Any, n: int, multi_hot: torch.Tensor) -> dict[str, float]:
    ild, cov = IntraListDiversity(10, multi_hot), CategoryCoverage(10, multi_hot)
    ndcg, users, recommended = 0.0, 0, torch.zeros(multi_hot.shape[0], dtype=torch.bool)
    for b in cache:
        scores, cands = b["scores"][:, :n], b["cands"][:, :n]
        context = RerankContext(histories=b["seen"])
        lists = reranker(scores, cands, 10, context) if reranker is not None else cands[:, :10]
        ranks = list_ranks(lists, b["target"])
        ndcg += float(torch.where(ranks <= 10, 1.0 / torch.log2(ranks.double() + 1), 0.0).sum())
        users += len(ranks)
        ild.update(lists)
        cov.update(lists)
        recommended[lists.reshape(-1)] = True
    recommended[0] = False
    return {"ndcg@10": ndcg / users, "ild@10": float(ild.compute()), "category_coverage@10": float(cov.compute()),
            "item_coverage@10": float(recommended.sum()) / (multi_hot.shape[0] - 1)}


def settings(spec: str) -> list[tuple[str, dict[str, Any], int]]:
    """``"mmr lambda_=0.5,0.7 +candidates=20,50"`` → every combination."""
    name, *params = spec.split()
    keys, values = [], []
    for p in params:
        k, v = p.split("=")
        keys.append(k)
        values.append([yaml.safe_load(x) for x in v.split(",")])
    combos = []
    for combo in itertools.product(*values):
        d = dict(zip(keys, combo, strict=True))
        n = int(d.pop("+candidates", 200))
        combos.append((name, d, n))
    return combos


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ckpt")
    parser.add_argument("--grid", action="append", default=[])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-candidates", type=int, default=200)
    parser.add_argument("--cache", type=Path, help="file keeping the scored candidates between calls")
    args = parser.parse_args()
    if args.cache is not None and args.cache.exists():
        cache, multi_hot = torch.load(args.cache)
    else:
        cache, data = cache_candidates(args.ckpt, args.max_candidates)
        multi_hot = categories_multi_hot(data.item_category_offsets, data.item_category_ids, len(data.category_names))
        if args.cache is not None:
            torch.save((cache, multi_hot), args.cache)
    rows = []
    for stage in (names.VAL, names.TEST):
        base = evaluate(cache[stage], None, args.max_candidates, multi_hot)
        rows.append({"stage": stage, "reranker": "none", "setting": "", **base})
    for spec in args.grid:
        for name, params, n in settings(spec):
            node = OmegaConf.merge(OmegaConf.load(CONF / "rerank" / f"{name}.yaml"), params)
            reranker = instantiate(node, item_categories=multi_hot)
            setting = " ".join(f"{k}={v}" for k, v in params.items()) + f" N={n}"
            for stage in (names.VAL, names.TEST):
                start = time.perf_counter()
                res = evaluate(cache[stage], reranker, n, multi_hot)
                rows.append({"stage": stage, "reranker": name, "setting": setting, **res,
                             "seconds": round(time.perf_counter() - start, 2)})
            frame = pd.DataFrame(rows)
            print(frame.tail(2).to_string(header=False), flush=True)
    frame = pd.DataFrame(rows)
    for stage in (names.VAL, names.TEST):
        base = frame[(frame.stage == stage) & (frame.reranker == "none")].iloc[0]
        for key in ("ndcg@10", "ild@10", "category_coverage@10", "item_coverage@10"):
            sel = frame.stage == stage
            frame.loc[sel, f"d_{key.split('@')[0]}%"] = 100 * (frame.loc[sel, key] / base[key] - 1)
    frame.to_csv(args.out, index=False)
    print(frame.round(4).to_string())


if __name__ == "__main__":
    main()
