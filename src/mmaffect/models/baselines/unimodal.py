"""Single-modality MLPs (``text-mlp``, ``audio-mlp``, ``video-mlp``): the floor every fusion model must beat.

On small training sets (up to :data:`~mmaffect.models.registry.SMALL_TRAIN_ROWS` rows) the width
and the weight decay are chosen on the validation rows (:mod:`mmaffect.training.selection`): a fixed
256-unit MLP without decay over-fits a few hundred rows and then trails a linear model on the same
features. The candidates are compared on validation UA for label tasks. On larger sets the fixed
recipe below is used, which saves the grid's extra fits.
"""

from __future__ import annotations

from torch import Tensor, nn

from mmaffect.models.base import AffectModel, Heads, ModelSpec, mlp
from mmaffect.models.registry import register_model

SMALL_DATA_SEARCH = {"model_args.hidden": [64, 256], "train.weight_decay": [0.0, 1e-2, 1e-1, 1.0]}


@register_model("text-mlp", description="MLP on the text utterance vector", modalities=("t",), modality="t",
                search=SMALL_DATA_SEARCH)
@register_model("audio-mlp", description="MLP on the audio utterance vector", modalities=("a",), modality="a",
                search=SMALL_DATA_SEARCH)
@register_model("video-mlp", description="MLP on the video utterance vector", modalities=("v",), modality="v",
                search=SMALL_DATA_SEARCH)
class UnimodalMLP(AffectModel):
    def __init__(self, spec: ModelSpec, *, modality: str, hidden: int = 256, layers: int = 1,
                 dropout: float = 0.3):
        super().__init__(spec)
        self.modality = modality
        self.body = nn.Sequential(nn.Dropout(dropout), mlp(spec.dims[modality], hidden, layers, dropout))
        self.heads = Heads(hidden if layers else spec.dims[modality], spec.heads)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.heads(self.body(batch[self.modality]))
