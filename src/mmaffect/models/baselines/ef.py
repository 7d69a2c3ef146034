"""Early fusion: concatenate the modalities' inputs, then one network.

``ef-mlp`` concatenates utterance vectors. ``ef-lstm`` concatenates per-step features and runs an
LSTM; modalities with different sequence lengths (unaligned data) are first resampled onto a common
time grid per sample (nearest step), which equals MMSA's EF-LSTM on word-aligned data.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from mmaffect.models.base import AffectModel, Heads, ModelSpec, mlp
from mmaffect.models.registry import register_model


@register_model("ef-mlp", description="early fusion: MLP on concatenated utterance vectors")
class EarlyFusionMLP(AffectModel):
    def __init__(self, spec: ModelSpec, *, hidden: int = 128, layers: int = 2, dropout: float = 0.3):
        super().__init__(spec)
        self.modalities = list(spec.dims)
        width = sum(spec.dims.values())
        self.body = nn.Sequential(nn.Dropout(dropout), mlp(width, hidden, layers, dropout))
        self.heads = Heads(hidden if layers else width, spec.heads)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.heads(self.body(torch.cat([batch[m] for m in self.modalities], dim=-1)))


def align_to_common_grid(seqs: list[Tensor], masks: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Resample each sample's sequences onto ``max_m len_m`` steps by nearest index and concatenate.

    Returns the concatenated ``(B, L, sum d_m)`` features and the common lengths ``(B,)``.
    """
    lengths = [m.sum(1) for m in masks]
    common = torch.stack(lengths).amax(0).clamp(min=1)
    steps = torch.arange(int(common.max()))
    parts = []
    for seq, length in zip(seqs, lengths, strict=True):
        source = (steps[None, :] * length[:, None]) // common[:, None]
        source = source.clamp(max=seq.shape[1] - 1)
        parts.append(torch.gather(seq, 1, source[..., None].expand(-1, -1, seq.shape[2])))
    return torch.cat(parts, dim=-1), common


@register_model("ef-lstm", description="early fusion: LSTM on concatenated per-step features")
class EarlyFusionLSTM(AffectModel):
    input_form = "sequence"

    def __init__(self, spec: ModelSpec, *, hidden: int = 64, dropout: float = 0.3, post_hidden: int = 64):
        super().__init__(spec)
        self.modalities = list(spec.dims)
        self.lstm = nn.LSTM(sum(spec.seq_dims[m] for m in self.modalities), hidden, batch_first=True)
        self.post = nn.Sequential(nn.Dropout(dropout), mlp(hidden, post_hidden, 1, dropout))
        self.heads = Heads(post_hidden, spec.heads)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x, lengths = align_to_common_grid([batch[f"{m}_seq"] for m in self.modalities],
                                          [batch[f"{m}_mask"] for m in self.modalities])
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.heads(self.post(h[-1]))
