"""``text-finetune``: a pretrained sentence encoder fine-tuned end to end on token ids.

The frozen-vector ``text-mlp`` only trains a head on fixed MiniLM sentence vectors; here the encoder
itself learns the task, which is what the ERC literature's RoBERTa rows do. The default encoder is
the packaged all-MiniLM-L6-v2 (22.7 M weights, offline); ``model_name`` takes any transformers
encoder name or folder for users with a hub. The sentence vector is the masked mean of the last
token states (MiniLM's own pooling), so training starts from exactly the ``text-mlp`` features.
The encoder and the head sit in separate parameter groups: the pretrained weights move at
``encoder_lr``, the new head at ``train.lr``.
"""

from __future__ import annotations

from torch import Tensor, nn

from mmaffect.features.text import PACKAGED_TOKENIZER, model_source
from mmaffect.models.base import AffectModel, Heads, ModelSpec
from mmaffect.models.registry import register_model
from mmaffect.training.config import TrainConfig


@register_model(
    "text-finetune", modalities=("t",),
    description="MiniLM (or model_name) fine-tuned end to end on token ids; encoder and head lr differ",
    train_defaults={"epochs": 4, "batch_size": 16, "accumulate": 2, "eval_batch_size": 256, "optimizer": "adamw",
                    "lr": 5e-4, "weight_decay": 0.01, "scheduler": "linear", "warmup_ratio": 0.1, "patience": 4,
                    "grad_clip": 1.0})
class TextFinetune(AffectModel):
    needs = frozenset({"tokens"})
    tokenizer = PACKAGED_TOKENIZER

    def __init__(self, spec: ModelSpec, *, model_name: str | None = None, max_tokens: int = 64,
                 encoder_lr: float = 5e-5, dropout: float = 0.1):
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

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch["t_tokens_mask"]
        states = self.encoder(input_ids=batch["t_tokens"], attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1)
        return {**self.heads(self.dropout(pooled)), "features": pooled}

    def param_groups(self, cfg: TrainConfig) -> list[dict]:
        return [{"params": list(self.encoder.parameters()), "lr": self.encoder_lr},
                {"params": list(self.heads.parameters())}]


def _drop_pooler(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    for key in [k for k in state_dict if k.startswith(f"{prefix}encoder.pooler.")]:
        del state_dict[key]
