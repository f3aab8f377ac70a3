"""Canonical names, defined once: columns, batch keys, stage names and metric keys.

Everything else in divrec imports these constants instead of repeating the string literals.
"""

from __future__ import annotations

# --- interaction-table columns (raw loaders produce these) -------------------------------------
USER = "user_id"
ITEM = "item_id"
TIME = "timestamp"
RATING = "rating"
CATEGORIES = "categories"  # item feature: list of category names/ids per item
TITLE = "title"  # item feature: human-readable title, where the dataset has one

# --- batch keys (datamodule → LightningModule) -------------------------------------------------
ITEMS = "items"  # (B, L) left-padded item ids, 0 = padding; training windows
HISTORY = "history"  # (B, L) left-padded item ids, the most recent L items before the target
TARGET = "target"  # (B,) the held-out item id
SEEN = "seen"  # (B, S) right-padded ids of every item to exclude from ranking (0 = none)
USER_INDEX = "user_index"  # (B,) internal user index, for per-user outputs

# --- stages ------------------------------------------------------------------------------------
TRAIN = "train"
VAL = "val"
TEST = "test"

# --- metric names ------------------------------------------------------------------------------
HR = "hr"
NDCG = "ndcg"
MRR = "mrr"
MAP = "map"
PRECISION = "precision"
RECALL = "recall"
ITEM_COVERAGE = "item_coverage"
LOSS = "loss"

# beyond-accuracy (diversity / novelty / calibration) metrics, see divrec.metrics.diversity
GINI = "gini"  # Gini index of item exposure in the top-K lists
ENTROPY = "entropy"  # Shannon entropy (bits) of item exposure
NOVELTY = "novelty"  # mean self-information -log2 p(i) of recommended items
AVG_POPULARITY = "avg_popularity"  # mean training count of recommended items
TAIL_SHARE = "tail_share"  # share of recommended items in the long tail
ILD = "ild"  # intra-list diversity, Jaccard distance of category sets
ILD_EMBEDDING = "ild_emb"  # intra-list diversity, cosine distance of item embeddings
CATEGORY_COVERAGE = "category_coverage"  # per-user share of the categories covered by the list
MISCALIBRATION = "miscalibration"  # Steck 2018 KL(p || q~) of history vs. list category distributions

TRAIN_TIME = "train_time_s"
EPOCHS = "epochs"
MONITOR = "val/ndcg@10"  # default model-selection metric; equals metric_key(VAL, NDCG, 10)


def metric_key(stage: str, name: str, k: int | None = None) -> str:
    """``metric_key("val", "ndcg", 10) == "val/ndcg@10"``; ``metric_key("train", "loss") == "train/loss"``."""
    return f"{stage}/{name}" if k is None else f"{stage}/{name}@{k}"


CONFIG_KEY = "divrec_config"  # where a checkpoint carries the resolved config of the run that wrote it

# --- explanations (divrec recommend explain=true): "|"-joined, strongest first, like CATEGORIES ----------------
BECAUSE_OF = "because_of"  # raw ids of the history items that weighted the recommended item most
BECAUSE_OF_TITLE = "because_of_title"  # their titles, where the dataset has them
BECAUSE_OF_WEIGHT = "because_of_weight"  # their gradient × input attribution shares
