"""Fast re-ranker sweeps on one checkpoint, in two steps.

``cache``: score every val/test user once through the pipeline (``divrec.pipeline.build``, the checkpoint's own
config) and keep each user's top-N candidates, their scores, the full-catalog logsumexp and the target (int16 ids
when the catalog allows, so the file stays small). ``sweep``: evaluate many re-ranker settings on that file with the
same ``Reranker`` modules and metric classes as ``divrec eval`` (NDCG@10 of the re-ranked list, ILD@10 by category
Jaccard, CategoryCoverage@10, ItemCoverage@10), on CPU or GPU; ``sweep`` needs no Hydra (re-rankers are built from
``conf/rerank/<name>.yaml``'s ``_target_``).

    python experiments/diversity_tradeoff/explore.py cache <best.ckpt> cache.pt --candidates 200
    python experiments/diversity_tradeoff/explore.py sweep cache.pt --out grid.csv --device cuda \
        --grid "mmr lambda_=0.5,0.7 similarity=jaccard +candidates=50,200" --grid "xquad lambda_=0.1"

``+candidates`` is N (the top N of the cached candidates are re-ranked). Each row of the CSV is one (stage, setting);
``--model seed0`` labels the rows with the checkpoint, for ``report.py --seeds`` (mean over trained models).
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from divrec import names
from divrec.metrics import CategoryCoverage, IntraListDiversity
from divrec.rerank import RerankContext, Reranker, list_ranks

CONF = Path(__file__).resolve().parents[2] / "conf"
STAGES = (names.VAL, names.TEST)
# temperatures at which ``cache`` also keeps each user's full-catalog logsumexp of scores / T and the target's score,
# so that bound.py can calibrate the model's softmax (temperature scaling fitted on validation NLL)
TEMPERATURES = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
KEYS = ("ndcg@10", "ild@10", "category_coverage@10", "item_coverage@10")


def cache_candidates(ckpt: str, out: Path, n: int) -> None:
    """Score val and test once and save ``{stage: {scores, cands, lse, target, lse_t, target_score}}`` plus the
    category multi-hot (``lse_t``: ``(U, len(TEMPERATURES))`` logsumexp of the masked scores / T)."""
    from hydra import compose, initialize_config_dir

    from divrec.metrics import categories_multi_hot, mask_scores
    from divrec.pipeline import build, checkpoint_config, load_checkpoint

    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose("eval", overrides=[f"ckpt_path={ckpt}", "logger=none", "paths.output_dir=outputs/explore"])
    checkpoint = load_checkpoint(ckpt)
    cfg = checkpoint_config(cfg, checkpoint, [])
    datamodule, module = build(cfg)
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    datamodule.setup()
    data = datamodule.load()
    ids = torch.int16 if data.n_items < 2**15 else torch.int32
    result: dict[str, Any] = {}
    for stage, loader in zip(STAGES, (datamodule.val_dataloader(), datamodule.test_dataloader()), strict=True):
        keys = ("scores", "cands", "lse", "target", "lse_t", "target_score")
        parts: dict[str, list[torch.Tensor]] = {key: [] for key in keys}
        for batch in loader:
            with torch.no_grad():
                masked = mask_scores(module.scores(batch[names.HISTORY]), batch[names.SEEN], batch[names.TARGET])
                scores, cands = masked.topk(n, dim=1)
            parts["scores"].append(scores)
            parts["cands"].append(cands.to(ids))
            parts["lse"].append(masked.logsumexp(1, keepdim=True))
            parts["target"].append(batch[names.TARGET].to(ids))
            parts["lse_t"].append(torch.stack([(masked / t).logsumexp(1) for t in TEMPERATURES], dim=1))
            parts["target_score"].append(masked.gather(1, batch[names.TARGET].long().unsqueeze(1)).squeeze(1))
        result[stage] = {key: torch.cat(value) for key, value in parts.items()}
    multi_hot = categories_multi_hot(data.item_category_offsets, data.item_category_ids, len(data.category_names))
    source = cfg.data.source
    dataset = source.get("name") or str(source["_target_"]).rsplit(".", 1)[-1]
    blob = {"stages": result, "multi_hot": multi_hot, "dataset": dataset, "temperatures": TEMPERATURES}
    torch.save(blob, out)


def evaluate(
    stage: dict[str, torch.Tensor], reranker: Reranker | None, n: int, multi_hot: torch.Tensor, batch: int = 4096
) -> dict[str, float]:
    """The four front metrics of the re-ranked top-10 lists (plain top-10 when ``reranker`` is None)."""
    device = multi_hot.device
    ild, cov = IntraListDiversity(10, multi_hot).to(device), CategoryCoverage(10, multi_hot).to(device)
    ndcg, users = 0.0, 0
    recommended = torch.zeros(multi_hot.shape[0], dtype=torch.bool, device=device)
    for lo in range(0, stage["scores"].shape[0], batch):
        scores = stage["scores"][lo : lo + batch, :n].to(device)
        cands = stage["cands"][lo : lo + batch, :n].to(device).long()
        target = stage["target"][lo : lo + batch].to(device).long()
        context = RerankContext(log_normalizer=stage["lse"][lo : lo + batch].to(device))
        lists = reranker(scores, cands, 10, context) if reranker is not None else cands[:, :10]
        ranks = list_ranks(lists, target)
        ndcg += float(torch.where(ranks <= 10, 1.0 / torch.log2(ranks.double() + 1), 0.0).sum())
        users += len(ranks)
        ild.update(lists)
        cov.update(lists)
        recommended[lists.reshape(-1)] = True
    recommended[0] = False
    return {
        "ndcg@10": ndcg / users,
        "ild@10": float(ild.compute()),
        "category_coverage@10": float(cov.compute()),
        "item_coverage@10": float(recommended.sum()) / (multi_hot.shape[0] - 1),
    }


def settings(spec: str) -> list[tuple[str, dict[str, Any], int]]:
    """``"mmr lambda_=0.5,0.7 +candidates=20,50"`` → every combination as (name, params, N)."""
    name, *params = spec.split()
    keys, values = [], []
    for p in params:
        key, value = p.split("=", 1)
        keys.append(key)
        values.append([yaml.safe_load(x) for x in value.split(",")])
    combos = []
    for combo in itertools.product(*values):
        chosen = dict(zip(keys, combo, strict=True))
        n = int(chosen.pop("+candidates", 200))
        combos.append((name, chosen, n))
    return combos


def make_reranker(name: str, params: dict[str, Any], multi_hot: torch.Tensor) -> Reranker:
    """``conf/rerank/<name>.yaml`` with ``params`` on top, built from its ``_target_`` (what Hydra's instantiate
    does for this flat node)."""
    node = {**(yaml.safe_load((CONF / "rerank" / f"{name}.yaml").read_text()) or {}), **params}
    module, _, attr = node.pop("_target_").rpartition(".")
    return getattr(importlib.import_module(module), attr)(item_categories=multi_hot, **node).to(multi_hot.device)


def sweep(cache: Path, specs: list[str], out: Path, device: str, model: str = "") -> pd.DataFrame:
    """Every setting of ``specs`` on one cache; ``model`` labels the rows (e.g. the training seed) so that
    ``report.py --seeds`` can average over independently trained models."""
    blob = torch.load(cache)
    multi_hot = blob["multi_hot"].to(device)
    n_max = blob["stages"][names.VAL]["scores"].shape[1]
    rows = [{"dataset": blob["dataset"], "model": model, "stage": s, "reranker": "none", "setting": "", "N": 0,
             **evaluate(blob["stages"][s], None, n_max, multi_hot)} for s in STAGES]
    for spec in specs:
        for name, params, n in settings(spec):
            reranker = make_reranker(name, params, multi_hot)
            setting = " ".join(f"{k}={v}" for k, v in params.items())
            for s in STAGES:
                start = time.perf_counter()
                res = evaluate(blob["stages"][s], reranker, n, multi_hot)
                rows.append({"dataset": blob["dataset"], "model": model, "stage": s, "reranker": name,
                             "setting": setting, "N": n,
                             **res, "seconds": round(time.perf_counter() - start, 2)})
            print(pd.DataFrame(rows[-2:]).round(4).to_string(header=False), flush=True)
    frame = pd.DataFrame(rows)
    for s in STAGES:
        sel = frame.stage == s
        base = frame[sel & (frame.reranker == "none")].iloc[0]
        for key in KEYS:
            frame.loc[sel, f"Δ{key} %"] = 100 * (frame.loc[sel, key] / base[key] - 1)
    frame.to_csv(out, index=False)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache")
    c.add_argument("ckpt")
    c.add_argument("file", type=Path)
    c.add_argument("--candidates", type=int, default=200)
    s = sub.add_parser("sweep")
    s.add_argument("file", type=Path)
    s.add_argument("--grid", action="append", default=[])
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--device", default="cpu")
    s.add_argument("--model", default="", help="label of the checkpoint (e.g. seed0), written to every row")
    args = parser.parse_args()
    if args.command == "cache":
        cache_candidates(args.ckpt, args.file, args.candidates)
    else:
        sweep(args.file, args.grid, args.out, args.device, args.model)


if __name__ == "__main__":
    main()
