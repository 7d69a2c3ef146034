"""The interface every model follows, so one trainer serves all of them.

A model is built from a :class:`ModelSpec` (input widths per modality and the heads the task needs),
maps a batch dict to an output dict holding those heads (``score`` (B,), ``logits`` (B, C),
``tags`` (B, K)) plus anything else it wants to expose, and may declare extra loss terms on top of
the task loss. It never loops over epochs, reads files or prints.

What goes into a batch follows :attr:`AffectModel.needs` (keys in :mod:`mmaffect.data.dataset`):
``"vectors"`` utterance vectors ``m`` (B, d); ``"sequences"`` per-step ``m_seq``/``m_mask``, and the
model is refused on a dataset where a modality has only vectors; ``"sequences?"`` the same keys for
every modality that has sequences, while a modality without them is read as its vector, a one-step
sequence (:func:`mmaffect.models.blocks.as_sequence`) -- one registered name then serves token/frame
data and vector-only corpora (mosi-bclstm) alike; ``"frames"`` grayscale face crops ``v_frames``
(B, T, H, W) float in [0, 1] with ``v_frames_mask`` (B, T), from datasets that keep them (``cache:``),
loaded on first use; ``"tokens"`` ``t_tokens`` (B, L) int64 and ``t_tokens_mask`` (B, L) bool from
the tokenizer named by :attr:`AffectModel.tokenizer`; ``"dialogues"`` whole dialogues: ``m_dlg``
(D, T, d), ``turn_mask`` (D, T), ``dlg_rows`` (D, T), ``speaker_ids`` (D, T), with the heads
returned for the real turns in ``turn_mask`` order. A model whose inputs depend on its arguments
(e.g. face crops only with ``video_frames=True``) sets ``self.needs`` in ``__init__``; the trainer
reads the instance's value.

Hooks with defaults, for models whose training is more than "forward + task loss + extra losses"
(the trainer calls them; a model overrides only what it needs):

- :meth:`AffectModel.param_groups`: e.g. a pretrained encoder at a lower learning rate than the head.
- :meth:`AffectModel.configure_optimizers`: models that need more than one optimizer.
- :meth:`AffectModel.training_step`: the named loss terms of one batch.
- :meth:`AffectModel.on_epoch_end`: label memories, momentum pseudo-labels; state kept there must
  be registered buffers so it is saved with the weights and survives an exact resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from mmaffect.data.dataset import AffectDataset
    from mmaffect.tasks import Task
    from mmaffect.training.config import TrainConfig


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


@dataclass
class EpochState:
    """What :meth:`AffectModel.on_epoch_end` sees after a training epoch.

    Attributes:
        epoch: 1-based number of the epoch just finished.
        data: the (standardised) dataset being trained on.
        train_rows: the training rows.
        outputs: eval-mode forward over the given rows, every output key (features too), in row
            order; under data parallelism each rank computes a shard and all ranks get every row,
            so every rank must make the same calls (the hook runs on every rank, and buffers it
            updates from these outputs stay identical across ranks).
    """

    epoch: int
    data: AffectDataset
    train_rows: np.ndarray
    outputs: Callable[[np.ndarray], dict[str, Tensor]]


class AffectModel(nn.Module):
    """Base class: subclasses implement ``forward(batch) -> outputs``.

    Class attributes (a subclass may also set them per instance in ``__init__``):
        needs: the batch inputs it reads, any of ``"vectors"``, ``"sequences"``, ``"sequences?"``
            (sequences where a modality has them, else its vector), ``"frames"``, ``"tokens"``,
            ``"dialogues"`` (utterance vectors are always in a batch).
        tokenizer: with ``"tokens"``, the tokenizer name (``"minilm"`` = the packaged MiniLM, else a
            transformers name or folder).
        max_tokens: word pieces kept per row with ``"tokens"``.
        input_form: the older switch, kept so existing models and callers work: ``"sequence"``
            means ``needs = {"sequences"}``; it is derived from ``needs`` otherwise (``"sequence"``
            with ``"sequences"`` or ``"sequences?"``: readers then load the sequences they have).
    """

    needs: ClassVar[frozenset[str]] = frozenset({"vectors"})
    tokenizer: ClassVar[str | None] = None
    max_tokens: ClassVar[int] = 128
    input_form: ClassVar[str] = "vector"

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "input_form" in cls.__dict__ and "needs" not in cls.__dict__:
            cls.needs = frozenset({"sequences"} if cls.input_form == "sequence" else {"vectors"})
        elif "needs" in cls.__dict__:
            cls.needs = frozenset(cls.needs)
            cls.input_form = "sequence" if cls.needs & {"sequences", "sequences?"} else "vector"

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Loss terms beyond the task loss (contrastive, relevance, ...), by name; none by default."""
        return {}

    def param_groups(self, cfg: TrainConfig) -> list[dict]:
        """Optimizer parameter groups; a group may set its own ``"lr"``/``"weight_decay"`` (else
        ``cfg.lr``/``cfg.weight_decay``). Default: one group of all trainable parameters."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def configure_optimizers(self, cfg: TrainConfig) -> list[torch.optim.Optimizer] | None:
        """Optimizers for models that need several (e.g. MMIM's MI estimator and main network);
        None (default) lets the trainer build one ``cfg.optimizer`` over :meth:`param_groups`.

        With several optimizers the trainer still sums the terms of :meth:`training_step`, runs one
        backward pass and steps every optimizer; give them disjoint parameters. Per-step schedules
        scale every group of every optimizer.
        """
        return None

    def training_step(self, batch: dict[str, Tensor], task: Task) -> dict[str, Tensor]:
        """Named loss terms of one training batch; the trainer weights them by ``train.loss_weights``
        and sums. Default: the task loss and :meth:`extra_losses` of one forward pass."""
        outputs = self(batch)
        return task.losses(outputs, batch) | self.extra_losses(outputs, batch)

    def on_epoch_end(self, state: EpochState) -> None:
        """Called after each training epoch, before validation (label memories, momentum updates)."""


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
