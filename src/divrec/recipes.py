"""Default training recipes per dataset *size class*, not per dataset: ``recipe=auto`` reads the class off the loaded
training data, so an unseen dataset gets its class's recipe with no per-dataset tuning.

The rule (``CLASSES``, the one place it is defined): the class is the first whose ``max_median`` is >= the median
number of training items per user (the leave-one-out training part: each user's sequence minus its validation and
test items). ``short``: median <= 10 (sparse e-commerce logs); ``long``: median > 10 (dense logs). The threshold was
chosen on validation: SASRec with each class's recipe, seed 0 (``experiments/recipes/``): Last.fm (median 17) is better
with ``long`` (val NDCG@10 0.0483 vs 0.0356), Musical Instruments (median 4) with ``short`` (0.0695 vs 0.0691), Beauty
(median 4) with ``short`` (its recipe was chosen on validation); any threshold in [4, 17) agrees with all three, 10
is a round number inside that range. Measured on the
shipped datasets (``ProcessedData.train_offsets``, default preprocessing and split):

============================  =======  ======  ======  ======  =====
dataset                       users    median  mean    p75     class
============================  =======  ======  ======  ======  =====
amazon-beauty                 22,363   4       6.9     7       short
amazon-musical-instruments    1,429    4       5.2     6       short
lastfm (S3-Rec)               1,090    17      46.2    48      long
ml-100k                       943      63      104.0   146     long
synthetic (tests' default)    1,000    10      12.8    17      short (10 <= 10)
============================  =======  ======  ======  ======  =====

The values: ``conf/recipes/<class>.yaml``, a mapping model option -> {dotted key: value}; the model option is read off
``model._target_`` (matched to the conf/model YAMLs, ``model_options``), else Hydra's ``runtime.choices.model``; an
unknown model gets no recipe.
Precedence: a recipe value is applied only where the command line did not set that key (Hydra's task overrides, or
the ``overrides`` a caller of ``pipeline.train`` passes) and only when no ``experiment=`` is selected (an experiment
is a hand-written recipe and wins entirely). ``recipe=none`` applies nothing; ``recipe=short|long`` forces a class.
The effective values and ``recipe_applied: {class, median_train_length, model, values}`` go into the run's
config.yaml; ``divrec eval`` / ``recommend`` reuse that stored config and never apply a recipe again.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from divrec.configs import config_dir
from divrec.data.types import ProcessedData

log = logging.getLogger(__name__)
KEY = "recipe"  # the config key: auto | none | <class>
RECORD = "recipe_applied"  # what a run records in its config.yaml
AUTO, NONE = "auto", "none"
TRAIN_CONFIG = "train"  # recipes apply to `divrec train` (and pipeline.train called from Python)
RECIPES_DIR = "recipes"  # conf/recipes/<class>.yaml (not conf/recipe/: a config group named `recipe` would
# take over the `recipe=` override)


@dataclass(frozen=True)
class SizeClass:
    """A dataset size class: datasets whose median training items per user is <= ``max_median``."""

    name: str
    max_median: float
    about: str


CLASSES: tuple[SizeClass, ...] = (
    SizeClass("short", 10.0, "sparse logs, e.g. Amazon Beauty (median 4 training items per user)"),
    SizeClass("long", math.inf, "dense logs, e.g. MovieLens-100K (median 63), Last.fm (17)"),
)
CHOICES: tuple[str, ...] = (AUTO, NONE, *(c.name for c in CLASSES))

def size_class(median: float) -> str:
    """The class of a dataset whose median training items per user is ``median``."""
    return next(c.name for c in CLASSES if median <= c.max_median)


def median_train_length(data: ProcessedData) -> float:
    """Median number of training items per user (users with an empty training sequence count as 0)."""
    lengths = np.diff(data.train_offsets)
    return float(np.median(lengths)) if len(lengths) else 0.0


@functools.cache
def model_options() -> tuple[tuple[str, str, bool], ...]:
    """(option, ``_target_``, causal) of every conf/model/*.yaml, read off the YAMLs themselves (nothing to edit
    here when a model is added); a YAML is either the model node or a ``# @package _global_`` file with ``model:``."""
    options = []
    for path in sorted((config_dir() / "model").glob("*.yaml")):
        node = OmegaConf.load(path)
        node = node.get("model", node) if "_target_" not in node else node
        if isinstance(node, DictConfig) and "_target_" in node:
            options.append((path.stem, str(node["_target_"]), bool(node.get("causal", True))))
    return tuple(options)


def model_name(cfg: DictConfig, choices: dict[str, Any]) -> str | None:
    """The model option of ``cfg``: the conf/model option with its ``_target_`` (options sharing one, like
    sasrec / bert4rec, told apart by ``causal``), else Hydra's choice of the model group."""
    target = OmegaConf.select(cfg, "model._target_", default=None)
    matches = [(name, causal) for name, t, causal in model_options() if t == target]
    if len(matches) > 1:
        causal = bool(OmegaConf.select(cfg, "model.causal", default=True))
        matches = [m for m in matches if m[1] == causal]
    if len(matches) == 1:
        return matches[0][0]
    choice = choices.get("model")
    return str(choice) if choice else None


def class_values(name: str, model: str | None) -> dict[str, Any]:
    """The recipe of class ``name`` for ``model`` (``conf/recipes/<name>.yaml``); {} for a model it does not list."""
    table = OmegaConf.load(config_dir() / RECIPES_DIR / f"{name}.yaml")
    entry = table.get(model) if model else None
    return dict(OmegaConf.to_container(entry)) if isinstance(entry, DictConfig) else {}  # type: ignore[arg-type]


@dataclass(frozen=True)
class CommandLine:
    """What the invocation set: its override strings, the Hydra group choices and the config it composed."""

    overrides: tuple[str, ...]
    choices: dict[str, Any]
    config_name: str | None

    @property
    def keys(self) -> set[str]:
        return {o.split("=", 1)[0].lstrip("+~") for o in self.overrides}

    @property
    def experiment(self) -> str | None:
        chosen = self.choices.get("experiment")
        given = [o.split("=", 1)[1] for o in self.overrides if o.split("=", 1)[0].lstrip("+~") == "experiment"]
        return str(chosen) if chosen else (given[-1] if given and given[-1] != "null" else None)


def command_line(cfg: DictConfig, overrides: Sequence[str] | None) -> CommandLine:
    """The invocation's facts: from Hydra's runtime (``@hydra.main``), else ``cfg.hydra`` (composed with the Hydra
    node), else only ``overrides`` (the compose API); ``overrides`` given replace Hydra's task overrides."""
    hydra_cfg: Any = HydraConfig.get() if HydraConfig.initialized() else cfg.get("hydra")
    if hydra_cfg is None:
        return CommandLine(tuple(overrides or ()), {}, None)
    task = overrides if overrides is not None else list(hydra_cfg.overrides.task)
    choices = OmegaConf.to_container(hydra_cfg.runtime.choices) if hydra_cfg.runtime.choices else {}
    return CommandLine(tuple(task), dict(choices), hydra_cfg.job.get("config_name"))  # type: ignore[arg-type]


def user_set(key: str, given: set[str], swapped: set[str]) -> bool:
    """Whether the command line set ``key``: the key itself, a dotted node above it or a key below it, or the group
    whose class the recipe swaps (``optim=adam`` keeps every ``optim.*`` value of a recipe that sets optim._target_)."""
    for other in given:
        if other == key or other.startswith(key + "."):
            return True
        if key.startswith(other + ".") and ("." in other or other in swapped):
            return True
    return False


def load_stats(cfg: DictConfig) -> float:
    """Median training length of ``cfg.data``, through the datamodule's (cached) load."""
    from hydra.utils import instantiate

    return median_train_length(instantiate(cfg.data).load())


def resolve_class(cfg: DictConfig, choice: str) -> tuple[str, float | None]:
    """The class to apply (``choice`` forces one; ``auto`` measures the data) and the measured median (None when
    the class was forced: the data is not read)."""
    if choice != AUTO:
        return choice, None
    median = load_stats(cfg)
    return size_class(median), median


def skip_reason(cfg: DictConfig, line: CommandLine) -> str | None:
    """Why no recipe applies to this invocation (None = it applies)."""
    choice = str(cfg.get(KEY) or NONE)
    if choice == NONE:
        return "recipe=none"
    if cfg.get(RECORD) is not None:
        return "the config already holds an applied recipe"
    if line.experiment:
        return f"experiment={line.experiment} is a hand-written recipe and wins entirely"
    if line.config_name not in (None, TRAIN_CONFIG):
        return f"divrec {line.config_name} uses the config as given (recipes apply to divrec train)"
    return None


def apply_recipe(cfg: DictConfig, overrides: Sequence[str] | None = None) -> DictConfig:
    """``cfg`` with its size class's recipe applied (a copy; ``cfg`` itself when nothing applies). ``overrides``:
    the command line's ``key=value`` strings (None = Hydra's task overrides where Hydra runs, else none)."""
    line = command_line(cfg, overrides)
    reason = skip_reason(cfg, line)
    if reason is not None:
        if str(cfg.get(KEY) or NONE) != NONE:
            log.info("recipe: not applied (%s)", reason)
        return cfg
    model = model_name(cfg, line.choices)
    if model is None or not any(class_values(c.name, model) for c in CLASSES):
        log.info("recipe: none for model %s (%s has no entry for it)", model or "unknown", RECIPES_DIR)
        return cfg
    name, median = resolve_class(cfg, str(cfg.get(KEY)))
    recipe = class_values(name, model)
    swapped = {k.rsplit(".", 1)[0] for k in recipe if k.endswith("._target_")}
    given = line.keys
    applied = {k: v for k, v in recipe.items() if not user_set(k, given, swapped)}
    kept = sorted(set(recipe) - set(applied))
    cfg = cfg.copy()
    with open_dict(cfg):
        for key, value in applied.items():
            OmegaConf.update(cfg, key, value, force_add=True)
        cfg[RECORD] = {"class": name, "median_train_length": median, "model": model, "values": applied,
                       "kept_from_command_line": kept}
    measured = "forced" if median is None else f"median train length {median:g}"
    shown = " ".join(f"{k}={v}" for k, v in applied.items()) or "(no change)"
    log.info("recipe: %s (%s) -> %s%s", name, measured, shown, f"; kept from the command line: {kept}" if kept else "")
    return cfg
