"""Exact full-ranking evaluation metrics (leave-one-out, seen items excluded, pessimistic ties)."""

from divrec.metrics.ranking import (
    MAP,
    MRR,
    NDCG,
    RANK_METRICS,
    HitRate,
    ItemCoverage,
    Precision,
    RankingEvaluator,
    RankMetric,
    Recall,
    mask_scores,
    target_ranks,
    top_k,
)

__all__ = [
    "MAP",
    "MRR",
    "NDCG",
    "RANK_METRICS",
    "HitRate",
    "ItemCoverage",
    "Precision",
    "RankMetric",
    "RankingEvaluator",
    "Recall",
    "mask_scores",
    "target_ranks",
    "top_k",
]
