"""MMSA-format feature pickles (``mmsa:/path/feats.pkl``), the format of thuiar/MMSA's released
MOSI/MOSEI/CH-SIMS features.

Layout: ``{"train"|"valid"|"test": {"text" (N, L, d) | "text_bert" (N, 3, L), "audio" (N, La, da),
"vision" (N, Lv, dv), "audio_lengths", "vision_lengths", "regression_labels", optional
"classification_labels", "id", "raw_text"}}``. Read through the restricted unpickler. As in MMSA,
``-inf`` audio values are set to 0. ``text_bert`` holds token ids, not features, and is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.data.registry import register_prefix
from mmaffect.data.safe_pickle import safe_load_pickle
from mmaffect.errors import DataError

SPLITS = ("train", "valid", "test")
_MODALITIES = (("t", "text", None), ("a", "audio", "audio_lengths"), ("v", "vision", "vision_lengths"))


def _lengths(part: dict, feats: np.ndarray, key: str | None) -> np.ndarray:
    if key is not None and key in part:
        return np.asarray(part[key], dtype=np.int64).clip(1, feats.shape[1])
    nonzero = np.abs(feats).sum(-1) > 0  # MMSA pads text with zero rows at the end
    after_last = nonzero.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(1), after_last, 1)


def _modality(path: Path, parts: dict[str, dict], name: str, length_key: str | None,
              sequences: bool) -> Modality:
    arrays, lengths = [], []
    for split, part in parts.items():
        if name not in part:
            raise DataError(path, f"split {split!r} has no {name!r} array")
        feats = np.asarray(part[name], dtype=np.float32)
        if feats.ndim != 3:
            raise DataError(path, f"{split}/{name} must be (N, L, d), got shape {feats.shape}")
        feats = np.where(np.isneginf(feats), 0.0, feats)
        bad = int((~np.isfinite(feats)).sum())
        if bad:
            raise DataError(path, f"{split}/{name} has {bad} NaN/inf values")
        if arrays and feats.shape[2] != arrays[0].shape[2]:
            first = next(iter(parts))
            raise DataError(path, f"{name} features are {arrays[0].shape[2]} wide in {first!r} but "
                                  f"{feats.shape[2]} wide in {split!r} (every split must have the same width)")
        arrays.append(feats)
        lengths.append(_lengths(part, feats, length_key))
    width = max(a.shape[1] for a in arrays)
    padded = np.concatenate([np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0))) for a in arrays])
    modality = Modality.from_sequence(torch.from_numpy(padded), torch.from_numpy(np.concatenate(lengths)))
    return modality if sequences else Modality(modality.vector)


def _first_repeat(ids: list[str], split: list[str]) -> str | None:
    """Why the ids are not unique (the first id seen twice and where), or None: rows are keyed by id."""
    seen: dict[str, int] = {}
    for k, i in enumerate(ids):
        if i in seen:
            before = split[seen[i]]
            where = f"twice in {before!r}" if before == split[k] else f"in {before!r} and {split[k]!r}"
            count = len(ids) - len(set(ids))
            return f"id {i!r} occurs {where} ({count} repeated id{'s' if count > 1 else ''} in all; ids must be unique)"
        seen[i] = k
    return None


@register_prefix("mmsa", description="MMSA feature pickle (train/valid/test dicts of text/audio/vision "
                                     "arrays, lengths, regression labels); restricted unpickler")
def load_mmsa(argument: str, sequences: bool = False) -> AffectDataset:
    path = Path(argument).expanduser()
    data = safe_load_pickle(path)
    if not isinstance(data, dict) or not all(s in data and isinstance(data[s], dict) for s in SPLITS):
        raise DataError(path, "expected a dict with 'train', 'valid' and 'test' dicts")
    parts = {s: data[s] for s in SPLITS}
    if "text" not in parts["train"] and "text_bert" in parts["train"]:
        raise DataError(path, "only 'text_bert' token ids found; mmaffect needs text feature arrays ('text')")
    modalities = {m: _modality(path, parts, key, lk, sequences) for m, key, lk in _MODALITIES}
    scores, split, ids, texts = [], [], [], []
    for name, part in parts.items():
        if "regression_labels" not in part:
            raise DataError(path, f"split {name!r} has no 'regression_labels'")
        score = np.asarray(part["regression_labels"], dtype=np.float32).reshape(-1)
        scores.append(score)
        split += [name] * len(score)
        part_ids = [str(i) for i in part.get("id", [f"{name}_{k}" for k in range(len(score))])]
        if len(part_ids) != len(score):
            raise DataError(path, f"split {name!r} has {len(part_ids)} ids but {len(score)} regression_labels")
        ids += part_ids
        raw = part.get("raw_text")
        texts += [str(t) for t in raw] if raw is not None and len(raw) == len(score) else [""] * len(score)
    repeated = _first_repeat(ids, split)
    if repeated:
        raise DataError(path, repeated)
    score = np.concatenate(scores)
    if not np.isfinite(score).all():
        raise DataError(path, "regression_labels hold NaN/inf values")
    for key, mod in modalities.items():
        if mod.vector.shape[0] != len(score):
            raise DataError(path, f"modality {key} has {mod.vector.shape[0]} rows but there are {len(score)} labels")
    return AffectDataset(
        name=f"mmsa:{path.name}",
        ids=np.asarray(ids, dtype=str),
        modalities=modalities,
        score=torch.from_numpy(score),
        label=torch.from_numpy((score >= 0).astype(np.int64)),
        class_names=["negative", "non-negative"],
        split=np.asarray(split, dtype=str),
        default_task="sentiment",
        text=np.asarray(texts, dtype=str) if any(texts) else None,  # raw_text, for models that tokenise it
        meta={"source": str(path), "format": "MMSA feature pickle"},
    )
