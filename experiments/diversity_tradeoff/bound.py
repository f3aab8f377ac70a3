"""Is the accuracy–diversity front a property of the re-ranker or of the model? Three ways of optimising the same
objective on the same cached candidates (``explore.py cache`` files, one per trained model):

* ``mmr-sum T=1``: the shipped re-ranker as chosen before (MMR-sum, Jaccard, ``order=score``), relevance = the
  model's full-catalog softmax probability p_i;
* ``mmr-sum T*``: the same with the probabilities calibrated by temperature scaling (Guo et al. 2017): T* minimises
  the validation negative log-likelihood of the held-out item, ``−(s_target / T − logsumexp(s / T))``;
* ``expected-ndcg T*``: per user, maximise the *expected* NDCG@10 under the calibrated p plus μ·ILD@10, i.e.
  ``Σ_r p_(r) / log2(r + 1) − μ · 2 / (k(k−1)) · Σ_{pairs} Jaccard similarity``: a position-aware greedy (step t
  weighs relevance by the discount of slot t) followed by ``--swaps`` rounds of best-swap local search (every
  (chosen, unchosen) exchange evaluated exactly, the best improving one applied per user).

If all three trace the same front, no re-ranker that only sees this model's scores does much better: the price of
diversity is set by where the model's (calibrated) probability mass lies, not by the greedy. Output: one CSV row per
(model, method, parameter, stage) and a Markdown summary (calibration, best ΔILD@10 within −2% mean val NDCG@10).

    python experiments/diversity_tradeoff/bound.py outputs/diversity_tradeoff/beauty-seed{0,1,2}.pt \
        --out experiments/diversity_tradeoff/bound-beauty --n 50    # grids: --lambdas, --lambdas-calibrated, --mus
    python experiments/diversity_tradeoff/bound.py a.csv b.csv --out combined   # combine one-model runs
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from divrec import names
from divrec.rerank import MMR, RerankContext

_spec = importlib.util.spec_from_file_location("explore", Path(__file__).with_name("explore.py"))
assert _spec is not None and _spec.loader is not None
explore = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(explore)

K = 10
STAGES = (names.VAL, names.TEST)
SHOWN = ("ndcg@10", "ild@10", "category_coverage@10")
# the call explore.evaluate makes: (scores, candidates, k, context) -> (B, k) item ids; a Reranker is one
Lists = Callable[[Tensor, Tensor, int, RerankContext], Tensor]


def calibration(stage: dict[str, Tensor], temperatures: list[float]) -> pd.DataFrame:
    """Per temperature: mean NLL of the held-out item, mean Σ p over the top 1 and top 10, and the hit rates."""
    hits = stage["cands"].long() == stage["target"].long()[:, None]  # (U, N)
    rows = []
    for j, t in enumerate(temperatures):
        lse = stage["lse_t"][:, j : j + 1]  # (U, 1)
        p = (stage["scores"].float() / t - lse).exp()  # (U, N)
        rows.append({
            "T": t, "nll": float((lse[:, 0] - stage["target_score"] / t).mean()),
            "p@1": float(p[:, 0].mean()), "hr@1": float(hits[:, 0].float().mean()),
            "p@10": float(p[:, :K].sum(1).mean()), "hr@10": float(hits[:, :K].any(1).float().mean()),
        })
    return pd.DataFrame(rows)


def tempered(stage: dict[str, Tensor], j: int, t: float) -> dict[str, Tensor]:
    """The cached stage with scores / T and the matching full-catalog logsumexp (softmax at temperature T)."""
    return {**stage, "scores": stage["scores"].float() / t, "lse": stage["lse_t"][:, j : j + 1]}


def jaccard(multi_hot: Tensor, candidates: Tensor) -> Tensor:
    """(B, N, N) Jaccard similarity of the candidates' category sets (0 for two empty sets)."""
    m = multi_hot[candidates]  # (B, N, C)
    inter = m @ m.transpose(1, 2)  # (B, N, N)
    count = m.sum(-1)  # (B, N)
    union = count[:, :, None] + count[:, None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(inter))


def expected_ndcg(p_set: Tensor, discount: Tensor) -> Tensor:
    """(...,) Σ_r p_(r) · discount_r of a (..., K) set of probabilities sorted descending."""
    return (p_set.sort(-1, descending=True).values * discount).sum(-1)


def best_swaps(p: Tensor, sim: Tensor, chosen: Tensor, free: Tensor, weight: float, discount: Tensor) -> Tensor:
    """(B,) bool: applies, per user, the best (slot, candidate) exchange that raises the objective; in place."""
    b, n = p.shape
    p_set = p.gather(1, chosen)  # (B, K)
    to_chosen = sim.gather(1, chosen[:, :, None].expand(b, K, n))  # (B, K, N): sim(chosen slot a, candidate i)
    total = to_chosen.sum(1)  # (B, N) Σ over chosen of sim(·, i)
    own = total.gather(1, chosen) - to_chosen.gather(2, chosen[:, :, None])[..., 0]  # (B, K) sim of a to the rest
    d_pairs = (total[:, None, :] - to_chosen) - own[:, :, None]  # (B, K, N) pair-similarity change of a → i
    swapped = p_set[:, None, None, :].expand(b, K, n, K).clone()  # (B, K, N, K)
    slot = torch.arange(K)
    swapped[:, slot, :, slot] = p[None, :, :].expand(K, b, n)
    gain = expected_ndcg(swapped, discount) - expected_ndcg(p_set, discount)[:, None, None] - weight * d_pairs
    gain = torch.where(free[:, None, :], gain, torch.full_like(gain, float("-inf")))
    best, flat = gain.reshape(b, -1).max(1)
    apply = best > 1e-12
    rows, slots, items = apply.nonzero()[:, 0], (flat // n)[apply], (flat % n)[apply]
    free[rows, chosen[rows, slots]] = True
    free[rows, items] = False
    chosen[rows, slots] = items
    return apply


def expected_ndcg_lists(multi_hot: Tensor, mu: float, swaps: int) -> Lists:
    """The position-aware greedy (+ local search) of the module docstring, called like a ``Reranker``."""
    discount = 1.0 / torch.log2(torch.arange(K, dtype=torch.float32) + 2.0)  # (K,)
    weight = mu * 2.0 / (K * (K - 1))

    def lists(scores: Tensor, candidates: Tensor, k: int, context: RerankContext) -> Tensor:
        assert context.log_normalizer is not None and k == K
        p = (scores - context.log_normalizer).exp()  # (B, N) calibrated probabilities
        sim = jaccard(multi_hot, candidates.long())  # (B, N, N)
        b, n = p.shape
        chosen = torch.zeros(b, K, dtype=torch.long)
        free = torch.ones(b, n, dtype=torch.bool)
        penalty = torch.zeros(b, n)
        for t in range(K):
            gain = torch.where(free, p * discount[t] - weight * penalty, torch.full_like(p, float("-inf")))
            pos = gain.argmax(1)  # (B,)
            chosen[:, t] = pos
            free[torch.arange(b), pos] = False
            penalty += sim[torch.arange(b), pos]
        for _ in range(swaps):
            if not best_swaps(p, sim, chosen, free, weight, discount).any():
                break
        order = p.gather(1, chosen).argsort(1, descending=True)  # best first
        return candidates.long().gather(1, chosen.gather(1, order))

    return lists


def mmr_lists(multi_hot: Tensor, lambda_: float) -> Lists:
    return MMR(lambda_, "jaccard", multi_hot, order="score", relevance="softmax", aggregate="sum")


def one_model(path: Path, args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every method × parameter on one cache; returns (rows, calibration table of val)."""
    blob = torch.load(path)
    temps, multi_hot = list(blob["temperatures"]), blob["multi_hot"]
    stages = {s: blob["stages"][s] for s in STAGES}
    calib = calibration(stages[names.VAL], temps)
    j_star = int(calib.nll.idxmin())
    t_star, j_one = temps[j_star], temps.index(1.0)
    methods: list[tuple[str, float, int, float, Lists]] = []  # (method, parameter, T index, T, lists)
    methods += [("mmr-sum T=1", lam, j_one, 1.0, mmr_lists(multi_hot.float(), lam)) for lam in args.lambdas]
    calibrated = args.lambdas_calibrated
    methods += [("mmr-sum T*", lam, j_star, t_star, mmr_lists(multi_hot.float(), lam)) for lam in calibrated]
    for swaps in sorted({0, args.swaps}):
        label = "expected-ndcg T*" + (f" + {swaps} swap rounds" if swaps else " (greedy)")
        methods += [(label, mu, j_star, t_star, expected_ndcg_lists(multi_hot.float(), mu, swaps)) for mu in args.mus]
    base = {s: explore.evaluate(stages[s], None, args.n, multi_hot) for s in STAGES}
    rows: list[dict[str, Any]] = []
    for method, param, j, t, lists in methods:
        for s in STAGES:
            res = explore.evaluate(tempered(stages[s], j, t), lists, args.n, multi_hot, batch=1024)
            rows.append({"model": path.stem, "method": method, "param": param, "T": t, "stage": s, **res,
                         **{f"Δ{key} %": 100 * (res[key] / base[s][key] - 1) for key in SHOWN}})
        print(pd.DataFrame(rows[-2:]).round(4).to_string(header=False), flush=True)
    return pd.DataFrame(rows), calib.assign(model=path.stem, chosen=calib.index == j_star)


def md(frame: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs the optional tabulate)."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
    rows = [list(map(str, frame.columns)), ["---"] * frame.shape[1], *cells]
    return "\n".join(" | ".join(row) for row in rows)


def summary(frame: pd.DataFrame, calib: pd.DataFrame, budget: float) -> str:
    """Markdown: calibration per model, then per method the best mean val ΔILD within the budget, with test."""
    at = {"T=1": calib[calib["T"] == 1.0].set_index("model"), "T*": calib[calib.chosen].set_index("model")}
    compact = pd.DataFrame({"T*": at["T*"]["T"], **{f"{key} {label}": t[key] for label, t in at.items()
                                                     for key in ("nll", "p@1", "p@10")},
                            "hr@1": at["T*"]["hr@1"], "hr@10": at["T*"]["hr@10"]}).reset_index()
    lines = ["## Calibration on validation (T* = argmin NLL of the held-out item; p@k = mean Σ of the model's",
             "probabilities over its top k, against the hit rate hr@k; every temperature in the -calibration.csv)", "",
             md(compact.round(4)), ""]
    mean = frame.groupby(["method", "param", "stage"], as_index=False)[[f"Δ{k} %" for k in SHOWN]].mean()
    wide = mean.pivot_table(index=["method", "param"], columns="stage").reset_index()
    wide.columns = [f"{stage} {key}".strip() for key, stage in wide.columns]
    wide = wide[["method", "param", *(f"{s} Δ{k} %" for s in STAGES for k in SHOWN)]]
    rounded = wide.round({c: 2 for c in wide.columns[2:]})
    lines += ["## Every setting (mean over models, % against each model's plain top-10)", "",
              md(rounded), ""]
    ok = rounded[wide[f"{names.VAL} Δndcg@10 %"] >= -budget]
    best = ok.loc[ok.groupby("method")[f"{names.VAL} Δild@10 %"].idxmax()]
    lines += [f"## Largest mean val ΔILD@10 within −{budget:g}% mean val NDCG@10, per method", "",
              md(best), ""]
    return "\n".join(lines)


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="explore.py caches, or CSVs of earlier runs to combine")
    parser.add_argument("--out", type=Path, required=True, help="prefix: writes <out>.csv, <out>-calibration.csv, .md")
    parser.add_argument("--n", type=int, default=50, help="candidates re-ranked per user")
    parser.add_argument("--lambdas", type=floats, default=floats("0.995,0.997,0.998,0.999"))
    parser.add_argument("--lambdas-calibrated", type=floats, default=floats("0.998,0.9985,0.999,0.9995"))
    parser.add_argument("--mus", type=floats, default=floats("0.01,0.015,0.02,0.03,0.05"))
    parser.add_argument("--swaps", type=int, default=5, help="local-search rounds after the greedy (0 = none)")
    parser.add_argument("--budget", type=float, default=2.0, help="% mean val NDCG@10 loss allowed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if all(path.suffix == ".csv" for path in args.inputs):  # combine runs made one model at a time
        frame = pd.concat([pd.read_csv(path) for path in args.inputs])
        calibs = [pd.read_csv(path.with_name(f"{path.stem}-calibration.csv")) for path in args.inputs]
        calib = pd.concat(calibs).drop_duplicates(subset=["model", "T"]).reset_index(drop=True)
    else:
        parts = [one_model(path, args) for path in args.inputs]
        frame, calib = pd.concat([p[0] for p in parts]), pd.concat([p[1] for p in parts])
    frame.to_csv(args.out.with_suffix(".csv"), index=False)
    calib.to_csv(args.out.with_name(f"{args.out.name}-calibration.csv"), index=False)
    models = frame.model.nunique()
    text = summary(frame, calib, args.budget)
    args.out.with_suffix(".md").write_text(f"# The same objective optimised three ways ({models} models)\n\n{text}")
    print(text)


if __name__ == "__main__":
    main()
