"""The interface every model follows, so one trainer serves all of them.

A model is built from a :class:`ModelSpec` (input widths per modality and the heads the task needs),
maps a batch dict to an output dict holding those heads (``score`` (B,), ``logits`` (B, C),
``tags`` (B, K)) plus anything else it wants to expose, and may declare extra loss terms on top of
the task loss. It never loops over epochs, reads files or prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn


@dataclass(frozen=True)
class ModelSpec:
    """What a model needs to know about its inputs and outputs.

    Attributes:
        dims: utterance-vector width per modality, in the dataset's modality order.
        seq_dims: per-step width of each modality that has sequences.
        heads: output name -> width, from :attr:`mmaffect.tasks.Task.heads`.
    """

    dims: dict[str, int]
    seq_dims: dict[str, int]
    heads: dict[str, int]

    def to_dict(self) -> dict:
        return {"dims": dict(self.dims), "seq_dims": dict(self.seq_dims), "heads": dict(self.heads)}

    @classmethod
    def from_dict(cls, raw: dict) -> ModelSpec:
        return cls(dims=raw["dims"], seq_dims=raw["seq_dims"], heads=raw["heads"])


class AffectModel(nn.Module):
    """Base class: subclasses implement ``forward(batch) -> outputs``.

    ``input_form`` tells the data layer whether to load per-step sequences (``"sequence"``) or only
    utterance vectors (``"vector"``).
    """

    input_form: ClassVar[str] = "vector"

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Loss terms beyond the task loss (contrastive, relevance, ...), by name; none by default."""
        return {}


class Heads(nn.Module):
    """One linear layer per task head; ``score`` is squeezed to (B,)."""

    def __init__(self, in_dim: int, heads: dict[str, int]):
        super().__init__()
        self.layers = nn.ModuleDict({name: nn.Linear(in_dim, width) for name, width in heads.items()})

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        out = {name: layer(h) for name, layer in self.layers.items()}
        if "score" in out:
            out["score"] = out["score"].squeeze(-1)
        return out


def mlp(in_dim: int, hidden: int, layers: int, dropout: float) -> nn.Sequential:
    """``layers`` blocks of Linear -> ReLU -> Dropout; output width ``hidden`` (``in_dim`` if 0 layers)."""
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*blocks)


class SubNet(nn.Module):
    """The TFN/LMF/LF-DNN utterance-vector encoder: BatchNorm -> Dropout -> 3 x (Linear, ReLU).

    BatchNorm over the raw features makes unscaled inputs (openSMILE values up to ~400) usable.
    """

    def __init__(self, in_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.BatchNorm1d(in_dim), nn.Dropout(dropout),
            nn.Linear(in_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
