"""Self-supervised pretraining: a weighted sum of objectives, each part's loss logged on its own.

    loss = Σ_p w_p · loss_p        (parts with weight 0 / null, or a null objective, are not built nor computed)

Configured as ``task.parts.<name> = {weight: w, objective: {_target_: …}}`` (conf/task/pretrain.yaml); TensorBoard
shows ``train/loss`` (the weighted total) and ``train/loss_<name>`` (each part, unweighted).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from divrec import names
from divrec.data.types import ProcessedData
from divrec.models import SequenceEncoder
from divrec.tasks.base import Objective, TaskConfigError


def _enabled_parts(parts: Mapping[str, Any]) -> tuple[dict[str, Objective], dict[str, float]]:
    objectives: dict[str, Objective] = {}
    weights: dict[str, float] = {}
    for name, part in parts.items():
        if part is None or part.get("objective") is None or not part.get("weight"):
            continue
        weight, objective = float(part["weight"]), part["objective"]
        if weight < 0:
            raise TaskConfigError(f"task.parts.{name}.weight={weight} must be >= 0 (0 or null disables the part)")
        if not isinstance(objective, Objective):
            raise TaskConfigError(
                f"task.parts.{name}.objective must build an Objective (got {type(objective).__name__}); "
                "give it a _target_ such as divrec.tasks.Cloze"
            )
        objectives[name], weights[name] = objective, weight
    if not objectives:
        raise TaskConfigError(
            "task=pretrain has no enabled part: every weight is 0/null; set task.parts.<name>.weight > 0"
        )
    return objectives, weights


class Pretraining(Objective):
    """Weighted sum of objectives sharing one backbone. Evaluation ranks with the query of part ``query_from``
    (default: ``cloze`` when enabled, else the first enabled part), so val/test ranking metrics stay meaningful
    for model selection when masked-item modeling is among the parts."""

    def __init__(self, parts: Mapping[str, Any], query_from: str | None = None) -> None:
        super().__init__()
        objectives, self.weights = _enabled_parts(parts)
        self.parts = nn.ModuleDict(objectives)
        needs = {p.requires_causal for p in objectives.values()} - {None}
        if len(needs) > 1:
            raise TaskConfigError(
                "task=pretrain mixes parts that need a causal model with parts that need a bidirectional one; "
                "disable one of them (weight 0)"
            )
        self.requires_causal = needs.pop() if needs else None
        self.requires_mask_token = any(p.requires_mask_token for p in objectives.values())
        default = "cloze" if "cloze" in objectives else next(iter(objectives))
        self.query_from = query_from or default
        if self.query_from not in objectives:
            raise TaskConfigError(
                f"task.query_from={self.query_from!r} is not an enabled part; choose one of {sorted(objectives)}"
            )

    def bind(self, backbone: SequenceEncoder, data: ProcessedData) -> None:
        for part in self.parts.values():
            part.bind(backbone, data)

    def loss(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        total: Tensor | None = None
        for name, part in self.parts.items():
            value = part.loss(backbone, batch)[names.LOSS]
            out[names.part_loss(name)] = value.detach()
            total = self.weights[name] * value if total is None else total + self.weights[name] * value
        assert total is not None  # at least one part, checked in __init__
        return {names.LOSS: total, **out}

    def query(self, backbone: SequenceEncoder, history: Tensor, users: Tensor | None = None) -> Tensor:
        return self.parts[self.query_from].query(backbone, history, users)
