"""MMIM, MultiModal InfoMax (Han et al., EMNLP 2021).

Encoders (a bidirectional LSTM per modality, or the fine-tuned MiniLM for text) feed a fusion
network ``z = tanh(W2 tanh(W1 [h_t; h_a; h_v]))`` with the task heads on ``z``. Two kinds of mutual
information are maximised on top of the task loss:

- input level, between text and each other modality: a Gaussian ``q(h_s | h_t)`` (MLPs for mean and
  log-variance, MMILB) gives the lower bound ``E log q``. MMIM trains the estimator and the network
  with *two optimizers*: the estimator maximises the bound on detached features
  (``mmim_estimator``), the main network maximises it with the estimator held fixed (``mmim_lld``);
  with a score head it also maximises the entropy of the positive and of the negative rows'
  features (``mmim_entropy``, ``log det`` of their covariances);
- fusion level: CPC, an InfoNCE loss predicting each modality's ``h_m`` from ``z`` (``mmim_nce``).

:meth:`configure_optimizers` returns the main optimizer and the estimator's; every term is computed
so that its gradient reaches only the parameters its optimizer owns, so the engine's single backward
pass per batch does both of MMIM's stages (MMSA runs an epoch of estimator steps, then an epoch of
network steps). Differences from MMSA's MMIM, on purpose: the log-likelihood
includes the ``-log σ²/2`` term and the log-variance is bounded by tanh (MMSA omits both, so its
estimator can raise the bound just by inflating the variance); the entropy uses the positive/negative
rows of the current batch (MMSA adds those of the previous batch, state a resumed run would lose),
through a fixed random projection to a quarter of the width (MMSA's projection sits in the
estimator's optimizer but only the network's step gives it a gradient, so it never moves there
either); without text, the first modality is the anchor of the input-level pairs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mmaffect.models.base import Heads, ModelSpec
from mmaffect.models.baselines.zoo_common import ZOO_SCHEDULE, LSTMEncoder, ZooModel, encoder_groups, use_minilm
from mmaffect.models.registry import register_model

if TYPE_CHECKING:
    from mmaffect.training.config import TrainConfig


class GaussianEstimator(nn.Module):
    """``q(y | x) = N(μ(x), diag σ²(x))`` with ``log σ² = tanh(MLP(x))``; :meth:`forward` is the
    mean log-likelihood up to the constant ``-d/2 log 2π`` (MMIM's MMILB lower bound)."""

    def __init__(self, x_dim: int, y_dim: int):
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(x_dim, y_dim), nn.ReLU(), nn.Linear(y_dim, y_dim))
        self.logvar = nn.Sequential(nn.Linear(x_dim, y_dim), nn.ReLU(), nn.Linear(y_dim, y_dim), nn.Tanh())

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        logvar = self.logvar(x)
        return (-(self.mu(x) - y).pow(2) / (2 * logvar.exp()) - logvar / 2).sum(-1).mean()


def infonce(target: Tensor, predicted: Tensor) -> Tensor:
    """CPC's InfoNCE over a batch: row i of ``predicted`` should match row i of ``target`` (cosine)."""
    target = nn.functional.normalize(target, dim=-1)
    predicted = nn.functional.normalize(predicted, dim=-1)
    scores = target @ predicted.t()
    return -(scores.diagonal() - scores.logsumexp(-1)).mean()


def group_entropy(features: Tensor, weights: Tensor, eps: float = 1e-3) -> Tensor:
    """``log det`` of the covariance of the rows selected by 0/1 ``weights`` (plus ``eps·I``): the
    Gaussian entropy up to constants; 0 rows give ``log det(eps·I)`` and no gradient."""
    count = weights.sum().clamp(min=1)
    mean = (weights[:, None] * features).sum(0) / count
    centred = (features - mean) * weights[:, None]
    covariance = centred.t() @ centred / count
    return torch.logdet(covariance + eps * torch.eye(features.shape[1], device=features.device))


@register_model("mmim", description="MultiModal InfoMax: MI lower bounds (own optimizer) + CPC at fusion",
                train_defaults={"batch_size": 32, "lr": 1e-3, "weight_decay": 1e-4, "grad_clip": 1.0, **ZOO_SCHEDULE})
class MMIM(ZooModel):
    def __init__(self, spec: ModelSpec, *, text_hidden: int = 32, audio_hidden: int = 16, video_hidden: int = 16,
                 out_dim: int = 16, fusion_dim: int = 128, dropout: float = 0.1, alpha: float = 0.1,
                 beta: float = 0.1, estimator_lr: float = 1e-3, estimator_weight_decay: float = 1e-4,
                 text_encoder: str = "features", encoder_lr: float = 5e-5, max_tokens: int = 64,
                 sequences: bool = True):
        super().__init__(spec, sequences)
        hidden = {"t": text_hidden, "a": audio_hidden, "v": video_hidden}
        self.alpha, self.beta = alpha, beta
        self.estimator_lr, self.estimator_weight_decay = estimator_lr, estimator_weight_decay
        self.encoder_lr = encoder_lr
        self.text = use_minilm(self, text_encoder, max_tokens)
        self.encoders = nn.ModuleDict({
            m: nn.Sequential(LSTMEncoder(self.step_dims[m], hidden[m], bidirectional=True), nn.Dropout(dropout),
                             nn.Linear(2 * hidden[m], out_dim))
            for m in self.modalities if not (m == "t" and self.text is not None)})
        self.widths = {m: out_dim for m in self.encoders} | ({"t": self.text.out_dim} if self.text is not None else {})
        anchor = "t" if "t" in self.modalities else self.modalities[0]
        self.pairs = [(anchor, m) for m in self.modalities if m != anchor]
        self.estimators = nn.ModuleDict({f"{x}->{y}": GaussianEstimator(self.widths[x], self.widths[y])
                                         for x, y in self.pairs})
        self.with_entropy = "score" in spec.heads
        if self.with_entropy:
            gen = torch.Generator().manual_seed(0)
            for _, y in self.pairs:  # fixed xavier-normal projections, saved with the weights
                std = math.sqrt(2 / (self.widths[y] + self.widths[y] // 4))
                self.register_buffer(f"entropy_projection_{y}", torch.randn(self.widths[y], self.widths[y] // 4,
                                                                            generator=gen) * std)
        self.fusion = nn.Sequential(nn.Dropout(dropout), nn.Linear(sum(self.widths.values()), fusion_dim), nn.Tanh(),
                                    nn.Linear(fusion_dim, fusion_dim), nn.Tanh())
        self.heads = Heads(fusion_dim, spec.heads)
        self.cpc = nn.ModuleDict({m: nn.Linear(fusion_dim, self.widths[m]) for m in self.modalities})

    def encode(self, batch: dict[str, Tensor], m: str) -> Tensor:
        if m == "t" and self.text is not None:
            return self.text(batch)
        lstm, drop, linear = self.encoders[m]
        return linear(drop(lstm(*self.steps(batch, m))))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        encoded = {m: self.encode(batch, m) for m in self.modalities}
        fused = self.fusion(torch.cat([encoded[m] for m in self.modalities], dim=-1))
        return {**self.heads(fused), "features": fused, **{f"features_{m}": h for m, h in encoded.items()}}

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        h = {m: outputs[f"features_{m}"] for m in self.modalities}
        fused = outputs["features"]
        zero = fused.new_zeros(())
        estimator_bound, network_bound, entropy = zero, zero, zero
        for x, y in self.pairs:
            estimator = self.estimators[f"{x}->{y}"]
            estimator_bound = estimator_bound + estimator(h[x].detach(), h[y].detach())
            frozen = {name: p.detach() for name, p in estimator.named_parameters()}
            network_bound = network_bound + functional_call(estimator, frozen, (h[x], h[y]))
            if self.with_entropy:
                projected = torch.tanh(h[y] @ getattr(self, f"entropy_projection_{y}"))
                score = batch["score"]
                entropy = entropy + 0.25 * (group_entropy(projected, (score > 0).float())
                                            + group_entropy(projected, (score < 0).float()))
        nce = sum((infonce(h[m], self.cpc[m](fused)) for m in self.modalities), zero)
        terms = {"mmim_estimator": -estimator_bound, "mmim_lld": -self.beta * network_bound,
                 "mmim_nce": self.alpha * nce}
        if self.with_entropy:
            terms["mmim_entropy"] = -self.beta * entropy
        return terms

    def estimator_parameters(self) -> list[nn.Parameter]:
        return list(self.estimators.parameters())

    def param_groups(self, cfg: TrainConfig) -> list[dict]:
        own = {id(p) for p in self.estimator_parameters()}
        groups = encoder_groups(self, self.text, self.encoder_lr)
        return [{**g, "params": [p for p in g["params"] if id(p) not in own]} for g in groups]

    def configure_optimizers(self, cfg: TrainConfig) -> list[torch.optim.Optimizer] | None:
        """MMIM's two optimizers: the main network (Adam, ``train.lr``/``train.weight_decay``, the text
        encoder at ``encoder_lr``) and the MI estimators (Adam, ``estimator_lr``)."""
        main = torch.optim.Adam(self.param_groups(cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
        if not self.pairs:
            return [main]
        return [main, torch.optim.Adam(self.estimator_parameters(), lr=self.estimator_lr,
                                       weight_decay=self.estimator_weight_decay)]
