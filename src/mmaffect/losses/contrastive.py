"""Contrastive losses of the seed methods, written once and tested on hand-worked cases.

- :func:`supcon_loss`: supervised contrastive (SupCon) with the normaliser choice that separates
  SemanticMAC (|P(i)|, the number of positives) from DeepMSI-MER (B - 1).
- :func:`info_nce_pairs`: InfoNCE over explicit positive and negative pair similarities of one
  sample (SemanticMAC's intra-sample loss).
- :func:`class_level_nce`: MRE's class-level NCE between two modalities (eq. 7).
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
