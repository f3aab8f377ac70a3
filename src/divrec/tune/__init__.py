"""``divrec tune``: an Optuna study (TPE, pruning, a wall-clock budget, SQLite resume) over one train config, chosen
on validation only, written as a ready ``experiment=`` YAML (``study``: the command; ``space``: search spaces;
``objective``: one trial; ``report``: tables, plot, best.yaml; ``checks``: the ``tune.*`` rules)."""

from divrec.tune.study import tune

__all__ = ["tune"]
