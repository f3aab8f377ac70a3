"""Re-rankers over candidate lists: plain top-k, MMR, DPP (greedy MAP, sliding window), Steck's calibration
and xQuAD over categories.

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
    softmax_relevance,
    valid_mask,
)
from divrec.rerank.calibrated import Calibrated, calibrated_greedy
from divrec.rerank.dpp import DPP, dpp_greedy
from divrec.rerank.mmr import MMR, mmr_greedy
from divrec.rerank.similarity import ItemSimilarity, SimilarityRows, candidate_similarity
from divrec.rerank.xquad import XQuAD, xquad_greedy

__all__ = [
    "DPP",
    "MMR",
    "Calibrated",
    "ItemSimilarity",
    "NoRerank",
    "RerankContext",
    "Reranker",
    "SimilarityRows",
    "XQuAD",
    "calibrated_greedy",
    "candidate_similarity",
    "dpp_greedy",
    "list_ranks",
    "mmr_greedy",
    "normalize_relevance",
    "rerank_candidates",
    "rerank_lists",
    "softmax_relevance",
    "valid_mask",
    "xquad_greedy",
]
