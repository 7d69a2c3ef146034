"""Read a feature cache written by :func:`mmaffect.extraction.extract`, and turn it into dataset modalities.

* :class:`FeatureCache` -- read-only access: ``ids()``, ``record(id)``, ``arrays(id)``, ``meta``.
* :func:`cache_modalities` -- the audio (``"a"``) and visual (``"v"``) :class:`~mmaffect.data.dataset.Modality`
  of a list of ids: utterance vectors and, if asked, per-step sequences on a common time grid.
* :func:`manifest_modalities` -- the seam ``manifest:`` datasets use for their media rows.

The ``cache:DIR`` dataset reader built on these lives with the other readers, in
:mod:`mmaffect.data.cache`, so the dataset registry never imports this package.

Read a cache while no job is writing it: the read-only LMDB handle takes no lock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from mmaffect.data.dataset import Modality
from mmaffect.errors import ConfigError, DataError
from mmaffect.extraction.config import CACHE_FORMAT, META_FILE, RECORD_KEY, STORE_DIR
from mmaffect.extraction.stages import decode_record
from mmaffect.extraction.summaries import (
    VISUAL_STEP_NAMES,
    VISUAL_VECTOR_NAMES,
    audio_step_names,
    audio_steps,
    audio_vector,
    audio_vector_names,
    step_windows,
    visual_steps,
    visual_vector,
)
from mmaffect.store import ArrayStore

__all__ = ["FeatureCache", "cache_modalities", "manifest_modalities", "speaker_normalize", "AUDIO_VECTOR_PARTS",
           "AUDIO_SEQUENCES"]

_CHUNK = 256


class FeatureCache:
    """A cache folder opened read-only (``meta.json`` + the LMDB store)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        meta_path = self.path / META_FILE
        if not meta_path.is_file():
            raise DataError(self.path, f"not a feature cache ({META_FILE} missing); create one with `mmaffect extract`")
        try:
            self.meta: dict = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(meta_path, f"unreadable cache metadata ({exc})") from exc
        if self.meta.get("format") != CACHE_FORMAT:
            raise DataError(meta_path, f"not an mmaffect feature cache (format {self.meta.get('format')!r})")
        store_dir = self.path / self.meta.get("store", STORE_DIR)
        # meta.json is written before the store: a job killed in between leaves an empty cache
        self._store = ArrayStore(store_dir, readonly=True) if (store_dir / "data.mdb").exists() else None

    # -- basics
    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def config(self) -> dict:
        return self.meta["config"]

    def ids(self) -> list[str]:
        """Every item id in the cache (ok and failed), sorted."""
        return [] if self._store is None else sorted(self._store.keys())

    def __len__(self) -> int:
        return 0 if self._store is None else len(self._store)

    def __contains__(self, item_id: str) -> bool:
        return self._store is not None and item_id in self._store

    # -- entries
    def entries(self, ids: Sequence[str]) -> Iterator[tuple[str, dict | None, dict[str, np.ndarray] | None]]:
        """``(id, record, arrays)`` for each id, read in chunks; ``(id, None, None)`` when absent."""
        for start in range(0, len(ids), _CHUNK):
            chunk = list(ids[start:start + _CHUNK])
            values = self._store.get_many(chunk) if self._store is not None else [None] * len(chunk)
            for key, entry in zip(chunk, values, strict=True):
                if entry is None or RECORD_KEY not in entry:
                    yield key, None, None
                    continue
                record = decode_record(entry.pop(RECORD_KEY))
                yield key, record, entry

    def _entry(self, item_id: str) -> tuple[dict, dict[str, np.ndarray]]:
        _, record, arrays = next(self.entries([item_id]))
        if record is None:
            raise DataError(self.path, f"no item {item_id!r} in this cache")
        return record, arrays

    def record(self, item_id: str) -> dict:
        """The item's JSON record (status, reason, warnings, transcript, words, source, flags, meta)."""
        return self._entry(item_id)[0]

    def arrays(self, item_id: str) -> dict[str, np.ndarray]:
        """The item's feature arrays (empty for a failed item); see ``meta["arrays"]`` for the schema."""
        return self._entry(item_id)[1]

    def records(self) -> dict[str, dict]:
        """``{id: record}`` of the whole cache."""
        return {k: r for k, r, _ in self.entries(self.ids()) if r is not None}


def _check_usable(cache: FeatureCache, ids: Sequence[str]) -> None:
    missing, failed = [], []
    for key, record, _ in cache.entries(ids):
        if record is None:
            missing.append(key)
        elif record["status"] != "ok":
            failed.append(f"{key} ({record.get('reason')})")
    if missing or failed:
        parts = []
        if missing:
            parts.append(f"{len(missing)} not in the cache: {', '.join(missing[:10])}"
                         + (" ..." if len(missing) > 10 else ""))
        if failed:
            parts.append(f"{len(failed)} failed extraction: {'; '.join(failed[:10])}"
                         + (" ..." if len(failed) > 10 else ""))
        raise DataError(cache.path, "unusable ids: " + "; ".join(parts))


def _pad(steps: list[np.ndarray], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in steps], dtype=torch.long)
    padded = torch.zeros(len(steps), max(int(lengths.max()) if len(steps) else 1, 1), width)
    for i, s in enumerate(steps):
        padded[i, :len(s)] = torch.from_numpy(s)
    return padded, lengths


AUDIO_VECTOR_PARTS = ("functionals", "egemaps", "whisper", "logmel")
AUDIO_SEQUENCES = ("steps", "lld", "logmel", "whisper")
# cached frame-level array, frame step (s; None = the cache's lld_hop), what the vector/sequence holds
_FRAME_ARRAYS = {"lld": ("audio_lld", None, "the 57 frame-level LLDs"),
                 "logmel": ("audio_logmel", 0.01, "64 log-mel bands (dB)"),
                 "whisper": ("whisper_frames", 0.02, "Whisper tiny.en encoder frames")}


def _parse_parts(value: str | Sequence[str] | None, known: Sequence[str], option: str) -> list[str] | None:
    if value is None:
        return None
    parts = [p.strip() for p in (value.split(",") if isinstance(value, str) else value) if str(p).strip()]
    unknown = [p for p in parts if p not in known]
    if unknown or not parts:
        raise ConfigError(f"cache: {option} takes {', '.join(known)} (comma-separated); got {value!r}")
    return parts


def _frames(arrays: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    arr = arrays.get(_FRAME_ARRAYS[name][0])
    return None if arr is None else np.nan_to_num(np.asarray(arr, np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def _pooled(frames: np.ndarray | None, width: int) -> np.ndarray:
    """Mean and std over the real frames (zeros without audio). Summed in float64: a float32 sum's last
    bits depend on the memory alignment of the buffer read from the store, which would change the data
    fingerprint between two loads of the same cache and refuse resuming a run."""
    if frames is None or len(frames) == 0:
        return np.zeros(2 * width, np.float32)
    f = frames.astype(np.float64)
    return np.concatenate([f.mean(axis=0), f.std(axis=0)]).astype(np.float32)


def _require(cache: FeatureCache, parts: Sequence[str]) -> None:
    """Refuse representations the cache was not extracted with, naming the extract option that adds them."""
    cfg = cache.config
    encoders = set(cfg.get("audio_encoders") or [])
    for part in parts:
        if part == "egemaps" and not cfg.get("egemaps"):
            raise ConfigError(f"{cache.path}: extracted without eGeMAPS; re-extract with --egemaps")
        if part in ("logmel", "whisper") and part not in encoders:
            raise ConfigError(f"{cache.path}: extracted without the {part} audio encoder; re-extract into a new "
                              f"folder with --audio-encoders {part}")


def _audio_vector(arrays: dict, record: dict, parts: list[str], n_functionals: int, dims: dict[str, int]) -> np.ndarray:
    out = []
    for part in parts:
        if part == "functionals":
            out.append(audio_vector(arrays, record, n_functionals, False)[:n_functionals])
        elif part == "egemaps":
            out.append(np.asarray(arrays.get("egemaps", np.zeros(88)), np.float32).reshape(-1))
        else:
            out.append(_pooled(_frames(arrays, part), dims[part]))
    present = "audio_functionals" in arrays
    silent = bool((record.get("flags") or {}).get("silent"))
    out.append(np.asarray([float(present), float(present and silent)], np.float32))
    return np.nan_to_num(np.concatenate(out), nan=0.0, posinf=0.0, neginf=0.0)


def _audio_vector_parts_names(parts: list[str], functional_names: list[str], dims: dict[str, int]) -> list[str]:
    names: list[str] = []
    for part in parts:
        if part == "functionals":
            names += functional_names
        elif part == "egemaps":
            names += [f"egemaps_{i:02d}" for i in range(88)]
        else:
            names += [f"{part}{i:03d}_{s}" for s in ("mean", "std") for i in range(dims[part])]
    return names + ["audio_present", "audio_silent"]


def cache_modalities(cache: FeatureCache, ids: list[str], sequences: bool,
                     fps: float | None = None, audio_vector_parts: str | Sequence[str] | None = None,
                     audio_sequence: str = "steps") -> tuple[dict[str, Modality], dict]:
    """Audio (``"a"``) and visual (``"v"``) modalities for ``ids`` (rows in that order) + the feature recipe.

    Utterance vectors:
      * ``a``: the 228 LLD functionals (+ 88 eGeMAPS when extracted), ``audio_present``, ``audio_silent``.
      * ``v``: mean and std over frames with a face of the 7 FER probabilities, and over frames with a
        mesh of the 16 geometry values; then ``face_rate`` (fraction of frames with a face),
        ``mesh_rate``, ``face_score_mean`` (detector confidence), ``video_present`` and
        ``speaker_sync`` (mouth opening vs audio loudness: is the visible face the one speaking?) -- so a
        model can learn when the visible face is not reliable.

    Sequences (``sequences=True``): both modalities share one step grid per item, so step ``k`` of
    ``a`` and of ``v`` cover the same time. ``fps=None``: one step per sampled video frame (from its
    time to the next frame's); items without video, or any item when ``fps`` is given, use the
    regular grid ``[k / fps, (k + 1) / fps)``. Visual steps: FER / geometry averaged over the step's
    frames with a face / mesh, the face and mesh fractions and mean score (zeros where no frame).
    Audio steps: mean and std of the LLD frames inside the step, then ``audio_present``.

    Audio representations (for voice models; both recorded in the recipe):
      * ``audio_vector_parts``: what ``a``'s utterance vector holds, any of ``functionals`` (228),
        ``egemaps`` (88), ``whisper`` (mean and std of the encoder frames, 768), ``logmel`` (mean and
        std, 128), always followed by ``audio_present``, ``audio_silent``. Default: the functionals,
        plus eGeMAPS when extracted.
      * ``audio_sequence``: ``steps`` (default: the shared step grid above), or the frames themselves
        -- ``lld`` (57 per ``lld_hop``), ``logmel`` (64 per 10 ms), ``whisper`` (384 per 20 ms). Frame
        sequences keep their own rate, so ``a`` and ``v`` steps are then NOT aligned.

    Raises:
        DataError: if any id is not in the cache or its extraction failed (all are listed).
    """
    _check_usable(cache, ids)
    cfg = cache.config
    names = cache.meta.get("feature_names", {})
    lld_names = list(names.get("audio_lld", []))
    functional_names = list(names.get("audio_functionals", []))
    egemaps = bool(cfg.get("egemaps"))
    vector_parts = _parse_parts(audio_vector_parts, AUDIO_VECTOR_PARTS, "audio_vector")
    if audio_sequence not in AUDIO_SEQUENCES:
        raise ConfigError(f"cache: audio_sequence takes one of {', '.join(AUDIO_SEQUENCES)}; got {audio_sequence!r}")
    _require(cache, (vector_parts or []) + [audio_sequence])
    from mmaffect.features.speech_encoder import whisper_dim

    dims = {"lld": len(lld_names), "logmel": 64,
            "whisper": whisper_dim() if "whisper" in (cfg.get("audio_encoders") or []) else 384}
    hop = float(cfg.get("lld_hop", 0.02))
    rms_column = lld_names.index("rms") if "rms" in lld_names else None
    step_fps = float(fps) if fps is not None else float(cfg["fps"])
    if not step_fps > 0:
        raise ConfigError(f"fps must be > 0, got {fps}")
    a_vec, v_vec, a_seq, v_seq = [], [], [], []
    for _, record, arrays in cache.entries(ids):
        if vector_parts is None:
            a_vec.append(audio_vector(arrays, record, len(functional_names), egemaps))
        else:
            a_vec.append(_audio_vector(arrays, record, vector_parts, len(functional_names), dims))
        v_vec.append(visual_vector(arrays, rms_column, hop))
        if sequences:
            windows = step_windows(arrays.get("frame_times", np.zeros(0)), float(arrays["duration"].reshape(-1)[0]),
                                   step_fps, grid=fps is not None)
            if audio_sequence == "steps":
                a_seq.append(audio_steps(arrays, windows, hop, len(lld_names)))
            else:
                frames = _frames(arrays, audio_sequence)
                a_seq.append(np.zeros((1, dims[audio_sequence]), np.float32) if frames is None or not len(frames)
                             else frames)
            v_seq.append(visual_steps(arrays, windows))
    if vector_parts is None:
        a_names = audio_vector_names(functional_names, egemaps)
    else:
        a_names = _audio_vector_parts_names(vector_parts, functional_names, dims)
    if audio_sequence == "steps":
        a_step_names = audio_step_names(lld_names)
        a_pooling = f"mean and std of LLD frames ({hop:g} s hop) inside each step"
    else:
        step = _FRAME_ARRAYS[audio_sequence][1] or hop
        a_step_names = lld_names if audio_sequence == "lld" else \
            [f"{audio_sequence}{i:03d}" for i in range(dims[audio_sequence])]
        a_pooling = (f"none: {_FRAME_ARRAYS[audio_sequence][2]}, one step per {step:g} s frame "
                     "(not aligned with the visual steps)")
    width_a = len(a_names)
    a = torch.from_numpy(np.stack(a_vec)) if a_vec else torch.zeros(0, width_a)
    v = torch.from_numpy(np.stack(v_vec)) if v_vec else torch.zeros(0, len(VISUAL_VECTOR_NAMES))
    if sequences:
        a_pad, a_len = _pad(a_seq, len(a_step_names))
        v_pad, v_len = _pad(v_seq, len(VISUAL_STEP_NAMES))
        modalities = {"a": Modality(a, a_pad, a_len), "v": Modality(v, v_pad, v_len)}
    else:
        modalities = {"a": Modality(a), "v": Modality(v)}
    alignment = ("one step per sampled video frame (regular 1/fps grid without video)" if fps is None
                 else f"regular grid of 1/{step_fps:g} s steps")
    recipe = {
        "audio_vector": {"width": width_a, "names": a_names,
                         "parts": vector_parts or (["functionals"] + (["egemaps"] if egemaps else []))},
        "audio_sequence": {"width": len(a_step_names), "names": a_step_names, "source": audio_sequence,
                           "pooling": a_pooling},
        "visual_vector": {"width": len(VISUAL_VECTOR_NAMES), "names": list(VISUAL_VECTOR_NAMES)},
        "visual_sequence": {"width": len(VISUAL_STEP_NAMES), "names": list(VISUAL_STEP_NAMES),
                            "pooling": "FER/geometry averaged over the step's frames with a face/mesh"},
        "steps": {"fps": step_fps, "alignment": alignment},
        "extraction": {"cache": str(cache.path), "config": cfg, "config_hash": cache.meta.get("config_hash"),
                       "extractors": cache.meta.get("extractors"), "versions": cache.meta.get("versions")},
    }
    return modalities, recipe


def speaker_normalize(mod: Modality, speakers: Sequence[str], min_items: int = 2) -> Modality:
    """Z-score ``mod`` within each speaker: vector columns over the speaker's items, sequence columns
    over all real frames of the speaker's items.

    Why: in speaker-independent emotion recognition most of the variance of voice features is who
    speaks (pitch range, timbre, recording level); removing each speaker's own mean and spread leaves
    how this utterance differs from the speaker's usual voice. It uses the speaker's *unlabelled*
    utterances only (no targets), but all of them, test utterances included: a model trained this way
    needs several utterances per speaker at prediction time too. A speaker with fewer than
    ``min_items`` items is left as is; binary flag columns (constant within the speaker) become 0.
    """
    speakers = np.asarray([str(s) for s in speakers])
    vector = mod.vector.clone().float()
    sequence = None if mod.sequence is None else mod.sequence.clone().float()
    for who in np.unique(speakers):
        rows = torch.as_tensor(np.flatnonzero(speakers == who))
        if len(rows) < min_items:
            continue
        v = vector[rows].double()
        std = v.std(0, unbiased=False)
        vector[rows] = ((v - v.mean(0)) / torch.where(std < 1e-6, torch.ones_like(std), std)).float()
        if sequence is not None:
            seq = sequence[rows]
            mask = torch.arange(seq.shape[1])[None, :] < mod.lengths[rows][:, None]
            frames = seq[mask].double()
            f_std = frames.std(0, unbiased=False)
            f_std = torch.where(f_std < 1e-6, torch.ones_like(f_std), f_std)
            sequence[rows] = (((seq.double() - frames.mean(0)) / f_std) * mask[..., None]).float()
    return Modality(vector, sequence, mod.lengths)


def manifest_modalities(features_dir: str | Path, ids: Sequence[str], paths: Sequence[str | Path | None],
                        sequences: bool) -> dict[str, Modality]:
    """The seam used by ``manifest:`` datasets (:mod:`mmaffect.data.manifest`) with ``--features DIR``.

    Returns ``{"a", "v", "t"}`` with one row per (id, path): audio/visual from :func:`cache_modalities`
    and the cached transcripts embedded with MiniLM. An id not in the cache is looked up by its
    resolved media path instead (the same file extracted under another id); ids found neither way,
    and failed items, raise :class:`DataError` listing them.
    """
    from mmaffect.data.text_features import text_modality

    with FeatureCache(features_dir) as cache:
        keys = list(ids)
        absent = [i for i, k in enumerate(keys) if k not in cache]
        if absent:
            by_path: dict[str, str] = {}
            for key, record in cache.records().items():
                src = (record.get("source") or {}).get("path")
                if src and record["status"] == "ok":
                    by_path.setdefault(src, key)
            for i in absent:
                if paths[i] is not None:
                    keys[i] = by_path.get(str(Path(paths[i]).expanduser().resolve()), keys[i])
        modalities, _ = cache_modalities(cache, keys, sequences)
        transcripts = [r.get("transcript") or "" for _, r, _ in cache.entries(keys)]
    modalities["t"], _ = text_modality(transcripts, sequences)
    return modalities
