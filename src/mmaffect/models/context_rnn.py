"""``dialogue-rnn``: speaker-aware recurrent context model (after DialogueRNN, Majumder et al. 2019).

Why three states: a dialogue's emotion flow depends on who speaks. A *global* GRU tracks the
conversation (input: the utterance and its speaker's state); each *party* (speaker) has its own GRU
state, updated only when that party speaks, from the utterance and an attention summary of the
global states so far; an *emotion* GRU over the speakers' states gives the per-turn features. As in
the paper, listeners' states stay as they are.

``bidirectional=False`` is the causal (online) model: turn k's output reads turns 1..k only.
``bidirectional=True`` adds a second, independent cell run over each dialogue reversed (padding stays
at the end, see :func:`~mmaffect.models.context_common.reverse_turns`) and concatenates the two.
``context=False`` runs every turn as a dialogue of one turn (all states start from zero): the same
weights with no cross-turn information, i.e. the no-context floor of the same encoder.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmaffect.models.base import AffectModel, Heads, ModelSpec
from mmaffect.models.blocks.prototypes import prototype_contrast, spcl_terms
from mmaffect.models.context_common import one_turn_dialogues, reverse_turns, speaker_grid, turn_inputs
from mmaffect.models.registry import register_model


class DialogueRNNCell(nn.Module):
    """One direction of DialogueRNN: global, party and emotion GRUs stepped over the turns."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.global_cell = nn.GRUCell(dim + hidden, hidden)
        self.party_cell = nn.GRUCell(dim + hidden, hidden)
        self.emotion_cell = nn.GRUCell(hidden, hidden)
        self.attend = nn.Linear(dim, hidden, bias=False)

    def forward(self, u: Tensor, speakers: Tensor, mask: Tensor) -> Tensor:
        """``u`` (D, T, dim), ``speakers`` (D, T) codes, ``mask`` (D, T) real turns with padding at
        the end -> (D, T, hidden) emotion states (undefined at padding)."""
        n, turns, _ = u.shape
        parties = int(speakers.max()) + 1 if speakers.numel() else 1
        rows = torch.arange(n, device=u.device)
        g = u.new_zeros(n, self.hidden)
        e = u.new_zeros(n, self.hidden)
        q = u.new_zeros(n, parties, self.hidden)
        history: list[Tensor] = []
        out = []
        for t in range(turns):
            ut, speaker, real = u[:, t], speakers[:, t], mask[:, t, None]
            q_speaker = q[rows, speaker]
            g_new = self.global_cell(torch.cat([ut, q_speaker], -1), g)
            if history:  # attention over the global states of earlier turns (all real for a real turn)
                past = torch.stack(history, 1)
                weights = torch.softmax(torch.einsum("dth,dh->dt", past, self.attend(ut)), dim=1)
                summary = torch.einsum("dt,dth->dh", weights, past)
            else:
                summary = u.new_zeros(n, self.hidden)
            q_new = self.party_cell(torch.cat([ut, summary], -1), q_speaker)
            e_new = self.emotion_cell(q_new, e)
            speaking = (nn.functional.one_hot(speaker, parties).bool() & real)[..., None]
            q = torch.where(speaking, q_new[:, None], q)
            g = torch.where(real, g_new, g)
            e = torch.where(real, e_new, e)
            history.append(g_new)
            out.append(e_new)
        return torch.stack(out, 1)


@register_model("dialogue-rnn", description="DialogueRNN-style speaker-aware context model (global, party and "
                                            "emotion GRUs) over utterance vectors; bidirectional=false is causal; "
                                            "context=false runs each turn alone",
                train_defaults={"batch_size": 8})
class DialogueRNN(AffectModel):
    needs = frozenset({"vectors", "dialogues"})

    def __init__(self, spec: ModelSpec, *, hidden: int = 64, post_hidden: int = 64, dropout: float = 0.3,
                 bidirectional: bool = True, context: bool = True, spcl: float = 0.0, spcl_temperature: float = 0.1,
                 spcl_queue: int = 64):
        super().__init__(spec)
        self.modalities = list(spec.dims)
        self.context = context
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(sum(spec.dims.values()), hidden), nn.ReLU())
        self.forward_cell = DialogueRNNCell(hidden, hidden)
        self.backward_cell = DialogueRNNCell(hidden, hidden) if bidirectional else None
        width = hidden * (2 if bidirectional else 1)
        self.post = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, post_hidden), nn.ReLU(), nn.Dropout(dropout))
        self.heads = Heads(post_hidden, spec.heads)
        self.spcl = prototype_contrast(spec.heads, post_hidden, spcl, spcl_queue, spcl_temperature)

    @property
    def online(self) -> bool:
        """Whether a turn's output reads only that turn and earlier ones (see :mod:`mmaffect.conversation`)."""
        return self.backward_cell is None or not self.context

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch["turn_mask"]
        x = self.project(turn_inputs(batch, self.modalities))
        speakers = speaker_grid(batch)
        if not self.context:
            x, mask = one_turn_dialogues(x, mask)
            speakers = torch.zeros_like(mask, dtype=torch.long)
        states = [self.forward_cell(x, speakers, mask)]
        if self.backward_cell is not None:
            index = reverse_turns(mask)
            back = self.backward_cell(x.gather(1, index[..., None].expand_as(x)), speakers.gather(1, index), mask)
            states.append(back.gather(1, index[..., None].expand_as(back)))
        features = self.post(torch.cat(states, -1)[mask])
        return {**self.heads(features), "features": features}

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return spcl_terms(self.spcl, outputs, batch)
