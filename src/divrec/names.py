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
RATINGS = "ratings"  # (B, L) float ratings aligned with ITEMS (0 = padding); only for sources with ratings
TARGET_RATING = "target_rating"  # (B,) the held-out interaction's rating; only for sources with ratings
SEEN = "seen"  # (B, S) right-padded ids of every item to exclude from ranking (0 = none)
USER_INDEX = "user_index"  # (B,) internal user index of each row: per-user outputs, user features

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
RANK = "rank"  # per_user.parquet: the target's 1-based rank (test/rank); every rank metric is a function of it

# beyond-accuracy (diversity / novelty / calibration) metrics, see divrec.metrics.diversity
GINI = "gini"  # Gini index of item exposure in the top-K lists
ENTROPY = "entropy"  # Shannon entropy (bits) of item exposure
NOVELTY = "novelty"  # mean self-information -log2 p(i) of recommended items
AVG_POPULARITY = "avg_popularity"  # mean training count of recommended items
TAIL_SHARE = "tail_share"  # share of recommended items in the long tail
ILD = "ild"  # intra-list diversity, Jaccard distance of category sets
ILD_EMBEDDING = "ild_emb"  # intra-list diversity, cosine distance of item embeddings
CATEGORY_COVERAGE = "category_coverage"  # per-user share of the categories covered by the list
AUC = "auc"  # pointwise: area under the ROC curve of (user, candidate) click probabilities
LOGLOSS = "logloss"  # pointwise: mean binary cross-entropy of those probabilities
MISCALIBRATION = "miscalibration"  # Steck 2018 KL(p || q~) of history vs. list category distributions

TRAIN_TIME = "train_time_s"
EPOCHS = "epochs"
FITTED = "fitted"  # metrics.json prefix of what a model chose while fitting (fitted/weight_1: ensemble weights)
MONITOR = "val/ndcg@10"  # default model-selection metric; equals metric_key(VAL, NDCG, 10)


def metric_key(stage: str, name: str, k: int | None = None) -> str:
    """``metric_key("val", "ndcg", 10) == "val/ndcg@10"``; ``metric_key("train", "loss") == "train/loss"``."""
    return f"{stage}/{name}" if k is None else f"{stage}/{name}@{k}"


# --- run-folder files (written by every run; read by `divrec compare`) ------------------------------------------
METRICS_FILE = "metrics.json"  # flat {metric key: value} of the finished run
CONFIG_FILE = "config.yaml"  # the resolved run config
OVERRIDES_FILE = ".hydra/overrides.yaml"  # Hydra's record of the command-line overrides of the run
PER_USER_FILE = "per_user.parquet"  # one row per test user: USER_INDEX + every per-user test metric
STATUS_FILE = "status.json"  # {"status": RUNNING|COMPLETED|FAILED, "error": one line or null}
PROGRESS_FILE = "progress.json"  # sweep folder: jobs done / total and best so far
TIMELINE_FILE = "timeline.jsonl"  # one JSON row per validation epoch (callbacks.ValidationTimeline; conf/callbacks)
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
INCOMPLETE = "incomplete"  # `divrec compare`: a run folder that neither completed nor recorded a failure

# --- `divrec compare` outputs (in its --out folder) ---------------------------------------------------------------
COMPARE_RUNS_CSV = "runs.csv"  # one row per run: status, varying parameters, every metric, error
COMPARE_GROUPS_CSV = "groups.csv"  # one row per configuration (runs differing only by seed): mean and std
COMPARE_REPORT = "compare.md"  # the Markdown tables and the significance test
COMPARE_SIGNIFICANCE = "significance.json"  # the paired test between the best two configurations

# --- `divrec leaderboard` outputs (in its out= folder, beside runs/) ---------------------------------------------
LEADERBOARD_MD = "leaderboard.md"  # the table (one row per model, a column group per dataset), footnotes, failures
LEADERBOARD_CSV = "leaderboard.csv"  # the same numbers, one line per row
LEADERBOARD_PNG = "leaderboard.png"  # grouped bars: mean ± std test NDCG@10 per dataset


def part_loss(part: str) -> str:
    """Key of one pretraining objective's unweighted loss: ``part_loss("cloze") == "loss_cloze"``."""
    return f"{LOSS}_{part}"


LR_SCALE = "lr_scale"  # optimizer param-group key: factor on the configured learning rate (layer-wise decay)
BACKBONE_FILE = "backbone.pt"  # every training run writes its backbone (weights, item ids, config) for init_from=
INIT_MATCHED = "init_matched_items"  # metrics.json after init_from=: items whose embedding came from the checkpoint
INIT_FRESH = "init_fresh_items"  # dataset items absent from the checkpoint (fresh embeddings)
INIT_UNUSED = "init_unused_items"  # checkpoint items absent from the dataset
CONFIG_KEY = "divrec_config"  # where a checkpoint carries the resolved config of the run that wrote it

# --- explanations (divrec recommend explain=true): "|"-joined, strongest first, like CATEGORIES ----------------
BECAUSE_OF = "because_of"  # raw ids of the history items that weighted the recommended item most
BECAUSE_OF_TITLE = "because_of_title"  # their titles, where the dataset has them
BECAUSE_OF_WEIGHT = "because_of_weight"  # their gradient × input attribution shares
