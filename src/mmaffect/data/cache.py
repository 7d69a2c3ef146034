"""``cache:DIR`` -- a feature cache written by ``mmaffect extract`` as an :class:`AffectDataset`.

The transcripts are embedded with MiniLM (text), audio and visual features come from
:func:`mmaffect.extraction.cache.cache_modalities`, and the labels/speakers/splits from each item's
``meta``. This reader sits with the other readers so that :mod:`mmaffect.data.registry` imports only
:mod:`mmaffect.data` modules; :mod:`mmaffect.extraction` is imported when a ``cache:`` dataset is loaded.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
import torch

from mmaffect.data.dataset import AffectDataset, FrameSequences
from mmaffect.data.registry import register_prefix
from mmaffect.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["load_cache"]

_OPTIONS = {"label": "label", "score": "score", "split": "split", "fold": "fold", "speaker": "speaker",
            "dialogue_id": "dialogue_id", "utt_index": "utt_index", "fps": None, "audio_vector": None,
            "audio_sequence": "steps", "speaker_norm": False, "label_file": None, "label_id": "id"}


def _column(records: list[dict], key: str | None) -> list | None:
    """The meta values under ``key`` for all records, None if no record has it; missing in some = error."""
    if not key:
        return None
    values = [(r.get("meta") or {}).get(key) for r in records]
    present = [v is not None and v != "" for v in values]
    if not any(present):
        return None
    if not all(present):
        lacking = [r["id"] for r, p in zip(records, present, strict=True) if not p]
        raise DataError(None, f"{len(lacking)} items have no {key!r} in their metadata: {', '.join(lacking[:10])}")
    return values


def _as_ints(values: list, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray([int(float(v)) for v in values], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"{key!r} values must be integers ({exc})") from exc


def _ints_or_str(values: list) -> np.ndarray:
    """Folds as integers when every value is one (``1``, ``"2"``, ``3.0``), else as strings."""
    try:
        floats = [float(v) for v in values]
    except (TypeError, ValueError):
        return np.asarray([str(v) for v in values], dtype=str)
    if all(f.is_integer() for f in floats):
        return np.asarray([int(f) for f in floats], dtype=np.int64)
    return np.asarray([str(v) for v in values], dtype=str)


def read_label_file(path: Path, column: str, id_column: str) -> dict[str, str]:
    """Item id -> class from a CSV's ``id_column`` and ``column``; rows whose class cell is empty or a
    pandas missing-value marker (``NA``, ``nan``, ...) are left out.

    Why: a cache stores the labels its extraction was given; another label set of the same items (e.g.
    IEMOCAP's 4-class ``superb4_label`` of a manifest) should not need the media extracted again.
    """
    import csv

    from mmaffect.data.manifest.rows import MISSING

    if not path.is_file():
        raise DataError(path, "label file not found")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            lacking = [c for c in (id_column, column) if c not in header]
            if lacking:
                raise DataError(path, f"no column {', '.join(map(repr, lacking))} (columns: {', '.join(header)})")
            labels: dict[str, str] = {}
            seen: set[str] = set()
            for row, record in enumerate(reader, start=2):
                item, value = (record[id_column] or "").strip(), (record[column] or "").strip()
                if item in seen:
                    raise DataError(path, f"row {row}: id {item!r} appears twice in column {id_column!r}")
                seen.add(item)
                if value not in MISSING:
                    labels[item] = value
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"not a readable UTF-8 CSV ({exc})") from exc
    return labels


def _relabel(records: list[dict], label_file: Path, column: str | None, id_column: str) -> tuple[list[dict], list[str]]:
    """The records the label file gives a class (their meta ``column`` set to it), and the ids left out."""
    if not column:
        raise ConfigError("cache: label_file needs the label option to name its class column")
    labels = read_label_file(label_file, column, id_column)
    kept = [{**r, "meta": {**(r.get("meta") or {}), column: labels[r["id"]]}} for r in records if r["id"] in labels]
    if not kept:
        raise DataError(label_file, f"gives no item of the cache a {column!r} (ids from column {id_column!r})")
    return kept, [r["id"] for r in records if r["id"] not in labels]


def load_face_crops(path: Path, ids: np.ndarray) -> FrameSequences:
    """The cached 48x48 grayscale face crops (one per sampled frame) of ``ids``, padded to the longest.

    One crop per sampled video frame, so with the reader's default step grid (``fps`` unset) crop k
    and visual step k cover the same time. Frames without a detected face hold what the extractor
    stored for them. Kept as uint8: the 40 IEMOCAP clips' crops take 1.4 MB.
    """
    from mmaffect.extraction.cache import FeatureCache

    crops: list[np.ndarray] = []
    with FeatureCache(path) as cache:
        size = int(cache.config.get("crop_size", 48))
        for item, record, arrays in cache.entries([str(i) for i in ids]):
            if record is None:
                raise DataError(path, f"item {item!r} is not in the cache")
            crop = np.asarray(arrays.get("face_crops", np.zeros((0, size, size), np.uint8)))
            if crop.ndim != 3 or crop.shape[1:] != (size, size) or crop.dtype != np.uint8:
                raise DataError(path, f"item {item!r}: face_crops must be (T, {size}, {size}) uint8, "
                                      f"got {crop.shape} {crop.dtype}")
            crops.append(crop)
    lengths = torch.tensor([len(c) for c in crops], dtype=torch.long)
    frames = torch.zeros(len(crops), max(int(lengths.max()) if crops else 1, 1), size, size, dtype=torch.uint8)
    for i, crop in enumerate(crops):
        frames[i, :len(crop)] = torch.from_numpy(crop.copy())
    return FrameSequences(frames, lengths)


@register_prefix("cache", description="feature cache folder written by `mmaffect extract` (text: transcripts "
                                      "via MiniLM; audio: LLD functionals; video: FER + face geometry)")
def load_cache(argument: str, sequences: bool = False, **options) -> AffectDataset:
    """Load ``cache:DIR`` as an :class:`AffectDataset` (failed items are skipped, with a one-line note).

    Options name the meta keys to read (defaults in brackets): ``label`` [label] (class names, sorted
    alphabetically), ``score`` [score] (float), ``split`` [split], ``fold`` [fold], ``speaker``
    [speaker] (also the ``group``), ``dialogue_id`` [dialogue_id], ``utt_index`` [utt_index]; pass
    ``None`` to ignore one. ``fps``: the sequence step rate (see :func:`cache_modalities`).
    ``audio_vector`` (e.g. ``whisper`` or ``functionals,egemaps``) and ``audio_sequence`` (``steps``,
    ``lld``, ``logmel``, ``whisper``): which audio representation ``a`` holds (see
    :func:`~mmaffect.extraction.cache.cache_modalities`; the choice is recorded in the recipe).
    ``speaker_norm``: z-score the audio features within each speaker (all of the speaker's items,
    no targets; see :func:`~mmaffect.extraction.cache.speaker_normalize`); needs a speaker column.
    ``label_file``: a CSV giving the classes instead of the metadata (column ``label``, items matched on
    its column ``label_id`` [id]); items it gives no class are left out (logged and listed in
    ``meta["unlabelled"]``), so one cache serves several label sets (:func:`read_label_file`).

    The stored face crops are not read here: the dataset reads them from the cache the first time a
    model needs them (``AffectModel.needs`` ``"frames"``, :func:`load_face_crops`).
    """
    from mmaffect.data.text_features import text_modality
    from mmaffect.extraction.cache import FeatureCache, cache_modalities, speaker_normalize

    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"cache: unknown option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
    opts = {**_OPTIONS, **options}
    path = Path(argument).expanduser()
    with FeatureCache(path) as cache:
        records = cache.records()
        ok = [r for r in records.values() if r["status"] == "ok"]
        failed = [r for r in records.values() if r["status"] != "ok"]
        if failed:
            shown = "; ".join(f"{r['id']} ({r.get('reason')})" for r in failed[:3])
            log.warning("cache:%s: skipped %d failed item(s): %s%s", path, len(failed), shown,
                        " ..." if len(failed) > 3 else "")
        if not ok:
            raise DataError(path, "no successfully extracted items in this cache")
        if opts["label_file"]:
            ok, unlabelled = _relabel(ok, Path(opts["label_file"]).expanduser(), opts["label"], opts["label_id"])
            if unlabelled:
                log.warning("cache:%s: %d item(s) have no %r in %s and are left out", path, len(unlabelled),
                            opts["label"], opts["label_file"])
        ids = [r["id"] for r in ok]
        modalities, recipe = cache_modalities(cache, ids, sequences, fps=opts["fps"],
                                              audio_vector_parts=opts["audio_vector"],
                                              audio_sequence=opts["audio_sequence"] or "steps")
    text, text_recipe = text_modality([r.get("transcript") or "" for r in ok], sequences)

    labels = _column(ok, opts["label"])
    class_names = label = None
    if labels is not None:
        class_names = sorted({str(v) for v in labels})
        lookup = {c: i for i, c in enumerate(class_names)}
        label = torch.tensor([lookup[str(v)] for v in labels], dtype=torch.long)
    scores = _column(ok, opts["score"])
    score = None
    if scores is not None:
        try:
            score = torch.tensor([float(v) for v in scores], dtype=torch.float32)
        except (TypeError, ValueError) as exc:
            raise DataError(path, f"{opts['score']!r} values must be numbers ({exc})") from exc
        if not torch.isfinite(score).all():
            raise DataError(path, f"{opts['score']!r} values hold NaN/inf")
    split = _column(ok, opts["split"])
    fold = _column(ok, opts["fold"])
    speaker = _column(ok, opts["speaker"])
    if opts["speaker_norm"] in (True, "true", "True", "1", 1):
        if speaker is None:
            raise ConfigError(f"cache:{path}: speaker_norm needs a speaker for every item (meta key "
                              f"{opts['speaker']!r}; extract with --columns speaker=...)")
        modalities["a"] = speaker_normalize(modalities["a"], speaker)
        recipe["audio_speaker_norm"] = ("audio vector and sequence z-scored within each speaker over all of "
                                        "the speaker's items (no targets used)")
    elif opts["speaker_norm"] not in (False, None, "false", "False", "0", 0):
        raise ConfigError(f"cache: speaker_norm must be true or false, got {opts['speaker_norm']!r}")
    dialogue = _column(ok, opts["dialogue_id"])
    utt_index = _column(ok, opts["utt_index"])
    default_task = "classification" if label is not None else "regression" if score is not None else "classification"
    return AffectDataset(
        name=f"cache:{path.name}",
        ids=np.asarray(ids, dtype=str),
        modalities={"t": text, **modalities},
        score=score,
        label=label,
        class_names=class_names,
        split=None if split is None else np.asarray([str(v) for v in split], dtype=str),
        fold=None if fold is None else _ints_or_str(fold),
        dialogue_id=None if dialogue is None else np.asarray([str(v) for v in dialogue], dtype=str),
        speaker=None if speaker is None else np.asarray([str(v) for v in speaker], dtype=str),
        utt_index=None if utt_index is None else _as_ints(utt_index, opts["utt_index"], path),
        group=None if speaker is None else np.asarray([str(v) for v in speaker], dtype=str),
        default_task=default_task,
        meta={**text_recipe, "features": recipe, "source": str(path), "format": "mmaffect feature cache",
              "skipped": {r["id"]: r.get("reason") for r in failed},
              **({"labels_from": f"{opts['label_file']} (column {opts['label']})",
                  "unlabelled": unlabelled} if opts["label_file"] else {})},
        frame_loader=partial(load_face_crops, path),
    )
