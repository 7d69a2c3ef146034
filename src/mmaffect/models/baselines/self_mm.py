"""Self-MM, self-supervised multi-task learning (Yu et al., AAAI 2021).

One encoder per modality (an LSTM over the real steps then a linear layer, MMSA's ``AuViSubNet``, or
the fine-tuned MiniLM for text), a fusion MLP over their concatenation with the task heads, and one
small unimodal head per modality. The unimodal heads learn *generated* labels: Self-MM keeps, for
every training row, a label per modality that starts at the multimodal label and moves each epoch
by how much closer the modality's features sit to the positive than to the negative centre,
relative to the same offset of the fused features:

``δ = (d_neg - d_pos) / d_pos``, ``ŷ_s = y + (δ_s - δ_f)/2 + y (δ_s / δ_f - 1)/2`` (clipped to ±H),
blended into the memory with weight ``2/(n+1)`` at epoch n (a running mean).

The unimodal loss ``self_mm_unimodal`` is ``Σ_s mean(tanh|ŷ_s - y| · |u_s - ŷ_s|)``: a modality
whose generated label agrees with the multimodal one gets no push. The memory lives in registered
buffers indexed by dataset row, updated by :meth:`on_epoch_end` from an eval-mode pass over the
training rows (the engine hook), so it is saved with the weights and survives an exact resume.
MMSA instead updates it per batch from training-mode features inside its own loop.

Classification is our extension: each class is a one-vs-rest "sentiment" with targets ±1 (H = 1),
so the rule above runs per class; with a score head the rule is the paper's (targets the score,
zeros in neither centre, H = ``label_bound``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmaffect.models.base import EpochState, Heads, ModelSpec
from mmaffect.models.baselines.zoo_common import ZOO_SCHEDULE, LSTMEncoder, ZooModel, encoder_groups, use_minilm
from mmaffect.models.registry import register_model

if TYPE_CHECKING:
    from mmaffect.training.config import TrainConfig

EPS = 1e-8


def class_centres(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean features of rows with a positive / negative label per target column.

    ``features`` (R, P), ``labels`` (R, K) -> ``pos`` (K, P), ``neg`` (K, P), and ``valid`` (K,)
    columns that have both kinds of rows.
    """
    pos, neg = (labels > 0).float(), (labels < 0).float()
    valid = (pos.sum(0) > 0) & (neg.sum(0) > 0)
    return (pos.t() @ features) / pos.sum(0).clamp(min=1)[:, None], \
        (neg.t() @ features) / neg.sum(0).clamp(min=1)[:, None], valid


def relative_offset(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Self-MM's ``δ = (d_neg - d_pos) / d_pos`` per row and column (R, K), and the valid columns."""
    pos, neg, valid = class_centres(features, labels)
    d_pos, d_neg = torch.cdist(features, pos), torch.cdist(features, neg)
    return (d_neg - d_pos) / (d_pos + EPS), valid


def generated_labels(fused: Tensor, unimodal: Tensor, target: Tensor, current: Tensor, bound: float
                     ) -> tuple[Tensor, Tensor]:
    """New unimodal labels ``(R, K)`` from the paper's rule (before the running mean), and the valid
    columns; ``current`` are the modality's labels that define its centres."""
    delta_f, valid_f = relative_offset(fused, target)
    delta_s, valid_s = relative_offset(unimodal, current)
    alpha = delta_s / (delta_f + EPS)
    new = 0.5 * alpha * target + 0.5 * (target + delta_s - delta_f)
    return new.clamp(-bound, bound), valid_f & valid_s


class PostNet(nn.Module):
    """Dropout -> Linear -> ReLU (the representation Self-MM's centres use) -> Linear -> ReLU -> out."""

    def __init__(self, in_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.first = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU())
        self.second = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.first(x)
        return h, self.second(h)


@register_model("self-mm", heads=("score", "logits"),
                description="Self-MM: fusion + unimodal heads trained on self-generated unimodal labels (epoch hook)",
                train_defaults={"batch_size": 32, "lr": 1e-3, **ZOO_SCHEDULE})
class SelfMM(ZooModel):
    def __init__(self, spec: ModelSpec, *, text_hidden: int = 64, audio_hidden: int = 16, video_hidden: int = 32,
                 fusion_dim: int = 128, unimodal_dim: int = 32, dropout: float = 0.1, label_bound: float = 3.0,
                 text_encoder: str = "features", encoder_lr: float = 5e-5, max_tokens: int = 64,
                 sequences: bool = True):
        super().__init__(spec, sequences)
        hidden = {"t": text_hidden, "a": audio_hidden, "v": video_hidden}
        self.encoder_lr = encoder_lr
        self.text = use_minilm(self, text_encoder, max_tokens)
        self.encoders = nn.ModuleDict({m: LSTMEncoder(self.step_dims[m], hidden[m])
                                       for m in self.modalities if not (m == "t" and self.text is not None)})
        self.outs = nn.ModuleDict({m: nn.Linear(hidden[m], hidden[m]) for m in self.encoders})
        widths = {m: hidden[m] for m in self.encoders} | ({"t": self.text.out_dim} if self.text is not None else {})
        self.fusion = PostNet(sum(widths.values()), fusion_dim, dropout)
        self.heads = Heads(fusion_dim, spec.heads)
        self.columns = 1 if "score" in spec.heads else spec.heads["logits"]
        self.bound = label_bound if "score" in spec.heads else 1.0
        self.unimodal = nn.ModuleDict({m: PostNet(widths[m], unimodal_dim, dropout) for m in self.modalities})
        self.unimodal_heads = nn.ModuleDict({m: nn.Linear(unimodal_dim, self.columns) for m in self.modalities})
        # per dataset row: generated labels (N, M, K) and whether the row has them yet; sized at the first epoch end
        self.register_buffer("label_memory", torch.zeros(0, len(self.modalities), self.columns))
        self.register_buffer("label_known", torch.zeros(0, dtype=torch.bool))

    def encode(self, batch: dict[str, Tensor], m: str) -> Tensor:
        if m == "t" and self.text is not None:
            return self.text(batch)
        return self.outs[m](self.encoders[m](*self.steps(batch, m)))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        encoded = {m: self.encode(batch, m) for m in self.modalities}
        fused, h = self.fusion(torch.cat(list(encoded.values()), dim=-1))
        out = {**self.heads(h), "features": fused}
        for m in self.modalities:
            feature, hm = self.unimodal[m](encoded[m])
            out |= {f"features_{m}": feature, f"unimodal_{m}": self.unimodal_heads[m](hm)}
        return out

    def targets(self, batch: dict[str, Tensor]) -> Tensor:
        """The multimodal labels as (B, K) Self-MM targets: the score, or ±1 per class."""
        if "score" in self.spec.heads:
            return batch["score"].float()[:, None]
        return 2 * F.one_hot(batch["label"], self.columns).float() - 1

    def memory_labels(self, index: Tensor, target: Tensor) -> Tensor:
        """(B, M, K) generated labels of these rows; the multimodal label before the first update."""
        labels = target[:, None, :].expand(-1, len(self.modalities), -1)
        if len(self.label_known) == 0:
            return labels
        known = self.label_known[index]
        return torch.where(known[:, None, None], self.label_memory[index], labels)

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        target = self.targets(batch)
        generated = self.memory_labels(batch["index"], target)
        loss = target.new_zeros(())
        for i, m in enumerate(self.modalities):
            weight = torch.tanh((generated[:, i] - target).abs())
            loss = loss + (weight * (outputs[f"unimodal_{m}"] - generated[:, i]).abs()).mean()
        return {"self_mm_unimodal": loss}

    @torch.no_grad()
    def on_epoch_end(self, state: EpochState) -> None:
        rows = torch.as_tensor(state.train_rows, dtype=torch.long)
        if len(self.label_known) != len(state.data):
            self.label_memory = self.label_memory.new_zeros(len(state.data), len(self.modalities), self.columns)
            self.label_known = self.label_known.new_zeros(len(state.data))
        outputs = state.outputs(state.train_rows)
        target = self.targets({k: getattr(state.data, k)[rows] for k in ("score", "label")
                               if getattr(state.data, k) is not None})
        current = self.memory_labels(rows, target)
        n = state.epoch + 1  # MMSA's first update happens in its second epoch
        updated = current.clone()
        for i, m in enumerate(self.modalities):
            new, valid = generated_labels(outputs["features"], outputs[f"features_{m}"], target, current[:, i],
                                          self.bound)
            blended = (n - 1) / (n + 1) * current[:, i] + 2 / (n + 1) * new
            updated[:, i] = torch.where(valid[None, :], blended, current[:, i])
        self.label_memory[rows] = updated
        self.label_known[rows] = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("label_memory", "label_known"):  # the memory's size is the dataset's, known only when saved
            if prefix + name in state_dict:
                setattr(self, name, torch.zeros_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def param_groups(self, cfg: TrainConfig) -> list[dict]:
        return encoder_groups(self, self.text, self.encoder_lr)
