from __future__ import annotations

from pathlib import Path

from runhelpers import Run, compose_config, run_paths

from divrec import names
from divrec.pipeline import evaluate

ACCURACY = [names.HR, names.NDCG, names.MRR, names.MAP, names.PRECISION, names.RECALL, names.ITEM_COVERAGE]


def eval_with(tmp_path: Path, run: Run, *overrides: str) -> dict[str, float]:
    ckpt = run.run_dir / "checkpoints" / "best.ckpt"
    args = [f"ckpt_path={ckpt}", *run_paths(tmp_path / "eval", run.data_dir), "logger=none", *overrides]
    return evaluate(compose_config("eval", args), overrides=list(overrides))


def test_diversity_metrics_reach_metrics_json(tiny_run: Run) -> None:
    for name in (names.GINI, names.ENTROPY, names.NOVELTY, names.ILD, names.CATEGORY_COVERAGE, names.MISCALIBRATION):
        for k in (5, 10, 20):
            assert names.metric_key(names.TEST, name, k) in tiny_run.metrics
            assert names.metric_key(names.VAL, name, k) in tiny_run.metrics


def test_mmr_with_lambda_one_reproduces_the_plain_ranking(tmp_path: Path, tiny_run: Run) -> None:
    metrics = eval_with(tmp_path, tiny_run, "rerank=mmr", "rerank.lambda_=1.0")
    for name in [*ACCURACY, names.ILD, names.CATEGORY_COVERAGE]:
        key = names.metric_key(names.TEST, name, 10)
        assert abs(metrics[key] - tiny_run.metrics[key]) <= 1e-9, key


def test_diversifying_rerankers_raise_list_diversity(tmp_path: Path, tiny_run: Run) -> None:
    ild = names.metric_key(names.TEST, names.ILD, 10)
    for i, rerank in enumerate((["rerank=mmr", "rerank.lambda_=0.2"], ["rerank=dpp", "rerank.temperature=0.05"])):
        metrics = eval_with(tmp_path / str(i), tiny_run, *rerank)
        assert metrics[ild] > tiny_run.metrics[ild] + 0.01, rerank
