"""``tune.*`` rules in the style of ``divrec.validation`` (one line: key, value, allowed range, why, fix), checked
before any trial runs; and the refusal of any objective that is not a validation metric."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from divrec import names
from divrec.validation import ConfigError, Context, Integer, ListOf, Machine, Number, OneOf, Rule, check_rule

from .space import space_names, space_path

PRUNERS = ("asha", "median", "none")


@dataclass(frozen=True)
class SpaceName:
    """``tune.space``: a shipped space (``conf/tune/space/<name>.yaml``) or a path to a YAML file."""

    def problem(self, value: Any, ctx: Context) -> str | None:
        if not isinstance(value, str):
            return "not a space name"
        return None if space_path(value) is not None else "no such search space"

    def allowed(self, ctx: Context) -> str:
        return "one of " + "|".join(space_names()) + " (conf/tune/space/) or a path to a .yaml file"


@dataclass(frozen=True)
class ValMetric:
    """A validation metric key (``val/...``): trials are chosen on validation; test metrics never choose."""

    def problem(self, value: Any, ctx: Context) -> str | None:
        ok = isinstance(value, str) and value.startswith(f"{names.VAL}/") and len(value) > len(names.VAL) + 1
        if ok:
            return None
        if isinstance(value, str) and value.startswith(f"{names.TEST}/"):
            return "a test metric (the tuner never selects on test)"
        return "not a validation metric"

    def allowed(self, ctx: Context) -> str:
        return f"a validation metric key {names.VAL}/<metric>@<k>"


@dataclass(frozen=True)
class Text:
    """A non-empty string."""

    def problem(self, value: Any, ctx: Context) -> str | None:
        return None if isinstance(value, str) and value.strip() else "not a folder path"

    def allowed(self, ctx: Context) -> str:
        return "a folder path"


VAL_ONLY = "the tuner selects trials and checkpoints on validation only"
RULES: tuple[Rule, ...] = (
    Rule("tune.budget_min", Number(0, low_open=True), "wall-clock minutes of this invocation", "tune.budget_min=20"),
    Rule("tune.space", SpaceName(), "the search space", "tune.space=transformer"),
    Rule("tune.pruner", OneOf(PRUNERS), "how bad trials are stopped early", "tune.pruner=asha"),
    Rule("tune.out", Text(), "the study folder; null = outputs/tune/studies/<overrides>", "tune.out=null", True),
    Rule("tune.n_trials", Integer(1), "trials at most in this invocation; null = until the budget is spent",
         "tune.n_trials=null", True),
    Rule("tune.seed", Integer(0, 2**32 - 1), "TPE sampler seed (offset by the trials already stored)",
         "tune.seed=0"),
    Rule("tune.startup_trials", Integer(0), "random trials (the default one included) before TPE models them",
         "tune.startup_trials=4"),
    Rule("tune.asha.min_resource", Integer(1), "epochs before ASHA's first rung", "tune.asha.min_resource=2"),
    Rule("tune.asha.reduction_factor", Integer(2), "ASHA promotes the best 1/factor of a rung",
         "tune.asha.reduction_factor=3"),
    Rule("tune.median.startup_trials", Integer(0), "finished trials before the median pruner prunes",
         "tune.median.startup_trials=2"),
    Rule("tune.median.warmup_epochs", Integer(0), "epochs of a trial before it can be pruned",
         "tune.median.warmup_epochs=2"),
    Rule("tune.confirm.top_k", Integer(0), "the best trials retrained on more seeds beside the default; 0 = off",
         "tune.confirm.top_k=2"),
    Rule("tune.confirm.seeds", ListOf(Integer(0), min_len=0), "the seeds of the confirmation rounds",
         "tune.confirm.seeds=[43,44]"),
    Rule("tune.confirm.reserve", Number(0, 1, low_open=True, high_open=True),
         "the share of the budget kept for confirmation", "tune.confirm.reserve=0.25"),
    Rule("tune.confirm.margin_se", Number(0), "standard errors of gain a trial needs to replace the default",
         "tune.confirm.margin_se=1.0"),
    Rule("monitor", ValMetric(), VAL_ONLY, "monitor=val/ndcg@10"),
    Rule("callbacks.model_checkpoint.monitor", ValMetric(), VAL_ONLY, "callbacks.model_checkpoint.monitor=${monitor}"),
    Rule("callbacks.early_stopping.monitor", ValMetric(), VAL_ONLY, "callbacks.early_stopping.monitor=${monitor}"),
)  # fmt: skip


def check_tune(cfg: DictConfig, machine: Machine | None = None) -> None:
    """Raise ``ConfigError`` (one line) for the first bad ``tune.*`` value or a non-validation objective."""
    ctx = Context(cfg, machine if machine is not None else Machine.current())
    for rule in RULES:
        check_rule(rule, ctx)
    seed, seeds = cfg.get("seed"), list(cfg.tune.confirm.seeds)
    given = f"tune.confirm.seeds=[{','.join(map(str, seeds))}]"
    if len(set(seeds)) < len(seeds):
        raise ConfigError(f"{given}: a seed is repeated, so a round would count one seed twice; list distinct "
                          "seeds, e.g. tune.confirm.seeds=[43,44]")
    if seed in seeds:
        raise ConfigError(f"{given}: holds the trials' own seed={seed}, "
                          "so that round would repeat the study's values; choose other seeds, e.g. "
                          f"tune.confirm.seeds=[{seed + 1},{seed + 2}]")
