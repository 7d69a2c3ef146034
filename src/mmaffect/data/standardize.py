"""Per-feature standardisation fitted on training rows only, saved with the model.

Raw feature scales differ by orders of magnitude (openSMILE functionals up to ~400 next to
text-CNN activations in [-1.5, 1.5]); z-scoring with training statistics makes every model usable
on every dataset without per-model input layers. Statistics never see validation or test rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from mmaffect.data.dataset import AffectDataset, Modality

_MIN_STD = 1e-6


def _stats(x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.double()
    std = x.std(0, unbiased=False)
    return x.mean(0).float(), torch.where(std < _MIN_STD, torch.ones_like(std), std).float()


@dataclass
class Standardizer:
    """``{modality: {"vector": (mean, std), "sequence": (mean, std)}}`` fitted on training rows."""

    stats: dict[str, dict[str, tuple[Tensor, Tensor]]]

    @classmethod
    def fit(cls, data: AffectDataset, rows: np.ndarray, modalities: list[str] | None = None) -> Standardizer:
        """Statistics of ``rows`` for ``modalities`` (default all); others pass through unchanged."""
        idx = torch.as_tensor(rows)
        stats = {}
        for key, mod in data.modalities.items():
            if modalities is not None and key not in modalities:
                continue
            stats[key] = {"vector": _stats(mod.vector[idx])}
            if mod.sequence is not None:
                mask = torch.arange(mod.sequence.shape[1])[None, :] < mod.lengths[idx][:, None]
                stats[key]["sequence"] = _stats(mod.sequence[idx][mask])
        return cls(stats)

    def apply(self, data: AffectDataset) -> AffectDataset:
        modalities = dict(data.modalities)
        for key, mod in data.modalities.items():
            if key not in self.stats:
                continue
            mean, std = self.stats[key]["vector"]
            vector = (mod.vector.float() - mean) / std
            sequence = mod.sequence
            if sequence is not None:
                s_mean, s_std = self.stats[key]["sequence"]
                mask = (torch.arange(sequence.shape[1])[None, :] < mod.lengths[:, None])[..., None]
                sequence = (((sequence.float() - s_mean) / s_std) * mask).to(sequence.dtype)
            modalities[key] = Modality(vector, sequence, mod.lengths)
        return replace(data, modalities=modalities)

    def to_tensors(self) -> dict[str, Tensor]:
        return {f"{m}/{form}/{which}": t for m, forms in self.stats.items() for form, pair in forms.items()
                for which, t in zip(("mean", "std"), pair, strict=True)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> Standardizer:
        stats: dict[str, dict[str, list]] = {}
        for name, value in sorted(tensors.items()):
            m, form, which = name.split("/")
            stats.setdefault(m, {}).setdefault(form, [None, None])[0 if which == "mean" else 1] = value
        return cls({m: {f: tuple(p) for f, p in forms.items()} for m, forms in stats.items()})
