"""SemanticMAC's semantic-centric label generation (SCLG): kNN pseudo labels with momentum.

Each sub-task (a unimodal or shared representation) gets its own label, in the label space of the
multimodal ground truth y_m, refined once per epoch: the k nearest training neighbours of a sample in
that sub-task's representation space pull its label towards theirs, weighted by a Gaussian kernel of
the scaled distance (eqs. 13-14), and the result is blended into the previous label with a momentum
schedule (eq. 15). Labels start as y_m and change only from the epoch after ``start_epoch``.

Labels live in buffers indexed by dataset row, so they are saved with the model and survive
checkpoint/resume; the buffers are sized on first update (or when a state dict is loaded).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

SCHEDULES = ("epoch", "constant", "none")


def knn_label_shift(features: Tensor, labels: Tensor, k: int, gamma: float, chunk: int = 2048) -> Tensor:
    """Candidate labels ``y_i + (1/k) Σ_{j∈kNN(i)} exp(-γ D_ij²) (y_j - y_i)``, ``D_ij = ‖r_i - r_j‖ / √d``.

    ``features`` (N, d), ``labels`` (N, w); a sample is never its own neighbour. Distances are
    computed ``chunk`` rows at a time so memory stays O(chunk · N).
    """
    n, dim = features.shape
    k = min(k, n - 1)
    if k < 1:
        return labels.clone()
    out = torch.empty_like(labels)
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n))
        dist = torch.cdist(features[rows], features) / math.sqrt(dim)
        dist[torch.arange(len(rows)), rows] = math.inf
        near, idx = dist.topk(k, largest=False)
        weight = torch.exp(-gamma * near.square())  # (n_rows, k)
        shift = (weight[..., None] * (labels[idx] - labels[rows, None, :])).mean(1)
        out[rows] = labels[rows] + shift
    return out


def momentum_update(previous: Tensor, candidate: Tensor, epoch: int, schedule: str = "epoch",
                    beta: float = 0.9) -> Tensor:
    """Blend the candidate into the previous label for the epoch ``epoch`` that will use it.

    ``epoch``: Self-MM's ``((e-1)/(e+1)) y + (2/(e+1)) ỹ``; ``constant``: ``β y + (1-β) ỹ``;
    ``none``: the candidate alone (the "w/o momentum updating" ablation).
    """
    if schedule == "epoch":
        return (epoch - 1) / (epoch + 1) * previous + 2 / (epoch + 1) * candidate
    if schedule == "constant":
        return beta * previous + (1 - beta) * candidate
    if schedule == "none":
        return candidate.clone()
    raise ValueError(f"momentum schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")


def project(head: str, labels: Tensor, low: float, high: float) -> Tensor:
    """Keep a candidate inside its label space: scores clipped to the training range, class labels
    clipped to [0, 1] and renormalised to a distribution, tags clipped to [0, 1]."""
    if head == "score":
        return labels.clamp(low, high)
    labels = labels.clamp(0.0, 1.0)
    if head == "logits":
        return labels / labels.sum(1, keepdim=True).clamp(min=1e-8)
    return labels


class KNNPseudoLabels(nn.Module):
    """Pseudo labels per (sub-task, head), as buffers ``<subtask>__<head>`` of shape (rows, width)."""

    def __init__(self, subtasks: list[str], heads: dict[str, int], *, k: int = 10, gamma: float = 2.0,
                 start_epoch: int = 1, schedule: str = "epoch", beta: float = 0.9):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"momentum schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
        self.subtasks, self.heads = list(subtasks), dict(heads)
        self.k, self.gamma, self.start_epoch, self.schedule, self.beta = k, gamma, start_epoch, schedule, beta
        for s in self.subtasks:
            for head, width in self.heads.items():
                self.register_buffer(f"{s}__{head}", torch.zeros(0, width))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def labels(self, subtask: str, head: str) -> Tensor:
        return getattr(self, f"{subtask}__{head}")

    def targets(self, subtask: str, head: str, index: Tensor, truth: Tensor) -> Tensor:
        """Labels of dataset rows ``index`` for training; ``truth`` (y_m in label space) until the
        first update."""
        if int(self.updates) == 0:
            return truth
        return self.labels(subtask, head)[index]

    @torch.no_grad()
    def update(self, epoch: int, features: dict[str, Tensor], truth: dict[str, Tensor], rows: Tensor,
               total_rows: int) -> bool:
        """End-of-epoch refresh from the training rows' representations; returns whether labels changed.

        Args:
            epoch: the 1-based epoch that just ended; labels for epoch ``epoch + 1`` are produced when
                ``epoch >= start_epoch`` (earlier epochs train on y_m).
            features: sub-task -> (len(rows), d) representations of the training rows.
            truth: head -> (len(rows), width) ground truth y_m in label space.
            rows: dataset row of each training sample; ``total_rows``: dataset size (buffer length).
        """
        if epoch < self.start_epoch:
            return False
        for s in self.subtasks:
            for head, y in truth.items():
                buf = self.labels(s, head)
                if buf.shape[0] != total_rows:
                    buf = torch.zeros(total_rows, y.shape[1])
                    setattr(self, f"{s}__{head}", buf)
                previous = y if int(self.updates) == 0 else buf[rows]
                candidate = knn_label_shift(features[s].float(), y, self.k, self.gamma)
                low, high = float(y.min()), float(y.max())
                buf[rows] = project(head, momentum_update(previous, candidate, epoch + 1, self.schedule, self.beta),
                                    low, high)
        self.updates += 1
        return True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Buffers are sized by the dataset: take the saved shape before loading."""
        for name, buf in list(self._buffers.items()):
            saved = state_dict.get(prefix + name)
            if saved is not None and buf is not None and saved.shape != buf.shape:
                self._buffers[name] = torch.empty_like(saved)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
