"""Context models over the utterances of a video or dialogue (issue 20).

All of them read dialogue batches (``needs = {"dialogues"}``; keys in :mod:`mmaffect.data.dataset`),
concatenate the utterance vectors of every modality per turn (early fusion) and return their heads
for the real turns in ``turn_mask`` order:

- ``bc-lstm`` (here): bidirectional LSTM over the turns (Poria et al. 2017).
- ``dialogue-rnn`` (:mod:`mmaffect.models.context_rnn`): speaker-aware global/party/emotion GRUs
  (Majumder et al. 2019), causal or bidirectional.
- ``turn-transformer`` (:mod:`mmaffect.models.context_transformer`): self-attention over turns with
  speaker embeddings, causal (online) or bidirectional (offline).

Every one has ``context=False``: the same modules and weights, but each turn is run as a dialogue of
one turn, so no information crosses turns. That variant is the no-context floor of the same encoder,
trained by the same command.

Every one (and ``compm``, :mod:`mmaffect.models.compm`) also takes ``spcl=w`` (default 0, off): SPCL's
prototype contrastive term on the features its heads read, weight ``w``, temperature
``spcl_temperature``, ``spcl_queue`` queued representations per class
(:mod:`mmaffect.models.blocks.prototypes`). The features are returned as ``"features"``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmaffect.models import compm, context_rnn, context_transformer  # noqa: F401  (registers the other context models)
from mmaffect.models.base import AffectModel, Heads, ModelSpec
from mmaffect.models.blocks.prototypes import prototype_contrast, spcl_terms
from mmaffect.models.context_common import one_turn_dialogues, turn_inputs
from mmaffect.models.registry import register_model


@register_model("bc-lstm", description="bc-LSTM: bidirectional LSTM over the utterance vectors of each "
                                       "video/dialogue (modalities concatenated; hierarchical=true: one per "
                                       "modality, then one over their fusion); batch = whole dialogues; "
                                       "context=false runs each turn alone",
                train_defaults={"batch_size": 4})
class BCLSTM(AffectModel):
    """``hierarchical=False`` is bc-LSTM's non-hierarchical framework: the modalities' vectors are
    concatenated per turn and one bidirectional LSTM reads them. ``hierarchical=True`` is its
    hierarchical framework (the one behind the paper's best numbers): a bidirectional LSTM per
    modality gives contextual unimodal vectors (a dense layer of ``hidden`` on its states), and the
    fusion LSTM reads their concatenation. The paper trains the two levels one after the other (the
    unimodal ones on the labels first, then the fusion on their frozen outputs); here they are trained
    together, end to end, by the one trainer."""

    needs = frozenset({"vectors", "dialogues"})

    def __init__(self, spec: ModelSpec, *, hidden: int = 64, post_hidden: int = 64, dropout: float = 0.3,
                 context: bool = True, hierarchical: bool = False, spcl: float = 0.0, spcl_temperature: float = 0.1,
                 spcl_queue: int = 64):
        super().__init__(spec)
        self.modalities = list(spec.dims)
        self.context = context
        self.unimodal = nn.ModuleDict({m: _UnimodalContext(spec.dims[m], hidden, dropout) for m in self.modalities}) \
            if hierarchical else None
        fused = hidden * len(self.modalities) if hierarchical else sum(spec.dims.values())
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(fused, hidden), nn.ReLU())
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.post = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, post_hidden), nn.ReLU(),
                                  nn.Dropout(dropout))
        self.heads = Heads(post_hidden, spec.heads)
        self.spcl = prototype_contrast(spec.heads, post_hidden, spcl, spcl_queue, spcl_temperature)

    @property
    def online(self) -> bool:
        """Whether a turn's output reads only that turn and earlier ones (see :mod:`mmaffect.conversation`)."""
        return not self.context

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch["turn_mask"]
        x = turn_inputs(batch, self.modalities)
        if not self.context:
            x, mask = one_turn_dialogues(x, mask)
        if self.unimodal is not None:
            parts = x.split([self.unimodal[m].width for m in self.modalities], dim=-1)
            x = torch.cat([self.unimodal[m](part, mask) for m, part in zip(self.modalities, parts, strict=True)], -1)
        context = over_turns(self.lstm, self.project(x), mask)
        features = self.post(context[mask])
        return {**self.heads(features), "features": features}

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return spcl_terms(self.spcl, outputs, batch)


class _UnimodalContext(nn.Module):
    """One modality's level of hierarchical bc-LSTM: dense layer, bidirectional LSTM over the turns,
    dense layer of ``hidden`` on its states (the contextual unimodal vector of each turn)."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.width = dim  # of its modality's slice of the turn inputs
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, hidden), nn.ReLU())
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.post = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, hidden), nn.ReLU())

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.post(over_turns(self.lstm, self.project(x), mask))


def over_turns(lstm: nn.LSTM, x: Tensor, mask: Tensor) -> Tensor:
    """Run ``lstm`` over the real turns of each dialogue only (padding never enters a state); the
    (D, T, out) result is zero at padded steps."""
    packed = pack_padded_sequence(x, mask.sum(1).cpu(), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=mask.shape[1])[0]
