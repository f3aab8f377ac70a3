"""The feedback update loop: serve, collect a window of interactions, update the model, evaluate the next window."""

from divrec.feedback.loop import FeedbackRunner, run_feedback
from divrec.feedback.strategies import FullRetrain, Incremental, NoUpdate, UpdateStrategy

__all__ = ["FeedbackRunner", "FullRetrain", "Incremental", "NoUpdate", "UpdateStrategy", "run_feedback"]
