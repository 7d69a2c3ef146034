"""Pieces the context models share: turn grids, the no-context switch, per-dialogue reversal."""

from __future__ import annotations

import torch
from torch import Tensor


def turn_inputs(batch: dict[str, Tensor], modalities: list[str]) -> Tensor:
    """The (D, T, sum d) grid of every turn's utterance vectors, modalities concatenated."""
    return torch.cat([batch[f"{m}_dlg"] for m in modalities], dim=-1)


def one_turn_dialogues(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Each real turn as its own dialogue of length one: ``(n, 1, d)`` inputs and ``(n, 1)`` mask.

    This is the ``context=False`` switch of every context model: same modules and weights, no
    information across turns. Rows keep ``mask`` order, which is the order a model returns."""
    return x[mask][:, None], torch.ones(int(mask.sum()), 1, dtype=torch.bool, device=mask.device)


def reverse_turns(mask: Tensor) -> Tensor:
    """(D, T) gather index that reverses the real turns of each dialogue and leaves padding in place.

    Padding stays at the end, so a backward pass over reversed dialogues reads real turns first
    and padding can never leak into them. The index is its own inverse."""
    lengths = mask.sum(1, keepdim=True)
    steps = torch.arange(mask.shape[1], device=mask.device)[None, :].expand_as(mask)
    return torch.where(steps < lengths, lengths - 1 - steps, steps)


def speaker_grid(batch: dict[str, Tensor]) -> Tensor:
    """The batch's (D, T) speaker codes, or all zeros (one speaker) when the dataset has none."""
    if "speaker_ids" in batch:
        return batch["speaker_ids"]
    return torch.zeros_like(batch["turn_mask"], dtype=torch.long)
