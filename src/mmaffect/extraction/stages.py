"""One item through every extractor: :class:`_Extractor` decodes the media, transcribes (or takes the
given text), computes the audio descriptors, the face analysis and geometry, and builds the item's
JSON record; each stage is timed, and a per-item problem becomes a failed record, never an exception.

Runs in the parent (``workers=1``) or in the spawned workers of :mod:`mmaffect.extraction.workers`.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmaffect.errors import MediaError
from mmaffect.extraction.config import RECORD_KEY, ExtractConfig, ExtractItem, config_hash
from mmaffect.features.asr import LOW_CONFIDENCE_LOGPROB

__all__ = ["decode_record"]


_HASH_CHUNK = 1 << 20  # bytes read at a time when hashing a source file


def _asr_stats(result) -> dict:
    """How sure Whisper was of an item's transcript (see :class:`~mmaffect.features.asr.Transcript`)."""
    def r(v):
        return None if v is None else round(float(v), 4)

    return {"avg_logprob": r(result.avg_logprob), "no_speech_prob": r(result.no_speech_prob),
            "compression_ratio": r(result.compression_ratio), "language": result.language,
            "language_probability": r(result.language_probability), "low_confidence": bool(result.low_confidence)}


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
        self._whisper = None

    def load(self) -> None:
        from mmaffect.features.audio import audio_lld, egemaps_functionals
        from mmaffect.features.face import FaceAnalyzer

        c = self.config
        self._face = FaceAnalyzer(crop_size=c.crop_size, min_confidence=c.min_face_confidence,
                                  full_range=c.full_range_detector, detect_max_side=c.detect_max_side,
                                  threads=self.threads, backend=c.face_backend)
        self._face(np.zeros((1, 32, 32, 3), np.uint8))  # loads the face backend's models and the FER model
        audio_lld(np.zeros(c.sample_rate // 10, np.float32), c.sample_rate, c.lld_hop)  # builds the filter banks
        if c.egemaps:
            egemaps_functionals(np.zeros(c.sample_rate // 10, np.float32), c.sample_rate)
        if "whisper" in c.audio_encoders:
            from mmaffect.features.speech_encoder import WhisperEncoder

            self._whisper = WhisperEncoder(window=c.whisper_window, threads=self.threads)

    def asr(self):
        if self._asr is None:
            from mmaffect.features.asr import SpeechRecognizer

            self._asr = SpeechRecognizer(model=self.config.asr_model, threads=self.threads,
                                         language=self.config.asr_language, beam_size=self.config.asr_beam_size)
        return self._asr

    def _audio_encoders(self, audio: np.ndarray, arrays: dict, timings: dict) -> None:
        """eGeMAPS and the optional frame-level representations, each timed as its own stage so the
        report gives every extractor's cost (seconds per audio minute)."""
        from mmaffect.features.audio import egemaps_functionals, log_mel

        c = self.config
        if c.egemaps:
            tick = time.perf_counter()
            arrays["egemaps"] = egemaps_functionals(audio, c.sample_rate)
            timings["egemaps"] = time.perf_counter() - tick
        if "logmel" in c.audio_encoders:
            tick = time.perf_counter()
            arrays["audio_logmel"] = log_mel(audio, c.sample_rate).astype(np.float16)
            timings["logmel"] = time.perf_counter() - tick
        if "whisper" in c.audio_encoders:
            if self._whisper is None:  # load() not called (a caller driving process() directly)
                from mmaffect.features.speech_encoder import WhisperEncoder

                self._whisper = WhisperEncoder(window=c.whisper_window, threads=self.threads)
            tick = time.perf_counter()
            arrays["whisper_frames"] = self._whisper(audio, c.sample_rate).astype(np.float16)
            timings["whisper"] = time.perf_counter() - tick

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
        from threadpoolctl import threadpool_limits

        try:
            # BLAS with `threads` threads, as in a worker process (env vars set before its start): the mel
            # filter bank's matrix product rounds differently with 1 and 2 BLAS threads (MFCCs move by
            # ~3e-5), so without the limit an in-process cache would differ from a worker's or Ray's
            with threadpool_limits(limits=self.threads, user_api="blas"):
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
        from mmaffect.features.audio import audio_functionals, audio_lld, is_silent
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
            timings["audio"] = time.perf_counter() - tick
            self._audio_encoders(media.audio, arrays, timings)
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
            tick = time.perf_counter()
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


def _crashed(item: ExtractItem, config: ExtractConfig) -> _Result:
    source = _source_info(item.path)
    record = {"id": item.id, "status": "failed", "retryable": True, "warnings": [], "source": source,
              "reason": "the worker process died while extracting this item (a crash in a native library, "
                        "or out of memory)",
              "start": item.start, "end": item.end, "meta": item.meta,
              "key": _item_key(item, source["sha256"], config), "config_hash": config_hash(config),
              "transcript": None, "words": None, "duration": None, "streams": None, "flags": None}
    return _Result(item.id, {RECORD_KEY: _encode_record(record)}, record, {})
