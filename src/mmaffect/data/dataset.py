"""The one in-memory dataset type every reader returns and every model trains on.

All features live in tensors so a batch is a handful of index gathers (no per-sample Python).
Per modality we keep an utterance vector ``(N, d)`` and, when the source has one, a padded
sequence ``(N, L, d)`` with lengths. Labels stay in their native form (score, class id, multi-hot);
which of them a run learns is the task's business (:mod:`mmaffect.tasks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

MODALITY_NAMES = {"t": "text", "a": "audio", "v": "video"}


def masked_mean(sequence: Tensor, lengths: Tensor) -> Tensor:
    """Mean over the first ``lengths[i]`` steps of each padded sequence (zero for empty ones)."""
    mask = torch.arange(sequence.shape[1])[None, :] < lengths[:, None]
    total = (sequence.float() * mask[..., None]).sum(1)
    return total / lengths.clamp(min=1)[:, None].to(total.dtype)


@dataclass
class Modality:
    """Features of one modality for all N samples.

    ``vector`` is always present (readers that only have sequences get the masked mean), so every
    vector model runs on every dataset. ``sequence`` may be stored as float16 to halve memory; batches
    are always float32.
    """

    vector: Tensor
    sequence: Tensor | None = None
    lengths: Tensor | None = None

    def __post_init__(self) -> None:
        if self.vector.ndim != 2:
            raise ValueError(f"modality vector must be (N, d), got {tuple(self.vector.shape)}")
        if (self.sequence is None) != (self.lengths is None):
            raise ValueError("a modality sequence needs its lengths and vice versa")
        if self.sequence is not None:
            if self.sequence.ndim != 3 or self.sequence.shape[0] != self.vector.shape[0]:
                raise ValueError(f"modality sequence must be (N, L, d), got {tuple(self.sequence.shape)}")
            if self.lengths.shape != (self.vector.shape[0],):
                raise ValueError("modality lengths must be (N,)")

    @classmethod
    def from_sequence(cls, sequence: Tensor, lengths: Tensor) -> Modality:
        return cls(vector=masked_mean(sequence, lengths), sequence=sequence, lengths=lengths.long())

    @property
    def dim(self) -> int:
        return int(self.vector.shape[1])

    @property
    def seq_dim(self) -> int | None:
        return None if self.sequence is None else int(self.sequence.shape[2])

    def take(self, index: Tensor) -> Modality:
        if self.sequence is None:
            return Modality(self.vector[index])
        lengths = self.lengths[index]
        width = max(int(lengths.max()) if len(lengths) else 1, 1)
        return Modality(self.vector[index], self.sequence[index, :width], lengths)


@dataclass
class AffectDataset:
    """Utterances with per-modality features, labels, ids and optional conversation structure.

    Attributes:
        name: dataset name as given to :func:`mmaffect.data.load_dataset`.
        ids: utterance ids, unique, ``(N,)`` str.
        modalities: ``{"t"|"a"|"v": Modality}``.
        score: regression target ``(N,)`` float32, or None.
        label: class id ``(N,)`` int64, or None; ``class_names[label]`` is its name.
        labels: multi-hot ``(N, K)`` float32, or None; ``tag_names`` name the columns.
        split: ``"train"|"valid"|"test"`` per sample, or None when the data has no fixed split.
        fold: cross-validation fold per sample (e.g. IEMOCAP session), or None.
        dialogue_id, speaker, utt_index: conversation structure for context models, or None.
        context: per row, the preceding utterances a corpus gives instead of whole dialogues
            (object array of ``[{"text", "speaker"}, ...]`` lists), or None.
        group: the unit that must never straddle train and test (video, speaker, dialogue), or None.
        default_task: the task a run uses unless told otherwise (see :mod:`mmaffect.tasks`).
        meta: provenance and feature recipe (source files, encoders and their versions).
    """

    name: str
    ids: np.ndarray
    modalities: dict[str, Modality]
    score: Tensor | None = None
    label: Tensor | None = None
    class_names: list[str] | None = None
    labels: Tensor | None = None
    tag_names: list[str] | None = None
    split: np.ndarray | None = None
    fold: np.ndarray | None = None
    dialogue_id: np.ndarray | None = None
    speaker: np.ndarray | None = None
    utt_index: np.ndarray | None = None
    context: np.ndarray | None = None
    group: np.ndarray | None = None
    default_task: str = "classification"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(set(self.ids.tolist())) != n:
            raise ValueError(f"{self.name}: utterance ids are not unique")
        for key, mod in self.modalities.items():
            if key not in MODALITY_NAMES:
                raise ValueError(f"{self.name}: unknown modality {key!r}; expected one of t, a, v")
            if mod.vector.shape[0] != n:
                raise ValueError(f"{self.name}: modality {key} has {mod.vector.shape[0]} rows, ids have {n}")
        for attr in ("score", "label", "labels", "split", "fold", "dialogue_id", "speaker", "utt_index",
                     "context", "group"):
            value = getattr(self, attr)
            if value is not None and len(value) != n:
                raise ValueError(f"{self.name}: {attr} has {len(value)} rows, ids have {n}")
        if self.label is not None and self.class_names is None:
            raise ValueError(f"{self.name}: class labels need class_names")

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: Sequence[int] | np.ndarray | Tensor) -> AffectDataset:
        """A new dataset with the given rows (in that order)."""
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        np_idx = idx.numpy()

        def pick(value):
            if value is None:
                return None
            return value[idx] if isinstance(value, Tensor) else value[np_idx]

        return replace(
            self,
            ids=self.ids[np_idx],
            modalities={k: m.take(idx) for k, m in self.modalities.items()},
            **{a: pick(getattr(self, a)) for a in ("score", "label", "labels", "split", "fold",
                                                    "dialogue_id", "speaker", "utt_index", "context", "group")},
        )

    def with_modalities(self, keys: Sequence[str]) -> AffectDataset:
        """Keep only the named modalities (for ablations); error if one is missing."""
        missing = [k for k in keys if k not in self.modalities]
        if missing:
            raise ValueError(f"{self.name} has no modality {', '.join(missing)}; "
                             f"it has {', '.join(self.modalities)}")
        return replace(self, modalities={k: self.modalities[k] for k in keys})

    def split_indices(self) -> dict[str, np.ndarray]:
        """Row indices of each fixed split (empty dict when the dataset has none)."""
        if self.split is None:
            return {}
        return {name: np.flatnonzero(self.split == name) for name in ("train", "valid", "test")
                if (self.split == name).any()}

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        """Gather rows into model inputs.

        Keys: ``"index"``; per modality m: ``m`` (B, d) and, when it has sequences, ``m_seq``
        (B, L, d) float32 cut to the longest length in the batch and ``m_mask`` (B, L) bool (True =
        real step); targets ``score``, ``label``, ``labels`` when present.
        """
        out: dict[str, Tensor] = {"index": index}
        for key, mod in self.modalities.items():
            out[key] = mod.vector[index].float()
            if mod.sequence is not None:
                lengths = mod.lengths[index]
                width = max(int(lengths.max()), 1)
                out[f"{key}_seq"] = mod.sequence[index, :width].float()
                out[f"{key}_mask"] = torch.arange(width)[None, :] < lengths[:, None]
        for target in ("score", "label", "labels"):
            value = getattr(self, target)
            if value is not None:
                out[target] = value[index]
        return out
