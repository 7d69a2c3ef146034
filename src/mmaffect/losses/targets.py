"""Loss targets shared by models: which samples count as one class for contrastive losses, and
per-sample task losses against hard or soft targets (pseudo labels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SENTIMENT_CLASSES = ("sign", "three", "seven")


def sentiment_classes(score: Tensor, scheme: str = "sign", threshold: float = 0.0) -> Tensor:
    """Integer classes of scores: ``sign`` (>= threshold vs below), ``three`` (negative, zero, positive),
    ``seven`` (rounded and clipped to [-3, 3])."""
    if scheme == "sign":
        return (score >= threshold).long()
    if scheme == "three":
        return torch.sign(score).long() + 1
    if scheme == "seven":
        return score.clamp(-3, 3).round().long() + 3
    raise ValueError(f"sentiment classes must be one of {', '.join(SENTIMENT_CLASSES)}, not {scheme!r}")


def same_class(batch: dict[str, Tensor], scheme: str = "sign", threshold: float = 0.0) -> Tensor:
    """(B, B) bool: samples i and j share a class. Class labels win over tags over scores: single
    label -> equal class; multi-label -> at least one common tag; score -> :func:`sentiment_classes`."""
    if "label" in batch:
        y = batch["label"]
        return y[:, None] == y[None, :]
    if "labels" in batch:
        tags = batch["labels"].float()
        return (tags @ tags.T) > 0
    y = sentiment_classes(batch["score"], scheme, threshold)
    return y[:, None] == y[None, :]


def per_sample_loss(head: str, prediction: Tensor, target: Tensor, score_loss: str = "l1") -> Tensor:
    """(B,) loss of one head against a target in label space: score (B,) or (B, 1) with L1/MSE, class
    distribution (B, C) with soft cross-entropy, tag probabilities (B, K) with BCE (mean over tags)."""
    if head == "score":
        target = target.reshape(prediction.shape)
        diff = prediction - target
        return diff.abs() if score_loss == "l1" else diff.square()
    if head == "logits":
        if target.dim() == 1:
            return F.cross_entropy(prediction, target.long(), reduction="none")
        return -(target * prediction.log_softmax(-1)).sum(-1)
    return F.binary_cross_entropy_with_logits(prediction, target.float(), reduction="none").mean(-1)


def truth_targets(batch: dict[str, Tensor], heads: dict[str, int]) -> dict[str, Tensor]:
    """The batch's ground truth per head, in label space (score column, one-hot, multi-hot)."""
    out = {}
    if "score" in heads:
        out["score"] = batch["score"].float()[:, None]
    if "logits" in heads:
        out["logits"] = F.one_hot(batch["label"].long(), heads["logits"]).float()
    if "tags" in heads:
        out["tags"] = batch["labels"].float()
    return out
