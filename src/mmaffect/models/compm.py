"""``compm``: context model plus the speaker's pre-trained memory (after CoMPM, Lee & Lee, NAACL 2022).

Why two parts: CoMPM's *CoM* reads the dialogue so far; its *PM* (pre-trained memory) reads only the
current speaker's own earlier utterances, encoded by a language model that is NOT trained on the task,
and tracks them in time order with a GRU. The frozen encoder brings what pre-training knows about a
person's way of speaking, and the speaker-only view is a second, narrower context. The PM output goes
through a linear map and is added to the CoM output before the classifier.

Here, over the utterance vectors of dialogue batches like the other context models
(:mod:`mmaffect.models.context`):

- CoM (``com``): ``"dialogue-rnn"`` (default) is the causal DialogueRNN cell of
  :mod:`mmaffect.models.context_rnn` over all turns' vectors (every modality, concatenated), the
  strongest causal context model we measured (docs/context.md); ``"none"`` is the current turn alone
  (its projection), i.e. PM-only. CoM is causal: CoMPM predicts online, turn k reads turns 1..k.
- PM (``memory``, default on): for turn k of speaker s, a GRU run over the frozen sentence vectors of
  s's earlier turns (not turn k itself, as in CoMPM's code), zeros when s has not spoken yet. The
  frozen vectors are the batch's ``t_pretrained_dlg`` (need ``"pretrained_text"``): the packaged
  MiniLM vectors that ``text-mlp`` reads. When ``dataset_args.text_encoder`` replaced the text
  modality by a fine-tuned encoder's vectors (:mod:`mmaffect.data.encoded`), the dataset keeps the
  frozen ones beside them (``AffectDataset.pretrained_text``) and PM reads those, so PM stays
  *pre-trained* memory while CoM reads the fine-tuned vectors. ``memory=false`` drops PM (CoM alone;
  no memory parameters, no need).
- ``spcl=w``: SPCL's prototype contrastive term on the classifier's input features
  (:mod:`mmaffect.models.blocks.prototypes`), as for the other context models.

Where the paper's setting differs (RoBERTa-large, 355M parameters, fine-tuned on GPUs):

- CoM in the paper is RoBERTa-large fine-tuned on the concatenated, speaker-tagged dialogue history
  (right-truncated to 511 tokens) and read at ``<s>``; here a DialogueRNN cell over one fixed vector
  per turn (frozen MiniLM, 384-d, or a MiniLM fine-tuned on single utterances with
  ``text-finetune``), so CoM never sees the words of earlier turns, only their vectors.
- PM in the paper encodes each earlier utterance with a frozen RoBERTa-large ``<s>`` state (1024-d)
  and tracks them with a 2-layer GRU of width 1024 whose last state is added to CoM's; here a frozen
  MiniLM vector, LayerNorm (the kept vectors are not standardised, the text modality's are: the norm
  puts both on one scale), dropout, a 1-layer GRU of ``memory_hidden`` units and a linear map
  ``memory_hidden -> hidden`` (the paper's W_p; its released code adds the two directly, both being
  1024-d). The PM state of each speaker is stepped once per turn instead of re-running a GRU over
  the whole speaker history for every turn; the result is the same.
- Classifier: the paper puts one linear layer on the sum; here the sum goes through the same
  ``post`` block (dropout, linear, ReLU, dropout) as dialogue-rnn, then the heads, so the CoM-alone
  variant equals a causal dialogue-rnn in shape and schedule.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmaffect.errors import ConfigError
from mmaffect.models.base import AffectModel, Heads, ModelSpec
from mmaffect.models.blocks.prototypes import prototype_contrast, spcl_terms
from mmaffect.models.context_common import speaker_grid, turn_inputs
from mmaffect.models.context_rnn import DialogueRNNCell
from mmaffect.models.registry import register_model

COM = ("dialogue-rnn", "none")


class SpeakerMemory(nn.Module):
    """PM: per speaker, a GRU over the frozen vectors of that speaker's earlier turns."""

    def __init__(self, width: int, hidden: int, dropout: float):
        super().__init__()
        self.hidden = hidden
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.cell = nn.GRUCell(width, hidden)

    def forward(self, pretrained: Tensor, speakers: Tensor, mask: Tensor) -> Tensor:
        """``pretrained`` (D, T, width), ``speakers`` (D, T), ``mask`` (D, T) -> (D, T, hidden): at turn
        k, the state after the speaker's turns before k (zeros before their first; undefined at padding)."""
        if pretrained.shape[-1] != self.cell.input_size:
            raise ConfigError(f"compm's memory was built for {self.cell.input_size}-d pretrained text vectors, "
                              f"the batch has {pretrained.shape[-1]}-d")
        n, turns, _ = pretrained.shape
        parties = int(speakers.max()) + 1 if speakers.numel() else 1
        rows = torch.arange(n, device=pretrained.device)
        u = self.dropout(self.norm(pretrained))
        state = pretrained.new_zeros(n, parties, self.hidden)
        out = []
        for t in range(turns):
            speaker = speakers[:, t]
            before = state[rows, speaker]
            out.append(before)
            speaking = (nn.functional.one_hot(speaker, parties).bool() & mask[:, t, None])[..., None]
            state = torch.where(speaking, self.cell(u[:, t], before)[:, None], state)
        return torch.stack(out, 1)


@register_model("compm", description="CoMPM-style: causal context model (com=dialogue-rnn|none) plus a GRU over "
                                     "the current speaker's earlier turns read from the frozen MiniLM vectors "
                                     "(memory=false: context alone); works on fine-tuned text vectors too",
                modalities=("t",), train_defaults={"batch_size": 8})
class CoMPM(AffectModel):
    needs = frozenset({"vectors", "dialogues", "pretrained_text"})
    online = True  # CoM is causal and PM reads earlier turns only

    def __init__(self, spec: ModelSpec, *, hidden: int = 64, memory_hidden: int = 64, post_hidden: int = 64,
                 dropout: float = 0.3, com: str = "dialogue-rnn", memory: bool = True, spcl: float = 0.0,
                 spcl_temperature: float = 0.1, spcl_queue: int = 64):
        super().__init__(spec)
        if com not in COM:
            raise ConfigError(f"model_args.com must be one of {', '.join(COM)}, not {com!r}")
        self.modalities = list(spec.dims)
        self.needs = frozenset({"vectors", "dialogues"} | ({"pretrained_text"} if memory else set()))
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(sum(spec.dims.values()), hidden), nn.ReLU())
        self.com = DialogueRNNCell(hidden, hidden) if com == "dialogue-rnn" else None
        self.memory = SpeakerMemory(spec.dims["t"], memory_hidden, dropout) if memory else None
        self.memory_map = nn.Linear(memory_hidden, hidden) if memory else None
        self.post = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, post_hidden), nn.ReLU(), nn.Dropout(dropout))
        self.heads = Heads(post_hidden, spec.heads)
        self.spcl = prototype_contrast(spec.heads, post_hidden, spcl, spcl_queue, spcl_temperature)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch["turn_mask"]
        speakers = speaker_grid(batch)
        h = self.project(turn_inputs(batch, self.modalities))
        if self.com is not None:
            h = self.com(h, speakers, mask)
        if self.memory is not None:
            h = h + self.memory_map(self.memory(batch["t_pretrained_dlg"], speakers, mask))
        features = self.post(h[mask])
        return {**self.heads(features), "features": features}

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return spcl_terms(self.spcl, outputs, batch)
