"""Pure-torch models (no Lightning here). The contract every model follows: ``divrec.models.contract``.

ADDING A MODEL? Read ``src/divrec/models/ADDING_A_MODEL.md`` first: which files you may write (one module, one
YAML, one test file: no other file is edited), the contract, the YAML form, the tests expected.
"""

from divrec.models.backbone import BackboneConfig, TransformerBackbone
from divrec.models.contract import (
    AttentionMapper,
    ModelConfigError,
    ModelSpec,
    SequenceEncoder,
    check_model_config,
    device_of,
)
from divrec.models.encoder import Encoder, EncoderConfig
from divrec.models.tower import ItemTower

__all__ = [
    "AttentionMapper",
    "BackboneConfig",
    "Encoder",
    "EncoderConfig",
    "ItemTower",
    "ModelConfigError",
    "ModelSpec",
    "SequenceEncoder",
    "TransformerBackbone",
    "check_model_config",
    "device_of",
]
