"""MMSA-format feature pickles (``mmsa:/path/feats.pkl``), the format of thuiar/MMSA's released
MOSI/MOSEI/CH-SIMS features.

Layout: ``{"train"|"valid"|"test": {"text" (N, L, d) | "text_bert" (N, 3, L), "audio" (N, La, da),
"vision" (N, Lv, dv), "audio_lengths", "vision_lengths", "regression_labels", optional
"classification_labels", "id", "raw_text"}}``. Read through the restricted unpickler. As in MMSA,
``-inf`` audio values are set to 0.

``text_bert`` (N, 3, L) holds BERT word-piece ids, attention mask and segment ids (MMSA's
``bert-base-uncased`` tokenisation, the vocabulary of the packaged MiniLM too); they are kept as
token ids under ``bert-base-uncased@L`` in :attr:`AffectDataset.tokens`. A file with only
``text_bert`` (no ``text`` feature array) gives a dataset without a ``t`` modality.

:func:`to_mmsa` writes any of our datasets in this layout (``mmaffect export mmsa``), so MMSA's own
trainers run on exactly our rows, splits and labels. What MMSA's loader does not read (class names,
the task, modalities that were absent) goes into an extra top-level ``"mmaffect"`` dict that MMSA
ignores and this reader uses to give back the same dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmaffect.data.dataset import AffectDataset, Modality, TokenIds
from mmaffect.data.registry import register_prefix
from mmaffect.data.safe_pickle import safe_load_pickle
from mmaffect.errors import DataError

SPLITS = ("train", "valid", "test")
_MODALITIES = (("t", "text", None), ("a", "audio", "audio_lengths"), ("v", "vision", "vision_lengths"))
BERT_TOKENIZER = "bert-base-uncased"  # the tokenisation of MMSA's released text_bert arrays


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
    extra = data.get("mmaffect") if isinstance(data.get("mmaffect"), dict) else {}
    absent = set(extra.get("absent_modalities", []))
    if "text" not in parts["train"]:
        if "text_bert" not in parts["train"]:
            raise DataError(path, "split 'train' has neither 'text' features nor 'text_bert' token ids")
        absent.add("t")
    modalities = {m: _modality(path, parts, key, lk, sequences) for m, key, lk in _MODALITIES if m not in absent}
    tokens = _bert_tokens(path, parts) if "text_bert" in parts["train"] else {}
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
    labels = _labels(path, parts, extra, score)
    return AffectDataset(
        name=f"mmsa:{path.name}",
        ids=np.asarray(ids, dtype=str),
        modalities=modalities,
        split=np.asarray(split, dtype=str),
        text=np.asarray(texts, dtype=str) if any(texts) else None,  # raw_text, for models that tokenise it
        tokens=tokens,
        meta={"source": str(path), "format": "MMSA feature pickle"},
        **labels,
    )


def _labels(path: Path, parts: dict[str, dict], extra: dict, score: np.ndarray) -> dict:
    """Score and class labels: MMSA's own files are sentiment scores (class = score >= 0); a file we
    exported from a class-labelled dataset names its classes in the ``mmaffect`` dict."""
    names = extra.get("class_names")
    if extra.get("default_task", "sentiment") == "sentiment" or not names:
        return {"score": torch.from_numpy(score), "label": torch.from_numpy((score >= 0).astype(np.int64)),
                "class_names": ["negative", "non-negative"], "default_task": "sentiment"}
    label = []
    for name, part in parts.items():
        if "classification_labels" not in part:
            raise DataError(path, f"split {name!r} has no 'classification_labels' (the file names classes)")
        label.append(np.asarray(part["classification_labels"], dtype=np.int64).reshape(-1))
    label = np.concatenate(label)
    if len(label) != len(score) or label.min() < 0 or label.max() >= len(names):
        raise DataError(path, f"classification_labels must be {len(score)} ids in 0..{len(names) - 1}")
    return {"label": torch.from_numpy(label), "class_names": [str(n) for n in names],
            "default_task": str(extra["default_task"]),
            **({"score": torch.from_numpy(score)} if extra.get("has_score") else {})}


def _bert_tokens(path: Path, parts: dict[str, dict]) -> dict[str, TokenIds]:
    """``text_bert`` (N, 3, L) of every split as token ids with lengths from the attention mask."""
    ids, lengths = [], []
    for name, part in parts.items():
        if "text_bert" not in part:
            raise DataError(path, f"split {name!r} has no 'text_bert' but 'train' has")
        bert = np.asarray(part["text_bert"])
        if bert.ndim != 3 or bert.shape[1] != 3:
            raise DataError(path, f"{name}/text_bert must be (N, 3, L) (ids, mask, segments), got {bert.shape}")
        ids.append(bert[:, 0].astype(np.int64))
        lengths.append(bert[:, 1].sum(1).astype(np.int64))
    width = max(a.shape[1] for a in ids)
    if any(a.shape[1] != width for a in ids):
        raise DataError(path, "text_bert has a different token length in each split")
    return {f"{BERT_TOKENIZER}@{width}": TokenIds(torch.from_numpy(np.concatenate(ids)),
                                                  torch.from_numpy(np.concatenate(lengths)))}


def _arrays(mod: Modality | None, rows: np.ndarray, sequences: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, L, d) float32 and lengths for one split: the stored sequence, or the utterance vector as a
    length-1 sequence; an absent modality is one zero step of width 1 (MMSA's loader needs all three)."""
    if mod is None:
        return np.zeros((len(rows), 1, 1), np.float32), np.ones(len(rows), np.int64)
    if sequences and mod.sequence is not None:
        lengths = mod.lengths[rows].numpy().astype(np.int64)
        width = max(int(lengths.max()) if len(lengths) else 1, 1)
        return mod.sequence[rows, :width].float().numpy(), lengths
    return mod.vector[rows].float().numpy()[:, None, :], np.ones(len(rows), np.int64)


def to_mmsa(data: AffectDataset, sequences: bool = False) -> dict:
    """``data`` in MMSA's pickle layout (plain dicts, numpy arrays, lists: no classes to unpickle).

    ``regression_labels`` is the score where the dataset has one, else the class id as a float (the
    only label MMSA's loader reads; its trainers are regression-only). ``sequences`` writes the stored
    per-step features (else each utterance vector as a length-1 sequence, what MMSA's TFN/LMF average
    to anyway). Raises DataError when the dataset has no train/valid/test split.
    """
    splits = data.split_indices()
    if set(splits) != set(SPLITS):
        raise DataError(data.name, f"MMSA files need train/valid/test rows; this dataset has "
                                   f"{', '.join(sorted(splits)) or 'no fixed split'}")
    if data.score is None and data.label is None:
        raise DataError(data.name, "has neither scores nor class labels to write")
    out: dict = {}
    for name in SPLITS:
        rows = splits[name]
        part: dict = {}
        for key, field, length_key in _MODALITIES:
            feats, lengths = _arrays(data.modalities.get(key), rows, sequences)
            part[field] = feats
            if length_key:
                part[length_key] = lengths
        score = data.score[rows].numpy() if data.score is not None else data.label[rows].numpy()
        part["regression_labels"] = score.astype(np.float32)
        if data.label is not None:
            part["classification_labels"] = data.label[rows].numpy().astype(np.int64)
        part["id"] = np.asarray([str(i) for i in data.ids[rows]], dtype=object)
        texts = data.text[rows] if data.text is not None else [""] * len(rows)
        part["raw_text"] = np.asarray([str(t) for t in texts], dtype=object)
        out[name] = part
    out["mmaffect"] = {"dataset": data.name, "default_task": data.default_task,
                       "class_names": list(data.class_names or []), "has_score": data.score is not None,
                       "absent_modalities": [k for k, _, _ in _MODALITIES if k not in data.modalities]}
    return out
