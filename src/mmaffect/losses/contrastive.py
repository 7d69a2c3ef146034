"""Contrastive losses of the seed methods, written once and tested on hand-worked cases.

- :func:`supcon_loss`: supervised contrastive (SupCon) with the normaliser choice that separates
  SemanticMAC (|P(i)|, the number of positives) from DeepMSI-MER (B - 1).
- :func:`info_nce_pairs`: InfoNCE over explicit positive and negative pair similarities of one
  sample (SemanticMAC's intra-sample loss).
- :func:`class_level_nce`: MRE's class-level NCE between two modalities (eq. 7).
- :func:`prototype_contrastive_loss`: SPCL's supervised prototypical contrastive loss (Song et al.
  2022): SupCon whose candidates also include one prototype per class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

NORMALISERS = ("positives", "batch")


def supcon_loss(features: Tensor, positives: Tensor, temperature: float = 0.07, normaliser: str = "positives"
                ) -> Tensor:
    """``mean_i -(1/n_i) Σ_{p∈P(i)} log(exp(f_i·f_p/τ) / Σ_{a≠i} exp(f_i·f_a/τ))`` over L2-normalised ``f``.

    Args:
        features: (B, d); normalised here.
        positives: (B, B) bool, True where j is a positive of anchor i (the diagonal is ignored).
        normaliser: ``"positives"`` -> n_i = |P(i)| (SupCon, SemanticMAC); ``"batch"`` -> n_i = B - 1.
    Anchors without a positive are left out of the mean; with none at all the loss is 0 (still
    connected to the graph, so a backward pass works).
    """
    if normaliser not in NORMALISERS:
        raise ValueError(f"normaliser must be one of {', '.join(NORMALISERS)}, not {normaliser!r}")
    f = F.normalize(features, dim=-1)
    logits = f @ f.T / temperature
    self_mask = torch.eye(len(f), dtype=torch.bool, device=f.device)
    log_prob = logits - torch.logsumexp(logits.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
    pos = positives & ~self_mask
    count = pos.sum(1)
    has = count > 0
    if not has.any():
        return logits.sum() * 0.0
    summed = (log_prob * pos).sum(1)
    norm = count.clamp(min=1) if normaliser == "positives" else torch.full_like(count, max(len(f) - 1, 1))
    return -(summed[has] / norm[has]).mean()


def info_nce_pairs(positive_sims: Tensor, negative_sims: Tensor) -> Tensor:
    """``mean over samples and positive pairs of -log(e^{s+} / (e^{s+} + Σ_neg e^{s-}))``.

    ``positive_sims`` (B, P) and ``negative_sims`` (B, N) are already-tempered similarities of one
    sample's pairs; each positive competes with all the sample's negatives.
    """
    neg = torch.logsumexp(negative_sims, dim=1, keepdim=True).expand_as(positive_sims)
    denominator = torch.logaddexp(positive_sims, neg)
    return (denominator - positive_sims).mean()


def class_level_nce(z1: Tensor, z2: Tensor, same_class: Tensor, temperature: float = 0.1, eps: float = 1e-6
                    ) -> Tensor:
    """MRE eq. 7 between modalities s1 (``z1``) and s2 (``z2``), both (B, d).

    ``P(i, j) = softmax_j(cos(z1_i, z2_j) / τ)``; the loss is ``-mean_{Pos} log P - mean_{Neg} log(1 - P)``
    with Pos/Neg the (i, j) pairs of the same/different class (``same_class`` (B, B) bool, i = j
    included). A term with no pairs is 0.
    """
    sims = F.normalize(z1, dim=-1) @ F.normalize(z2, dim=-1).T / temperature
    log_p = sims.log_softmax(1)
    loss = sims.sum() * 0.0
    if same_class.any():
        loss = loss - log_p[same_class].mean()
    if (~same_class).any():
        loss = loss - torch.log((1 - log_p[~same_class].exp()).clamp(min=eps)).mean()
    return loss


def prototype_contrastive_loss(features: Tensor, labels: Tensor, prototypes: Tensor, has_prototype: Tensor,
                               temperature: float = 0.1) -> Tensor:
    """SPCL (Song et al., EMNLP 2022): each sample is pulled toward its class prototype and the other
    samples of its class, and pushed from the rest of the batch and the other classes' prototypes.

    ``L_i = -1/(|P(i)| + 1) Σ_{p ∈ P(i) ∪ {T_{y_i}}} log(e^{s_ip/τ} / (Σ_{a ≠ i} e^{s_ia/τ} + Σ_c e^{s(i, T_c)/τ}))``
    with ``s`` the cosine similarity, P(i) the other batch samples of class ``y_i`` and ``T_c`` the
    prototype of class c. Why prototypes: a small batch (a few dialogues) often holds no other sample
    of a rare class, so plain SupCon has no positive for it; the prototype (kept outside the batch,
    e.g. :class:`mmaffect.models.blocks.prototypes.PrototypeQueue`) always is one.

    Args:
        features: (B, d) representations; normalised here.
        labels: (B,) class ids.
        prototypes: (C, d) one row per class; normalised here (rows without a prototype are ignored).
        has_prototype: (C,) bool, False for a class with no prototype yet: it is neither a candidate
            nor a positive (its samples then have only their batch positives).
    Anchors with neither a batch positive nor a prototype are left out of the mean; with none at all
    the loss is 0, still connected to the graph.
    """
    f = F.normalize(features, dim=-1)
    t = F.normalize(prototypes, dim=-1)
    batch_logits = (f @ f.T / temperature).masked_fill(torch.eye(len(f), dtype=torch.bool, device=f.device),
                                                       float("-inf"))
    proto_logits = (f @ t.T / temperature).masked_fill(~has_prototype[None, :], float("-inf"))
    log_denominator = torch.logsumexp(torch.cat([batch_logits, proto_logits], 1), dim=1, keepdim=True)
    same = (labels[:, None] == labels[None, :]).fill_diagonal_(False)
    own = F.one_hot(labels, len(prototypes)).bool() & has_prototype[None, :]
    batch_log_prob = (batch_logits - log_denominator).masked_fill(~same, 0.0)
    proto_log_prob = (proto_logits - log_denominator).masked_fill(~own, 0.0)
    count = same.sum(1) + own.sum(1)
    has = count > 0
    if not has.any():
        return f.sum() * 0.0
    summed = batch_log_prob.sum(1) + proto_log_prob.sum(1)
    return -(summed[has] / count[has]).mean()
