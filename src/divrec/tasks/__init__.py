"""Training objectives: each an ``Objective`` module, chosen by Hydra's ``task=`` group."""

from divrec.tasks.base import Objective
from divrec.tasks.cloze import Cloze
from divrec.tasks.next_item import NextItemBCE, NextItemCE, NextItemSampledSoftmax
from divrec.tasks.samplers import NegativeSampler, PopularitySampler, UniformSampler

__all__ = [
    "Cloze",
    "NegativeSampler",
    "NextItemBCE",
    "NextItemCE",
    "NextItemSampledSoftmax",
    "Objective",
    "PopularitySampler",
    "UniformSampler",
]
