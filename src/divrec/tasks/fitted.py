"""``task=fitted``: the objective of closed-form baselines (``model=pop|itemknn|ease``).

There is nothing to train: the model fits itself in ``bind(data)`` and ranks with its own query
(``SequenceEncoder.encode_last``). Their YAMLs select this task, so ``divrec train model=ease`` needs no other
override; asking it for a training loss is an error.
"""

from __future__ import annotations

from torch import Tensor

from divrec.models import SequenceEncoder
from divrec.tasks.base import Objective, TaskConfigError


class Fitted(Objective):
    trains = False

    def loss(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        raise TaskConfigError(
            f"task=fitted has no training loss: {type(backbone).__name__} is fitted in closed form by bind(data)"
        )
