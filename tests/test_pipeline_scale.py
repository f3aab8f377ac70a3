"""Million-item switches end to end: chunked evaluation gives every metric of the plain one; chunked CE and
log-Q sampled softmax train through Hydra."""

from __future__ import annotations

from pathlib import Path

import pytest
from runhelpers import TINY_TRAIN, Run, compose_config, run_paths

from divrec import names
from divrec.pipeline import evaluate, train


def eval_with(tmp_path: Path, run: Run, *overrides: str) -> dict[str, float]:
    ckpt = run.run_dir / "checkpoints" / "best.ckpt"
    args = [f"ckpt_path={ckpt}", *run_paths(tmp_path, run.data_dir), "logger=none", *overrides]
    return evaluate(compose_config("eval", args), overrides=list(overrides))


def metric_values(metrics: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if "/" in key}


SOFTMAX_MMR = ["rerank=mmr", "rerank.lambda_=0.999", "rerank.relevance=softmax", "rerank.aggregate=sum"]


@pytest.mark.parametrize(
    "rerank",
    [
        [],
        ["rerank=mmr", "rerank.lambda_=0.5", "metrics.rerank_candidates=25"],
        [*SOFTMAX_MMR, "metrics.rerank_candidates=25"],  # needs the full-catalog log-normaliser from the chunks
    ],
)
def test_chunked_evaluation_gives_every_metric_of_the_plain_one(tmp_path: Path, tiny_run: Run, rerank: list) -> None:
    plain = metric_values(eval_with(tmp_path / "plain", tiny_run, *rerank))
    chunked = metric_values(eval_with(tmp_path / "chunked", tiny_run, "metrics.eval_chunk_size=7", *rerank))
    assert len(plain) > 50  # accuracy and diversity metrics of val and test
    assert chunked == plain


@pytest.mark.parametrize(
    "task", [["task.chunk_size=9"], ["task=sampled_softmax", "task/sampler=popularity", "task.n_negatives=16"]]
)
def test_large_catalog_objectives_train_through_hydra(tmp_path: Path, task: list) -> None:
    overrides = [*TINY_TRAIN, "trainer.max_epochs=1", "logger=none", "metrics.eval_chunk_size=11", *task]
    metrics = train(compose_config("train", [*overrides, *run_paths(tmp_path / "out", tmp_path / "data")]))
    assert 0.0 <= metrics[names.metric_key(names.TEST, names.NDCG, 10)] <= 1.0 and metrics[names.EPOCHS] == 1
