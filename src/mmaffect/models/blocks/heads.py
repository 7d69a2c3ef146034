"""Prediction heads with a hidden layer (the seed models' per-sub-task MLPs)."""

from __future__ import annotations

from torch import Tensor, nn


class MLPHeads(nn.Module):
    """One ``Linear(d, hidden) -> GELU -> Dropout -> Linear(hidden, width)`` per task head;
    ``score`` is squeezed to (B,), like :class:`mmaffect.models.base.Heads`."""

    def __init__(self, in_dim: int, heads: dict[str, int], hidden: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width))
            for name, width in heads.items()})

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        out = {name: layer(h) for name, layer in self.layers.items()}
        if "score" in out:
            out["score"] = out["score"].squeeze(-1)
        return out
