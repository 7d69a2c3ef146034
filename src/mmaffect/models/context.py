"""``bc-lstm``: bidirectional contextual LSTM over the utterances of a video or dialogue.

Poria et al. (2017), "Context-Dependent Sentiment Analysis in User-Generated Videos": an utterance's
sentiment depends on its neighbours, so a bidirectional LSTM runs over the utterance vectors of a
whole video (or dialogue) and a dense layer per turn predicts each utterance. Modalities are
concatenated per utterance (early fusion), as in the paper's simple variant. The model reads
dialogue batches (``needs = {"dialogues"}``; keys in :mod:`mmaffect.data.dataset`) and returns its
heads for the real turns in ``turn_mask`` order.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmaffect.models.base import AffectModel, Heads, ModelSpec
from mmaffect.models.registry import register_model


@register_model("bc-lstm", description="bc-LSTM: bidirectional LSTM over the utterance vectors of each "
                                       "video/dialogue (modalities concatenated); batch = whole dialogues",
                train_defaults={"batch_size": 4})
class BCLSTM(AffectModel):
    needs = frozenset({"vectors", "dialogues"})

    def __init__(self, spec: ModelSpec, *, hidden: int = 64, post_hidden: int = 64, dropout: float = 0.3):
        super().__init__(spec)
        self.modalities = list(spec.dims)
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(sum(spec.dims.values()), hidden), nn.ReLU())
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.post = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, post_hidden), nn.ReLU(),
                                  nn.Dropout(dropout))
        self.heads = Heads(post_hidden, spec.heads)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch["turn_mask"]
        x = self.project(torch.cat([batch[f"{m}_dlg"] for m in self.modalities], dim=-1))
        packed = pack_padded_sequence(x, mask.sum(1).cpu(), batch_first=True, enforce_sorted=False)
        context, _ = self.lstm(packed)
        context, _ = pad_packed_sequence(context, batch_first=True, total_length=mask.shape[1])
        return self.heads(self.post(context[mask]))
