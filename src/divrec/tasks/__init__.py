"""Training objectives: each an ``Objective`` module, chosen by Hydra's ``task=`` group."""

from divrec.tasks.attributes import AssociatedAttributePrediction, MaskedAttributePrediction
from divrec.tasks.base import Objective, TaskConfigError
from divrec.tasks.cloze import Cloze
from divrec.tasks.contrastive import ContrastiveSequence
from divrec.tasks.ctr import PointwiseCTR
from divrec.tasks.finetune import FineTune
from divrec.tasks.fitted import Fitted
from divrec.tasks.gbce import GBCE
from divrec.tasks.next_item import NextItemBCE, NextItemCE, NextItemSampledSoftmax
from divrec.tasks.pretrain import Pretraining
from divrec.tasks.samplers import NegativeSampler, PopularitySampler, UniformSampler

__all__ = [
    "GBCE",
    "AssociatedAttributePrediction",
    "Cloze",
    "ContrastiveSequence",
    "FineTune",
    "Fitted",
    "MaskedAttributePrediction",
    "NegativeSampler",
    "NextItemBCE",
    "NextItemCE",
    "NextItemSampledSoftmax",
    "Objective",
    "PointwiseCTR",
    "PopularitySampler",
    "Pretraining",
    "TaskConfigError",
    "UniformSampler",
]
