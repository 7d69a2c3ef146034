"""Turning per-modality inputs into masked sequences, and pooling them back.

Every block here takes ``(B, L, d)`` features with a ``(B, L)`` bool mask (True = real step), so a
model written against sequences also runs on vector-only datasets: a vector is a length-1 sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor


def as_sequence(batch: dict[str, Tensor], modality: str) -> tuple[Tensor, Tensor]:
    """The modality's ``(seq, mask)`` when the batch has sequences, else its vector as one step.

    A sample whose sequence is empty (no real step) keeps one all-zero step marked real, so attention
    never sees a row with every key masked (which would give NaN) and pooling never divides by zero.
    """
    if f"{modality}_seq" not in batch:
        vector = batch[modality]
        return vector[:, None, :], torch.ones(vector.shape[0], 1, dtype=torch.bool, device=vector.device)
    seq, mask = batch[f"{modality}_seq"], batch[f"{modality}_mask"]
    empty = ~mask.any(1)
    if empty.any():
        mask, seq = mask.clone(), seq.clone()
        mask[empty, 0] = True
        seq[empty, 0] = 0.0
    return seq, mask


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the step axis of ``(B, L, d)`` counting real steps only; ``mask=None`` = all real."""
    if mask is None:
        return x.mean(1)
    weights = mask.to(x.dtype)[..., None]
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def adaptive_pool_weights(mask: Tensor, bins: int) -> Tensor:
    """``(B, bins, L)`` averaging weights of adaptive average pooling over each row's real steps.

    Bin b of a row with n real (leading) steps averages steps ``[floor(b n / bins), ceil((b+1) n / bins))``,
    the same bins as :func:`torch.nn.functional.adaptive_avg_pool1d` on the unpadded row, so padding
    never leaks into a bin. Assumes real steps come first (padded batches).
    """
    lengths = mask.sum(1).clamp(min=1)[:, None]  # (B, 1)
    b = torch.arange(bins, device=mask.device)[None, :]
    start = (b * lengths) // bins
    end = ((b + 1) * lengths + bins - 1) // bins
    steps = torch.arange(mask.shape[1], device=mask.device)[None, None, :]
    inside = (steps >= start[..., None]) & (steps < end[..., None])
    weights = inside.float()
    return weights / weights.sum(-1, keepdim=True)


def masked_adaptive_pool(x: Tensor, mask: Tensor | None, bins: int) -> Tensor:
    """Adaptive average pooling of ``(..., B, L, d)``-shaped ``x`` to ``bins`` tokens over real steps."""
    if mask is None:
        mask = torch.ones(x.shape[-3], x.shape[-2], dtype=torch.bool, device=x.device)
    return adaptive_pool_weights(mask, bins).to(x.dtype) @ x
