"""Re-rankers over candidate lists: plain top-k, MMR, DPP (greedy MAP, sliding window) and Steck's calibration.

Interface: ``reranker(scores (B, N), candidates (B, N), k, context) -> (B, k)`` item ids; see ``divrec.rerank.base``.
"""

from divrec.rerank.base import (
    NoRerank,
    RerankContext,
    Reranker,
    list_ranks,
    normalize_relevance,
    rerank_candidates,
    rerank_lists,
    valid_mask,
)
from divrec.rerank.calibrated import Calibrated, calibrated_greedy
from divrec.rerank.dpp import DPP, dpp_greedy
from divrec.rerank.mmr import MMR, mmr_greedy
from divrec.rerank.similarity import ItemSimilarity, SimilarityRows, candidate_similarity

__all__ = [
    "DPP",
    "MMR",
    "Calibrated",
    "ItemSimilarity",
    "NoRerank",
    "RerankContext",
    "Reranker",
    "SimilarityRows",
    "calibrated_greedy",
    "candidate_similarity",
    "dpp_greedy",
    "list_ranks",
    "mmr_greedy",
    "normalize_relevance",
    "rerank_candidates",
    "rerank_lists",
    "valid_mask",
]
