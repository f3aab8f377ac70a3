"""Training objectives: each an ``Objective`` module, chosen by Hydra's ``task=`` group."""

from divrec.tasks.attributes import AssociatedAttributePrediction, MaskedAttributePrediction
from divrec.tasks.base import Objective, TaskConfigError
from divrec.tasks.cloze import Cloze
from divrec.tasks.contrastive import ContrastiveSequence
from divrec.tasks.ctr import PointwiseCTR
from divrec.tasks.finetune import FineTune
from divrec.tasks.next_item import NextItemBCE, NextItemCE, NextItemSampledSoftmax
from divrec.tasks.pretrain import Pretraining

__all__ = [
    "AssociatedAttributePrediction",
    "Cloze",
    "ContrastiveSequence",
    "FineTune",
    "MaskedAttributePrediction",
    "NextItemBCE",
    "NextItemCE",
    "NextItemSampledSoftmax",
    "Objective",
    "PointwiseCTR",
    "Pretraining",
    "TaskConfigError",
]
