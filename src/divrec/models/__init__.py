"""Pure-torch models (no Lightning here)."""

from divrec.models.backbone import BackboneConfig, ModelConfigError, TransformerBackbone

__all__ = ["BackboneConfig", "ModelConfigError", "TransformerBackbone"]
