"""SPCL's support set and loss term: a per-class queue of recent training representations whose means
are the class prototypes of :func:`~mmaffect.losses.contrastive.prototype_contrastive_loss`.

Why a queue: a batch of a few dialogues often lacks some classes (MELD's fear and disgust are 2-3 %
of the turns), so prototypes drawn from the batch alone would be missing exactly where they help. The
queue keeps the last ``size`` L2-normalised training representations of every class; a prototype is
their mean. The representations were made by earlier weights (like MoCo's memory bank, but without a
momentum encoder); a short queue keeps them recent.

Order within a batch: the loss reads the prototypes of the batches before it, then the batch is
pushed, so a sample is never part of its own prototype. Only training forward passes push (the
trainer calls ``extra_losses`` on training batches only, and :meth:`PrototypeContrast.forward` checks
``self.training``). The queue is made of registered buffers, so it is saved with the weights and an
interrupted run resumes exactly; under torchrun each rank's queue holds its own shard's samples
(buffers are not synchronised), which changes only which recent samples make a prototype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmaffect.errors import ConfigError
from mmaffect.losses.contrastive import prototype_contrastive_loss


class PrototypeQueue(nn.Module):
    """``classes`` ring buffers of ``size`` normalised ``width``-d representations each."""

    def __init__(self, classes: int, width: int, size: int):
        super().__init__()
        if size < 1:
            raise ConfigError(f"the SPCL queue needs at least one slot per class, not {size}")
        self.size = size
        self.register_buffer("bank", torch.zeros(classes, size, width))
        self.register_buffer("pushed", torch.zeros(classes, dtype=torch.long))  # samples ever pushed per class

    def prototypes(self) -> tuple[Tensor, Tensor]:
        """``(C, width)`` mean of each class's queued representations and ``(C,)`` bool: has any."""
        filled = self.pushed.clamp(max=self.size)
        slots = torch.arange(self.size, device=filled.device)[None, :] < filled[:, None]
        sums = (self.bank * slots[..., None]).sum(1)
        return sums / filled.clamp(min=1)[:, None], filled > 0

    @torch.no_grad()
    def push(self, features: Tensor, labels: Tensor) -> None:
        """Append each row of ``features`` (B, width) to its class's queue, oldest entries replaced first."""
        normalised = F.normalize(features.detach().float(), dim=-1)
        for label in labels.unique().tolist():
            rows = normalised[labels == label][-self.size:]
            slots = (self.pushed[label] + torch.arange(len(rows), device=rows.device)) % self.size
            self.bank[label, slots] = rows
            self.pushed[label] += len(rows)


class PrototypeContrast(nn.Module):
    """The ``spcl`` loss term: ``weight`` x SPCL loss of a batch's features against the queue's prototypes."""

    def __init__(self, classes: int, width: int, weight: float, queue_size: int, temperature: float):
        super().__init__()
        self.weight = weight
        self.temperature = temperature
        self.queue = PrototypeQueue(classes, width, queue_size)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        prototypes, has_prototype = self.queue.prototypes()
        loss = prototype_contrastive_loss(features, labels, prototypes, has_prototype, self.temperature)
        if self.training:
            self.queue.push(features, labels)
        return self.weight * loss


def prototype_contrast(heads: dict[str, int], width: int, weight: float, queue_size: int = 64,
                       temperature: float = 0.1) -> PrototypeContrast | None:
    """The SPCL term of a model with ``width``-d features, or None with ``weight`` 0 (off: no buffers,
    so checkpoints without it load unchanged). Needs class labels (a ``logits`` head)."""
    if not weight:
        return None
    if "logits" not in heads:
        raise ConfigError("model_args.spcl needs class labels (a classification task with a logits head)")
    return PrototypeContrast(heads["logits"], width, weight, queue_size, temperature)


def spcl_terms(term: PrototypeContrast | None, outputs: dict[str, Tensor], batch: dict[str, Tensor]
               ) -> dict[str, Tensor]:
    """``{"spcl": ...}`` over ``outputs["features"]`` and the batch's class labels, or nothing when off."""
    if term is None:
        return {}
    return {"spcl": term(outputs["features"], batch["label"])}
