"""Fine-tuning a (warm-started) backbone: any objective, plus freezing and layer-wise learning-rate decay.

The warm start itself is ``init_from=<run>/backbone.pt`` (a top-level key, usable with every task); this objective
decides how the loaded weights are trained:

- ``freeze_embeddings``: the embedding layer (item table, position table and its LayerNorm) is not trained. The
  item table is also the output layer, so items new to the checkpoint keep their random initialisation.
- ``freeze_blocks=n``: the first n Transformer blocks are not trained.
- ``layer_decay=d``: layer l of the stack (0 = embedding layer, 1..N = blocks, N + 1 = final norm and any head)
  trains at lr · d^(N + 1 - l) (Clark et al., ELECTRA 2020); 1 = one learning rate everywhere.

Frozen parameters get ``requires_grad=False`` and are left out of the optimizer, so no update (nor weight decay)
touches them.
"""

from __future__ import annotations

from torch import Tensor, nn

from divrec import names
from divrec.data.types import ProcessedData
from divrec.models import SequenceEncoder
from divrec.tasks.base import Objective, ParamGroups, TaskConfigError


def layer_of_parameters(backbone: SequenceEncoder) -> dict[int, int]:
    """id(parameter) → layer index: 0 = embedding layer, i + 1 = block i (``layer_groups``). Parameters not
    listed are the top."""
    return {id(p): i for i, group in enumerate(backbone.layer_groups()) for m in group for p in m.parameters()}


class FineTune(Objective):
    """Delegates loss and query to ``objective``; adds freezing and layer-wise learning rates."""

    def __init__(
        self,
        objective: Objective,
        freeze_embeddings: bool = False,
        freeze_blocks: int = 0,
        layer_decay: float = 1.0,
    ) -> None:
        super().__init__()
        if freeze_blocks < 0:
            raise TaskConfigError(f"task.freeze_blocks={freeze_blocks} must be >= 0")
        if not 0.0 < layer_decay <= 1.0:
            raise TaskConfigError(f"task.layer_decay={layer_decay} must be in (0, 1] (1 = no decay)")
        self.objective = objective
        self.requires_causal = objective.requires_causal
        self.requires_mask_token, self.trains = objective.requires_mask_token, objective.trains
        self.prefix_windows = objective.prefix_windows
        self.freeze_embeddings, self.freeze_blocks, self.layer_decay = freeze_embeddings, freeze_blocks, layer_decay

    def bind(self, backbone: SequenceEncoder, data: ProcessedData) -> None:
        self.objective.bind(backbone, data)
        groups = backbone.layer_groups()
        n_blocks = len(groups) - 1
        if self.freeze_blocks > n_blocks:
            raise TaskConfigError(
                f"task.freeze_blocks={self.freeze_blocks} exceeds the model's {n_blocks} blocks "
                f"(model.n_layers); choose 0..{n_blocks}"
            )
        frozen = list(groups[0]) if self.freeze_embeddings else []
        frozen += [m for group in groups[1 : self.freeze_blocks + 1] for m in group]
        for module in frozen:
            module.requires_grad_(False)

    def parameter_groups(self, backbone: SequenceEncoder, module: nn.Module) -> ParamGroups:
        layers, top = layer_of_parameters(backbone), len(backbone.layer_groups())
        by_layer: dict[int, list[nn.Parameter]] = {}
        for p in module.parameters():
            if p.requires_grad:
                by_layer.setdefault(layers.get(id(p), top), []).append(p)
        return [
            {"params": params, names.LR_SCALE: self.layer_decay ** (top - layer)}
            for layer, params in sorted(by_layer.items())
        ]

    def loss(self, backbone: SequenceEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.objective.loss(backbone, batch)

    def query(self, backbone: SequenceEncoder, history: Tensor, users: Tensor | None = None) -> Tensor:
        return self.objective.query(backbone, history, users)
