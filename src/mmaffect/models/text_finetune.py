"""``text-finetune``: a pretrained sentence encoder fine-tuned end to end on token ids.

The frozen-vector ``text-mlp`` only trains a head on fixed MiniLM sentence vectors; here the encoder
itself learns the task, which is what the ERC literature's RoBERTa rows do. The default encoder is
the packaged all-MiniLM-L6-v2 (22.7 M weights, offline); ``model_name`` takes any transformers
encoder name or folder for users with a hub. The sentence vector is the masked mean of the last
token states (MiniLM's own pooling), so training starts from exactly the ``text-mlp`` features.
The encoder and the head sit in separate parameter groups: the pretrained weights move at
``encoder_lr``, the new head at ``train.lr``.

Options (all off by default, so older checkpoints load and train as before):

- ``context_turns=K``: the input window of turn k also holds the K previous turns of its dialogue,
  speaker-tagged and most recent first, ``[CLS] a: turn k [SEP] b: turn k-1 [SEP] a: turn k-2 [SEP]``
  (speakers lettered per dialogue in order of first appearance, as the context models number them),
  cut to ``context_tokens`` word pieces by dropping the oldest whole turns. Only past turns: it is a
  causal (online) model. Attention reads the whole window, but the sentence vector pools the current
  turn's tokens only, so it stays an utterance vector. Batches are then whole dialogues.
- ``freeze_epochs=N``: the encoder runs without gradients for the first N epochs (only the head
  learns, and each step skips the encoder's backward pass), then everything trains.
- ``layer_decay=d``: layer-wise learning-rate decay; transformer layer i of L gets
  ``encoder_lr * d ** (L - 1 - i)`` and the embeddings ``encoder_lr * d ** L``, so the lower, more
  general layers move least.
- ``spcl=w``: SPCL's prototype contrastive term (weight ``w``) on the pooled sentence vectors, with
  ``spcl_temperature`` and ``spcl_queue`` as for the context models (:mod:`mmaffect.models.blocks.prototypes`).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from mmaffect.errors import ConfigError
from mmaffect.features.text import PACKAGED_TOKENIZER, load_tokenizer, model_source
from mmaffect.models.base import AffectModel, EpochState, Heads, ModelSpec
from mmaffect.models.blocks.prototypes import prototype_contrast, spcl_terms
from mmaffect.models.context_common import speaker_grid
from mmaffect.models.registry import register_model
from mmaffect.training.config import TrainConfig

MAX_TAGS = 26  # speakers a, b, ..., z; later ones share the last tag


@register_model(
    "text-finetune", modalities=("t",),
    description="MiniLM (or model_name) fine-tuned end to end on token ids; encoder and head lr differ; "
                "context_turns=K reads the K previous speaker-tagged turns",
    train_defaults={"epochs": 4, "batch_size": 16, "accumulate": 2, "eval_batch_size": 256, "optimizer": "adamw",
                    "lr": 5e-4, "weight_decay": 0.01, "scheduler": "linear", "warmup_ratio": 0.1, "patience": 4,
                    "grad_clip": 1.0})
class TextFinetune(AffectModel):
    needs = frozenset({"tokens"})
    tokenizer = PACKAGED_TOKENIZER

    def __init__(self, spec: ModelSpec, *, model_name: str | None = None, max_tokens: int = 64,
                 encoder_lr: float = 5e-5, dropout: float = 0.1, context_turns: int = 0,
                 context_tokens: int = 160, freeze_epochs: int = 0, layer_decay: float = 1.0, spcl: float = 0.0,
                 spcl_temperature: float = 0.1, spcl_queue: int = 64):
        super().__init__(spec)
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.tokenizer = model_name or PACKAGED_TOKENIZER
        self.max_tokens = max_tokens
        self.encoder_lr = encoder_lr
        self.encoder = AutoModel.from_pretrained(model_source(model_name))
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # BERT's [CLS] pooler is unused (we mean-pool); no dead weights
            self.register_load_state_dict_pre_hook(_drop_pooler)  # checkpoints that still carry it
        self.dropout = nn.Dropout(dropout)
        self.heads = Heads(int(self.encoder.config.hidden_size), spec.heads)
        # SPCL's prototype contrastive term on the pooled features, as for the context models (off by default)
        self.spcl = prototype_contrast(spec.heads, int(self.encoder.config.hidden_size), spcl, spcl_queue,
                                       spcl_temperature)
        self.context_turns = context_turns
        self.context_tokens = context_tokens
        self.freeze_epochs = freeze_epochs
        self.layer_decay = layer_decay
        # saved only when used, so checkpoints without the option keep loading; restored on resume
        self.register_buffer("encoder_frozen", torch.tensor(freeze_epochs > 0), persistent=freeze_epochs > 0)
        if context_turns > 0:
            if context_tokens < max_tokens:
                raise ConfigError(f"text-finetune: context_tokens ({context_tokens}) must be >= max_tokens "
                                  f"({max_tokens}), the current turn's own budget")
            self.needs = frozenset({"tokens", "dialogues"})
            self.speaker_tags = _speaker_tags(self.tokenizer)

    @property
    def online(self) -> bool:
        """The window holds past turns only (see :mod:`mmaffect.conversation`)."""
        return True

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.context_turns > 0:
            ids, mask, pool = self.context_windows(batch)
        else:
            ids, mask = batch["t_tokens"], batch["t_tokens_mask"]
            pool = mask
        with torch.set_grad_enabled(torch.is_grad_enabled() and not bool(self.encoder_frozen)):
            states = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        weights = pool.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1)
        return {**self.heads(self.dropout(pooled)), "features": pooled}

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return spcl_terms(self.spcl, outputs, batch)

    def context_windows(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Per real turn (``turn_mask`` order) its window's ids ``(n, L)``, attention mask and pooling
        mask (the current turn's tokens, [CLS] and [SEP] included)."""
        ids, lengths = batch["t_tokens"], batch["t_tokens_mask"].sum(1).tolist()
        turn_mask = batch["turn_mask"]
        speakers = speaker_grid(batch)[turn_mask].clamp(max=MAX_TAGS - 1).tolist()
        turn = (torch.cumsum(turn_mask.long(), 1) - 1)[turn_mask].tolist()  # position within the dialogue
        windows, own = [], []
        for i, (length, k) in enumerate(zip(lengths, turn, strict=True)):
            words = ids[i, 1:length - 1].tolist()
            window = [int(ids[i, 0]), *self.speaker_tags[speakers[i]], *words, int(ids[i, length - 1])]
            own.append(len(window))
            for j in range(i - 1, i - 1 - min(k, self.context_turns), -1):
                previous = [*self.speaker_tags[speakers[j]], *ids[j, 1:lengths[j]].tolist()]  # words + [SEP]
                if len(window) + len(previous) > self.context_tokens:
                    break
                window += previous
            windows.append(window)
        width = max(len(w) for w in windows)
        out = torch.zeros(len(windows), width, dtype=torch.long)
        steps = torch.arange(width)[None, :]
        for i, window in enumerate(windows):
            out[i, :len(window)] = torch.tensor(window)
        size = torch.tensor([len(w) for w in windows])[:, None]
        return out.to(ids.device), (steps < size).to(ids.device), (steps < torch.tensor(own)[:, None]).to(ids.device)

    def param_groups(self, cfg: TrainConfig) -> list[dict]:
        if self.layer_decay == 1.0:
            return [{"params": list(self.encoder.parameters()), "lr": self.encoder_lr},
                    {"params": list(self.heads.parameters())}]
        layers = int(self.encoder.config.num_hidden_layers)
        groups: dict[int, list] = {}
        for name, param in self.encoder.named_parameters():
            found = re.search(r"(?:^|\.)layer\.(\d+)\.", name)
            depth = int(found.group(1)) + 1 if found else (0 if name.startswith("embeddings.") else layers)
            groups.setdefault(depth, []).append(param)
        return [{"params": params, "lr": self.encoder_lr * self.layer_decay ** (layers - depth)}
                for depth, params in sorted(groups.items())] + [{"params": list(self.heads.parameters())}]

    def on_epoch_end(self, state: EpochState) -> None:
        if state.epoch >= self.freeze_epochs:
            self.encoder_frozen.fill_(False)


def _speaker_tags(tokenizer: str) -> list[list[int]]:
    """Word-piece ids of the tags ``a:``, ``b:``, ... ``z:`` for the speakers of a dialogue."""
    tok = load_tokenizer(tokenizer)
    if tok.num_special_tokens_to_add() != 2:
        raise ConfigError(f"text-finetune context_turns needs a [CLS] ... [SEP] tokenizer; {tokenizer} adds "
                          f"{tok.num_special_tokens_to_add()} special tokens")
    return [tok(f"{chr(ord('a') + k)}:", add_special_tokens=False)["input_ids"] for k in range(MAX_TAGS)]


def _drop_pooler(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    for key in [k for k in state_dict if k.startswith(f"{prefix}encoder.pooler.")]:
        del state_dict[key]
