"""``turn-transformer``: self-attention over the turns of a dialogue, with speaker embeddings.

Each turn's utterance vector is projected, a learned embedding of its speaker (codes numbered per
dialogue in order of first appearance, so "the first speaker", "the second", ...) and a sinusoidal
turn position are added, and a pre-norm transformer encoder mixes the turns. ``causal=True`` masks
later turns (online use: turn k reads turns 1..k only); ``causal=False`` attends both ways (offline).
``context=False`` runs every turn as a dialogue of one turn with neither speaker nor position (they
describe the dialogue, not the utterance): the same weights with no cross-turn information.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mmaffect.models.base import AffectModel, Heads, ModelSpec
from mmaffect.models.blocks.prototypes import prototype_contrast, spcl_terms
from mmaffect.models.context_common import one_turn_dialogues, speaker_grid, turn_inputs
from mmaffect.models.registry import register_model


def sinusoidal_positions(turns: int, width: int, device: torch.device) -> Tensor:
    """(turns, width) sine/cosine turn positions (Vaswani et al.): no maximum dialogue length."""
    position = torch.arange(turns, device=device, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(turns, width, device=device)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)[:, : width // 2]
    return table


@register_model("turn-transformer", description="transformer over the turns of each dialogue with speaker "
                                                "embeddings; causal=true attends to past turns only; "
                                                "context=false runs each turn alone",
                train_defaults={"batch_size": 8})
class TurnTransformer(AffectModel):
    needs = frozenset({"vectors", "dialogues"})

    def __init__(self, spec: ModelSpec, *, hidden: int = 128, layers: int = 2, attention_heads: int = 4,
                 dropout: float = 0.3, causal: bool = False, context: bool = True, max_speakers: int = 16,
                 spcl: float = 0.0, spcl_temperature: float = 0.1, spcl_queue: int = 64):
        super().__init__(spec)
        self.modalities = list(spec.dims)
        self.causal = causal
        self.context = context
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(sum(spec.dims.values()), hidden))
        self.speaker = nn.Embedding(max_speakers, hidden)
        layer = nn.TransformerEncoderLayer(hidden, attention_heads, 2 * hidden, dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.heads = Heads(hidden, spec.heads)
        self.spcl = prototype_contrast(spec.heads, hidden, spcl, spcl_queue, spcl_temperature)

    @property
    def online(self) -> bool:
        """Whether a turn's output reads only that turn and earlier ones (see :mod:`mmaffect.conversation`)."""
        return self.causal or not self.context

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch["turn_mask"]
        x = self.project(turn_inputs(batch, self.modalities))
        if self.context:
            # speakers beyond the table share its last row (MELD has at most 9 per dialogue)
            speakers = speaker_grid(batch).clamp(max=self.speaker.num_embeddings - 1)
            x = x + self.speaker(speakers) + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
        else:
            x, mask = one_turn_dialogues(x, mask)
        turns = x.shape[1]
        later = torch.triu(torch.ones(turns, turns, dtype=torch.bool, device=x.device), 1) if self.causal else None
        h = self.encoder(x, mask=later, src_key_padding_mask=~mask)
        features = self.norm(h[mask])
        return {**self.heads(features), "features": features}

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return spcl_terms(self.spcl, outputs, batch)
