"""MISA, Modality-Invariant and -Specific representations (Hazarika et al., ACM MM 2020).

Each modality is encoded to an utterance vector (two stacked bidirectional LSTMs with a LayerNorm
between them, final states of both, as in MISA; or the fine-tuned MiniLM for text, see
:mod:`~mmaffect.models.baselines.zoo_common`), projected to a common width, and split into a
*shared* part (one encoder for all modalities) and a *private* part (one encoder per modality). A
one-layer transformer over the 2M vectors fuses them. Three auxiliary losses shape the split, each
returned as a named term scaled by its weight (``train.loss_weights`` can rescale them again):

- ``misa_similarity``: central moment discrepancy (CMD, 5 moments) between the shared parts of every
  modality pair, averaged over pairs: the shared space should not tell modalities apart;
- ``misa_difference``: soft orthogonality ``||S_cᵀ P_c||²_F`` (batch-centred, row-normalised)
  between shared and private of each modality and between every two privates;
- ``misa_reconstruction``: ``shared + private`` must reconstruct the projected vector (MSE).

As in MMSA's default (``use_cmd_sim``), CMD is the similarity loss (not the adversarial
discriminator), and the shared/private discriminator MMSA builds but never trains is left out.
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmaffect.models.base import Heads, ModelSpec
from mmaffect.models.baselines.zoo_common import (
    ZOO_SCHEDULE,
    ZooModel,
    encoder_groups,
    lengths_of,
    one_step_lstm,
    use_minilm,
)
from mmaffect.models.registry import register_model

if TYPE_CHECKING:
    from mmaffect.training.config import TrainConfig


def cmd(x1: Tensor, x2: Tensor, moments: int = 5) -> Tensor:
    """Central moment discrepancy (Zellinger et al. 2017) between two (B, d) samples:
    ``||E x1 - E x2|| + Σ_{k=2..K} ||C_k(x1) - C_k(x2)||`` with ``C_k`` the k-th central moments."""
    m1, m2 = x1.mean(0), x2.mean(0)
    c1, c2 = x1 - m1, x2 - m2
    total = _norm(m1 - m2)
    for k in range(2, moments + 1):
        total = total + _norm(c1.pow(k).mean(0) - c2.pow(k).mean(0))
    return total


def _norm(x: Tensor) -> Tensor:
    return torch.sqrt(x.pow(2).sum() + 1e-12)  # finite gradient at 0, unlike the plain norm


def difference_loss(a: Tensor, b: Tensor) -> Tensor:
    """``mean((Âᵀ B̂)²)`` with rows centred over the batch and scaled to unit L2 norm (scale not
    back-propagated, as in MISA): zero when the two codes use orthogonal directions."""
    a = a - a.mean(0, keepdim=True)
    b = b - b.mean(0, keepdim=True)
    a = a / (a.norm(dim=1, keepdim=True).detach() + 1e-6)
    b = b / (b.norm(dim=1, keepdim=True).detach() + 1e-6)
    return (a.t() @ b).pow(2).mean()


class StackedBiLSTM(nn.Module):
    """MISA's utterance encoder: BiLSTM -> LayerNorm -> BiLSTM over the real steps; returns the final
    states of both layers and directions, ``(B, 4 * hidden)``."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.rnn1 = nn.LSTM(in_dim, hidden, batch_first=True, bidirectional=True)
        self.norm = nn.LayerNorm(2 * hidden)
        self.rnn2 = nn.LSTM(2 * hidden, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 4 * hidden

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if x.shape[1] == 1:  # utterance vectors: the same maths without packing or the LSTM kernel
            first = one_step_lstm(self.rnn1, x[:, 0])
            return torch.cat([first, one_step_lstm(self.rnn2, self.norm(first))], dim=1)
        lengths = lengths_of(mask).cpu()
        packed, (h1, _) = self.rnn1(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        states, _ = pad_packed_sequence(packed, batch_first=True)
        normed = pack_padded_sequence(self.norm(states), lengths, batch_first=True, enforce_sorted=False)
        _, (h2, _) = self.rnn2(normed)
        return torch.cat([h1, h2], dim=0).transpose(0, 1).reshape(x.shape[0], -1)


@register_model("misa", description="MISA: shared/private modality subspaces (CMD, orthogonality, reconstruction)",
                train_defaults={"batch_size": 32, "lr": 1e-3, "grad_clip": 1.0, **ZOO_SCHEDULE})
class MISA(ZooModel):
    def __init__(self, spec: ModelSpec, *, hidden: int = 128, rnn_hidden: int = 64, dropout: float = 0.2,
                 fusion_heads: int = 2, similarity_weight: float = 0.3, difference_weight: float = 0.1,
                 reconstruction_weight: float = 1.0, cmd_moments: int = 5, text_encoder: str = "features",
                 encoder_lr: float = 5e-5, max_tokens: int = 64, sequences: bool = True):
        super().__init__(spec, sequences)
        self.weights = {"misa_similarity": similarity_weight, "misa_difference": difference_weight,
                        "misa_reconstruction": reconstruction_weight}
        self.cmd_moments, self.encoder_lr = cmd_moments, encoder_lr
        self.text = use_minilm(self, text_encoder, max_tokens)
        self.encoders = nn.ModuleDict({m: StackedBiLSTM(self.step_dims[m], rnn_hidden)
                                       for m in self.modalities if not (m == "t" and self.text is not None)})
        widths = {m: enc.out_dim for m, enc in self.encoders.items()}
        if self.text is not None:
            widths["t"] = self.text.out_dim
        self.project = nn.ModuleDict({m: nn.Sequential(nn.Linear(widths[m], hidden), nn.ReLU(), nn.LayerNorm(hidden))
                                      for m in self.modalities})
        self.private = nn.ModuleDict({m: nn.Sequential(nn.Linear(hidden, hidden), nn.Sigmoid())
                                      for m in self.modalities})
        self.shared = nn.Sequential(nn.Linear(hidden, hidden), nn.Sigmoid())
        self.reconstruct = nn.ModuleDict({m: nn.Linear(hidden, hidden) for m in self.modalities})
        self.fusion = nn.TransformerEncoderLayer(hidden, fusion_heads, dim_feedforward=2 * hidden, dropout=dropout,
                                                 batch_first=True)
        count = len(self.modalities)
        self.post = nn.Sequential(nn.Linear(2 * count * hidden, count * hidden), nn.Dropout(dropout), nn.ReLU())
        self.heads = Heads(count * hidden, spec.heads)

    def utterance(self, batch: dict[str, Tensor], m: str) -> Tensor:
        if m == "t" and self.text is not None:
            return self.text(batch)
        return self.encoders[m](*self.steps(batch, m))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        privates, shareds = [], []
        for m in self.modalities:
            projected = self.project[m](self.utterance(batch, m))
            private, shared = self.private[m](projected), self.shared(projected)
            out |= {f"projected_{m}": projected, f"private_{m}": private, f"shared_{m}": shared,
                    f"reconstructed_{m}": self.reconstruct[m](private + shared)}
            privates.append(private)
            shareds.append(shared)
        tokens = self.fusion(torch.stack(privates + shareds, dim=1))
        features = self.post(tokens.flatten(1))
        return {**self.heads(features), **out, "features": features}

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        shared = [outputs[f"shared_{m}"] for m in self.modalities]
        private = [outputs[f"private_{m}"] for m in self.modalities]
        zero = shared[0].new_zeros(())
        pairs = list(combinations(range(len(self.modalities)), 2))
        similarity = sum((cmd(shared[i], shared[j], self.cmd_moments) for i, j in pairs), zero) / max(len(pairs), 1)
        difference = sum((difference_loss(p, s) for p, s in zip(private, shared, strict=True)), zero)
        difference = difference + sum((difference_loss(private[i], private[j]) for i, j in pairs), zero)
        reconstruction = sum(F.mse_loss(outputs[f"reconstructed_{m}"], outputs[f"projected_{m}"])
                             for m in self.modalities) / len(self.modalities)
        terms = {"misa_similarity": similarity, "misa_difference": difference, "misa_reconstruction": reconstruction}
        return {name: self.weights[name] * value for name, value in terms.items()}

    def param_groups(self, cfg: TrainConfig) -> list[dict]:
        return encoder_groups(self, self.text, self.encoder_lr)
