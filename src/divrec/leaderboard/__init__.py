"""``divrec leaderboard``: every (dataset, model, seed) cell through Hydra multiruns of ``divrec train``
(resumable), then one table, one CSV and one PNG: test NDCG@10 mean ± std over seeds, a paired test against a
baseline model, seconds per epoch, wall time and each row's protocol (``experiments/leaderboard/README.md``)."""

from divrec.leaderboard.cells import CONTROLS, Cell, LeaderboardError, Plan, Row, cell_state, pending_groups
from divrec.leaderboard.render import write_report

__all__ = ["CONTROLS", "Cell", "LeaderboardError", "Plan", "Row", "cell_state", "pending_groups", "write_report"]
