"""Your own data as a dataset: ``manifest:FILE`` for a CSV or JSONL file, one row per utterance.

A row has text (``text``), a media file (``path``, relative to the manifest's folder) or both, and
optionally targets and structure. Canonical column names (use them in the file, or map your own with
``columns={"text": "Utterance", "label": "Emotion"}``, canonical name -> file column):

==============  ===================================================================================
``id``          unique utterance id (default: the row number; ``split:row`` for one file per split)
``path``        media file, relative to the manifest's folder (must stay inside it)
``text``        the utterance text (kept exactly as in the file: quotes, commas, newlines)
``label``       class (2 classes -> task ``binary``, more -> ``classification``)
``score``       number on any scale (task ``regression``)
``labels``      ``;``-separated tags (task ``multilabel``); in JSONL also a list
``speaker``     speaker id; the CV group unless ``--group-by`` says otherwise
``dialogue_id`` conversation id (qualified by the split when the corpus is one file per split)
``utt_index``   position in the dialogue (integer)
``split``       train | valid | test (also dev, val, validation)
``fold``        cross-validation fold (``--cv column``)
``context``     JSON list of earlier utterances, each a string or ``{"text": ..., "speaker": ...}``
``start/end``   a window of the media file in seconds (one utterance cut out of a long recording)
==============  ===================================================================================

``manifest:train=A.csv,valid=B.csv,test=C.csv`` reads a corpus shipped as one file per split; the
split of a row is the file it is in, and rows are ordered train, valid, test.

Target cells (``label``, ``score``, ``labels``) holding one of pandas' default missing-value strings
(``NA``, ``N/A``, ``None``, ``NaN``, ``null``, ... see :data:`MISSING`) are missing, as in pandas. A fixed
split with train and test rows but no valid rows gets validation rows carved from train (whole
dialogues or speakers, stratified, fixed seed; see :func:`_carve_validation`).

Every problem is found before anything is embedded or trained and reported at once, one line each,
``FILE: row N: problem`` (CSV rows are counted as in a spreadsheet: the header is row 1; JSONL rows
are line numbers), in one :class:`ManifestError`.

Modules: ``records`` reads the files into raw records, ``rows`` parses each row's columns, ``checks``
holds the whole-manifest checks, ``carve`` the validation carve-out, ``read`` :func:`read_manifest`;
building the dataset (embedding text, media features) is here.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.data.manifest.carve import CARVE_FRACTION, CARVE_SEED, describe_carve
from mmaffect.data.manifest.checks import MAX_LISTED, TASK_KINDS, ManifestError
from mmaffect.data.manifest.read import Manifest, read_manifest
from mmaffect.data.manifest.records import (
    CANONICAL,
    SPLIT_NAMES,
    SPLIT_ORDER,
    TARGETS,
    parse_columns,
    split_argument,
)
from mmaffect.data.manifest.rows import MISSING, ManifestFile, ManifestRow
from mmaffect.data.registry import register_prefix
from mmaffect.data.text_features import text_modality
from mmaffect.errors import DataError

__all__ = ["CANONICAL", "CARVE_FRACTION", "CARVE_SEED", "MAX_LISTED", "MISSING", "SPLIT_NAMES", "SPLIT_ORDER",
           "TARGETS", "TASK_KINDS", "Manifest", "ManifestError", "ManifestFile", "ManifestRow", "build_dataset",
           "build_modalities", "check_features", "describe_carve", "load_manifest", "parse_columns",
           "read_manifest", "split_argument"]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------------
# building the dataset (here, so text_modality and _media_modalities can be swapped on this module)
# ------------------------------------------------------------------------------------------------------


def check_features(media_rows: Sequence[ManifestRow], features_dir: str | Path | None) -> Path:
    """The features folder media rows need, checked before any text is embedded (a wrong ``--features``
    should cost nothing)."""
    first = media_rows[0]
    if features_dir is None:
        raise DataError(first.file.path, f"{len(media_rows)} media rows need extracted features: run "
                                         f"`mmaffect extract {first.file.path} --output DIR` and pass --features DIR "
                                         "(or switch the path column off with --columns path= to use the text only)")
    features_dir = Path(features_dir).expanduser()
    if features_dir.is_file():
        raise DataError(features_dir, "is a file; --features expects the folder written by "
                                      "`mmaffect extract FILE --output DIR`")
    if not features_dir.is_dir():
        raise DataError(features_dir, "features folder not found (make it with `mmaffect extract FILE --output DIR`)")
    return features_dir


def _media_modalities(manifest_rows: Sequence[ManifestRow], features_dir: str | Path | None,
                      sequences: bool) -> dict[str, Modality]:
    """Audio/video (and, for rows without text, transcript) features of the media rows, in their order.

    The one seam between manifests and :mod:`mmaffect.extraction`: given the media rows (their
    ``id``, resolved ``path``, ``file``), return ``{"a"|"v"|"t": Modality}`` with one row per media row.
    """
    features_dir = check_features(manifest_rows, features_dir)
    try:
        from mmaffect import extraction
    except ImportError as exc:
        raise DataError(features_dir, "media feature extraction (mmaffect.extraction) is not available in "
                                      "this installation") from exc
    load = getattr(extraction, "manifest_modalities", None)
    if load is None:
        raise DataError(features_dir, "mmaffect.extraction has no manifest_modalities(); media manifests "
                                      "are not connected yet")
    return load(features_dir, ids=[r.id for r in manifest_rows], paths=[r.path for r in manifest_rows],
                sequences=sequences)


def _assemble(n: int, parts: list[tuple[np.ndarray, Modality]]) -> Modality:
    """One modality over ``n`` rows from parts covering some of them; rows no part covers are zeros."""
    dim = parts[0][1].dim
    vector = torch.zeros(n, dim)
    with_seq = all(m.sequence is not None for _, m in parts)
    width = max((m.sequence.shape[1] for _, m in parts), default=1) if with_seq else 0
    sequence = torch.zeros(n, max(width, 1), parts[0][1].seq_dim, dtype=parts[0][1].sequence.dtype) \
        if with_seq else None
    lengths = torch.ones(n, dtype=torch.long) if with_seq else None
    for index, mod in parts:
        idx = torch.as_tensor(index, dtype=torch.long)
        if mod.dim != dim:
            raise DataError(None, f"modality parts have widths {dim} and {mod.dim}")
        vector[idx] = mod.vector.float()
        if with_seq:
            sequence[idx, :mod.sequence.shape[1]] = mod.sequence.to(sequence.dtype)
            lengths[idx] = mod.lengths
    return Modality(vector, sequence, lengths)


def build_modalities(rows: Sequence[ManifestRow], sequences: bool, features: str | Path | None,
                     need_media: bool = True) -> tuple[dict[str, Modality], dict]:
    """Text rows are embedded with the MiniLM encoder; media rows go through :func:`_media_modalities`.

    A text-only manifest never touches media extraction. In a mixed manifest a row lacking a modality
    gets zeros for it (text of media rows without text comes from the extractor when it provides it).
    """
    n = len(rows)
    text_rows = np.array([i for i, r in enumerate(rows) if r.text.strip()], dtype=np.int64)
    media_rows = np.array([i for i, r in enumerate(rows) if r.path is not None], dtype=np.int64)
    # media first: a missing or wrong features folder is reported before any text is embedded
    media = (_media_modalities([rows[i] for i in media_rows], features, sequences)
             if need_media and len(media_rows) else {})
    modalities: dict[str, Modality] = {}
    recipe: dict = {}
    if len(text_rows) == n:
        modalities["t"], recipe = text_modality([r.text for r in rows], sequences)
    parts: dict[str, list[tuple[np.ndarray, Modality]]] = {}
    if 0 < len(text_rows) < n:
        text, recipe = text_modality([rows[i].text for i in text_rows], sequences)
        parts["t"] = [(text_rows, text)]
    for key, mod in media.items():
        if key == "t" and "t" in modalities:
            continue
        if key == "t" and len(text_rows):  # the extractor's transcripts only where the file has no text
            keep = np.flatnonzero(~np.isin(media_rows, text_rows))
            if len(keep):
                parts["t"].append((media_rows[keep], mod.take(torch.as_tensor(keep))))
            continue
        parts.setdefault(key, []).append((media_rows, mod))
    if media:
        recipe["media_rows"] = int(len(media_rows))
    for key in ("t", "a", "v"):
        if key in parts:
            modalities[key] = _assemble(n, parts[key])
    return modalities, recipe


def _split_description(manifest: Manifest, rows: Sequence[ManifestRow]) -> str | None:
    counts = Counter(r.split for r in rows if r.split is not None)
    if not counts:
        return None
    how = "one file per split" if manifest.files[0].split is not None else "the manifest's split column"
    text = f"{how}: " + " / ".join(f"{s} {counts[s]}" for s in SPLIT_ORDER if counts[s])
    return text + (f" ({describe_carve(manifest.carved)})" if manifest.carved else "")


def build_dataset(manifest: Manifest, rows: Sequence[ManifestRow] | None = None, *, sequences: bool = False,
                  features: str | Path | None = None, need_media: bool = True, targets: bool = True,
                  name: str | None = None) -> AffectDataset:
    """The :class:`AffectDataset` of (a subset of) the rows of a validated manifest."""
    rows = list(manifest.rows if rows is None else rows)
    if not rows:
        raise DataError(manifest.source, "no usable rows")
    modalities, recipe = build_modalities(rows, sequences, features, need_media)
    present = manifest.present
    label = score = labels = None
    if targets and manifest.class_names and "label" in present:
        lookup = {c: i for i, c in enumerate(manifest.class_names)}
        label = torch.tensor([lookup[r.label] for r in rows], dtype=torch.long)
    if targets and "score" in present:
        score = torch.tensor([r.score for r in rows], dtype=torch.float32)
    if targets and manifest.tag_names:
        labels = torch.zeros(len(rows), len(manifest.tag_names))
        index = {t: j for j, t in enumerate(manifest.tag_names)}
        for i, r in enumerate(rows):
            for t in r.tags or []:
                labels[i, index[t]] = 1.0

    def column(attr: str, dtype=str):
        if attr not in present and not (attr == "split" and any(r.split for r in rows)):
            return None
        return np.array([getattr(r, attr) for r in rows], dtype=dtype)

    fold = column("fold", object)
    if fold is not None:
        try:
            fold = np.array([int(f) for f in fold], dtype=np.int64)
        except ValueError:
            fold = fold.astype(str)
    speaker, dialogue = column("speaker"), column("dialogue_id")
    meta = {**recipe, "source": manifest.source, "files": [str(f.path) for f in manifest.files],
            "format": manifest.files[0].format, "encoding": manifest.encoding,
            "columns": dict(manifest.files[0].columns), "rows": len(rows)}
    split_text = _split_description(manifest, rows)
    if split_text:
        meta["split"] = split_text
    if manifest.carved:
        meta["valid_carved"] = dict(manifest.carved)
    context = None
    if "context" in present:
        context = np.empty(len(rows), dtype=object)
        context[:] = [r.context or [] for r in rows]
    return AffectDataset(
        name=name or manifest.source,
        ids=np.array([r.id for r in rows], dtype=str),
        modalities=modalities,
        score=score,
        label=label,
        class_names=list(manifest.class_names) if label is not None else None,
        labels=labels,
        tag_names=list(manifest.tag_names) if labels is not None else None,
        split=column("split"),
        fold=fold,
        dialogue_id=dialogue,
        speaker=speaker,
        utt_index=column("utt_index", np.int64),
        context=context,
        text=np.array([r.text for r in rows], dtype=str),  # raw text, for models that tokenise it
        group=speaker if speaker is not None else dialogue,
        default_task=manifest.task or "classification",
        meta=meta,
    )


@register_prefix("manifest", description="your own CSV/JSONL file: text and/or media paths, labels, splits "
                                         "(manifest:FILE or manifest:train=F1,valid=F2,test=F3)")
def load_manifest(argument: str, sequences: bool = False, columns: dict[str, str] | None = None,
                  encoding: str = "utf-8", task: str | None = None, features: str | None = None,
                  folds: int | str | None = None) -> AffectDataset:
    """Read, validate and embed a manifest (see the module docstring for its columns).

    Args:
        argument: ``FILE`` or ``train=F1,valid=F2,test=F3``.
        sequences: also keep token sequences (sequence models).
        columns: canonical name -> column of the file, e.g. ``{"text": "Utterance", "label": "Emotion"}``
            (or the ``--columns`` string ``"text=Utterance,label=Emotion"``).
        encoding: the files' text encoding.
        task: override the task inferred from the target columns (``label`` -> binary/classification,
            ``score`` -> regression, ``labels`` -> multilabel). ``regression`` on a numeric ``label``
            column uses it as the score.
        features: folder of extracted media features (``mmaffect extract``), needed for media rows.
        folds: cross-validation fold count (or ``"column"``), so classes too rare for it are reported.

    Raises:
        ManifestError: listing every problem, one line each, before anything is embedded.
    """
    manifest = read_manifest(argument, columns, encoding, task, purpose="train", folds=folds)
    manifest.raise_problems()
    if manifest.carved:
        logger.warning("%s: %s", manifest.source, describe_carve(manifest.carved))
    if "context" in manifest.present:
        logger.warning("%s: the context column is read (data.context) but no model uses it yet: results are the "
                       "same with and without it (dialogue models read dialogue_id and utt_index instead)",
                       manifest.source)
    return build_dataset(manifest, sequences=sequences, features=features)
