"""LF-DNN, late fusion as in MMSA: one SubNet per modality, concatenated, then a post-fusion MLP."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmaffect.models.base import AffectModel, Heads, ModelSpec, SubNet, mlp
from mmaffect.models.registry import register_model


@register_model("lf-dnn", description="late fusion: per-modality SubNets, concatenation, MLP")
class LateFusionDNN(AffectModel):
    def __init__(self, spec: ModelSpec, *, text_hidden: int = 128, audio_hidden: int = 32,
                 video_hidden: int = 32, dropout: float = 0.2, post_hidden: int = 64,
                 post_dropout: float = 0.2):
        super().__init__(spec)
        hidden = {"t": text_hidden, "a": audio_hidden, "v": video_hidden}
        self.encoders = nn.ModuleDict({m: SubNet(d, hidden[m], dropout) for m, d in spec.dims.items()})
        width = sum(hidden[m] for m in spec.dims)
        self.post = nn.Sequential(nn.Dropout(post_dropout), mlp(width, post_hidden, 2, post_dropout))
        self.heads = Heads(post_hidden, spec.heads)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        h = torch.cat([enc(batch[m]) for m, enc in self.encoders.items()], dim=-1)
        return self.heads(self.post(h))
