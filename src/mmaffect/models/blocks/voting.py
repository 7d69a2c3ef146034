"""Decision-level fusion of several classifiers (INT2-M3AP, seed 000): majority vote with a stated
tie-break, and mean-probability fusion for comparison.

INT2-M3AP votes with four classifiers (image, text, audio, tri-modal), so 2-2 and 1-1-1-1 ties are
common and the tie-break decides a visible share of predictions; it is therefore a choice, not an
accident of ``argmax`` (which would silently prefer the lowest class id):

- ``"prob"`` (SEEDS_SPEC §9 item 7): among the tied classes the one with the largest summed
  probability over all voters; if still tied, the ``priority`` voter's class when it is among them,
  else the lowest class id.
- ``"priority"``: the ``priority`` voter's class when it is among the tied classes, else the lowest id.
- ``"lowest"``: the lowest class id (what a bare argmax over vote counts does).
"""

from __future__ import annotations

import torch
from torch import Tensor

TIE_BREAKS = ("prob", "priority", "lowest")


def vote_counts(probs: Tensor) -> Tensor:
    """``(V, B, C)`` voter probabilities -> ``(B, C)`` number of voters whose argmax is each class."""
    votes = probs.argmax(-1)  # (V, B)
    return torch.nn.functional.one_hot(votes, probs.shape[-1]).sum(0)


def majority_vote(probs: Tensor, tie_break: str = "prob", priority: int = -1) -> Tensor:
    """The winning class ``(B,)`` of ``(V, B, C)`` voter probabilities (see the module doc for ties).

    ``priority`` indexes the voter preferred in ties (default: the last one, INT2-M3AP's tri-modal Y_m).
    """
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {', '.join(TIE_BREAKS)}, not {tie_break!r}")
    counts = vote_counts(probs)
    tied = counts == counts.max(-1, keepdim=True).values  # (B, C)
    n_classes = probs.shape[-1]
    # lexicographic keys: the larger key wins; the lowest class id is the last resort
    key = tied.float() * 4.0
    if tie_break in ("prob", "priority"):
        preferred = torch.nn.functional.one_hot(probs[priority].argmax(-1), n_classes).float()
        key = key + 2.0 * (preferred * tied)
    if tie_break == "prob":
        summed = probs.sum(0).masked_fill(~tied, float("-inf"))
        best = summed == summed.max(-1, keepdim=True).values
        key = key + 16.0 * (best & tied).float()
    key = key - torch.arange(n_classes, device=probs.device) / (2.0 * n_classes)
    return key.argmax(-1)


def vote_distribution(probs: Tensor, tie_break: str = "prob", priority: int = -1) -> Tensor:
    """``(B, C)`` distribution whose argmax is :func:`majority_vote`: vote shares ``counts / V`` with
    ``1 / (2V)`` added to the winner (less than one vote, so only ties change), renormalised. This
    keeps the vote usable where a probability is expected (metrics, prediction tables)."""
    n_voters = probs.shape[0]
    winner = majority_vote(probs, tie_break, priority)
    shares = vote_counts(probs).float() / n_voters
    shares = shares + torch.nn.functional.one_hot(winner, probs.shape[-1]).float() / (2.0 * n_voters)
    return shares / shares.sum(-1, keepdim=True)


def mean_probability(probs: Tensor) -> Tensor:
    """``(V, B, C)`` -> ``(B, C)`` mean of the voters' probabilities."""
    return probs.mean(0)
