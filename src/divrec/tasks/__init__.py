"""Training objectives: each an ``Objective`` module, chosen by Hydra's ``task=`` group."""

from divrec.tasks.base import Objective
from divrec.tasks.cloze import Cloze
from divrec.tasks.ctr import PointwiseCTR
from divrec.tasks.next_item import NextItemBCE, NextItemCE, NextItemSampledSoftmax

__all__ = ["Cloze", "NextItemBCE", "NextItemCE", "NextItemSampledSoftmax", "Objective", "PointwiseCTR"]
