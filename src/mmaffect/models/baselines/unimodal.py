"""Single-modality MLPs (``text-mlp``, ``audio-mlp``, ``video-mlp``): the floor every fusion model must beat."""

from __future__ import annotations

from torch import Tensor, nn

from mmaffect.models.base import AffectModel, Heads, ModelSpec, mlp
from mmaffect.models.registry import register_model


@register_model("text-mlp", description="MLP on the text utterance vector", modalities=("t",), modality="t")
@register_model("audio-mlp", description="MLP on the audio utterance vector", modalities=("a",), modality="a")
@register_model("video-mlp", description="MLP on the video utterance vector", modalities=("v",), modality="v")
class UnimodalMLP(AffectModel):
    def __init__(self, spec: ModelSpec, *, modality: str, hidden: int = 256, layers: int = 1,
                 dropout: float = 0.3):
        super().__init__(spec)
        self.modality = modality
        self.body = nn.Sequential(nn.Dropout(dropout), mlp(spec.dims[modality], hidden, layers, dropout))
        self.heads = Heads(hidden if layers else spec.dims[modality], spec.heads)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.heads(self.body(batch[self.modality]))
