"""Models: the common interface, the registry and the registered models."""

from mmaffect.models.base import AffectModel, Heads, ModelSpec
from mmaffect.models.registry import MODELS, create_model, list_models, model_info, register_model

__all__ = ["AffectModel", "Heads", "ModelSpec", "MODELS", "create_model", "list_models", "model_info",
           "register_model"]
