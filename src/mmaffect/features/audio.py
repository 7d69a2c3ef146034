"""Acoustic features of an utterance.

* :func:`audio_lld` -- frame-level low-level descriptors (LLDs): the librosa set of the seed-000
  baseline (20 MFCC + their deltas, zero-crossing rate, spectral centroid/bandwidth/rolloff,
  12 chroma bins, RMS) from one shared STFT (25 ms Hann window, 32 ms FFT, ``hop_seconds`` hop),
  computed with :mod:`mmaffect.features.spectral` (numpy, equal to librosa 0.11 to float32 rounding).
* :func:`audio_functionals` -- a fixed-length utterance vector from those LLDs.
* :func:`log_mel` -- frame-level log-mel energies (64 bands, 10 ms hop): the input of spectrogram
  CNNs, which learn their own descriptors instead of using the hand-made ones.
* :func:`egemaps_functionals` -- openSMILE's eGeMAPSv02 (88 values). openSMILE is under audEERING's
  research licence (non-commercial only), so it is optional and imported only when called.
* :func:`is_silent` -- whether a clip holds any signal at all (muted tracks, empty segments).

Everything is NaN-free: silence and clips shorter than one window give finite values.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from mmaffect.features import spectral

__all__ = [
    "AUDIO_LLD_NAMES",
    "AUDIO_FUNCTIONAL_NAMES",
    "EGEMAPS_DIM",
    "LOG_MEL_BANDS",
    "LOG_MEL_HOP",
    "audio_lld",
    "audio_functionals",
    "log_mel",
    "egemaps_functionals",
    "is_silent",
]

N_MFCC = 20
WIN_SECONDS = 0.025  # analysis window; the FFT size is the next power of two (512 at 16 kHz)
_CHROMA = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
AUDIO_LLD_NAMES: list[str] = (
    [f"mfcc{i:02d}" for i in range(N_MFCC)]
    + [f"mfcc{i:02d}_delta" for i in range(N_MFCC)]
    + ["zcr", "spectral_centroid", "spectral_bandwidth", "spectral_rolloff"]
    + [f"chroma_{c}" for c in _CHROMA]
    + ["rms"]
)
# mean/std summarise level and variability; the 10th/90th percentiles give the range while
# ignoring outlier frames (clicks, pauses), as eGeMAPS does with its percentile functionals.
_STATS = ["mean", "std", "p10", "p90"]
AUDIO_FUNCTIONAL_NAMES: list[str] = [f"{n}_{s}" for s in _STATS for n in AUDIO_LLD_NAMES]
EGEMAPS_DIM = 88
LOG_MEL_BANDS = 64
LOG_MEL_HOP = 0.01  # seconds: the usual 10 ms of spectrogram front ends (Whisper, VGGish, PANNs)
_POWER_FLOOR = 1e-10  # -100 dB: the level we call "nothing" (keeps log/MFCC finite on digital silence)


def _frame_params(sample_rate: int, hop_seconds: float) -> tuple[int, int, int]:
    if not (isinstance(sample_rate, int | np.integer) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    if not (math.isfinite(hop_seconds) and hop_seconds > 0):
        raise ValueError(f"hop_seconds must be > 0, got {hop_seconds!r}")
    win = max(16, round(WIN_SECONDS * sample_rate))
    n_fft = 1 << (win - 1).bit_length()
    hop = max(1, round(hop_seconds * sample_rate))
    return win, n_fft, hop


def _stft_magnitude(audio: np.ndarray, sample_rate: int, hop_seconds: float
                    ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``(mono signal, |STFT| (n_fft // 2 + 1, T), n_fft, hop)`` with centred, zero-padded frames; an
    empty clip becomes one zero sample, so every feature has at least one frame."""
    win, n_fft, hop = _frame_params(sample_rate, hop_seconds)
    y = _as_mono(audio)
    if y.size == 0:
        y = np.zeros(1, np.float32)
    return y, np.abs(spectral.stft(y, n_fft=n_fft, hop_length=hop, win_length=win)), n_fft, hop


def _as_mono(audio: np.ndarray) -> np.ndarray:
    y = np.asarray(audio, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected mono audio of shape (S,), got shape {y.shape}")
    return np.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0)


def audio_lld(audio: np.ndarray, sample_rate: int = 16000, hop_seconds: float = 0.02) -> np.ndarray:
    """Frame-level descriptors, float32 ``(T, len(AUDIO_LLD_NAMES))``, one row per ``hop_seconds``.

    Frames are centred (frame ``t`` covers time ``t * hop``), so ``T = 1 + len(audio) // hop`` and
    even an empty or 10 ms clip gives one frame. Silent frames give MFCCs of the -100 dB floor,
    zero spectral shape/chroma/RMS -- never NaN.
    """
    # One STFT for everything.
    y, mag, n_fft, hop = _stft_magnitude(audio, sample_rate, hop_seconds)
    power = mag**2
    mel = spectral.mel_filters(sample_rate, n_fft, 40, 20.0, sample_rate / 2) @ power
    mfcc = spectral.dct_ii(spectral.power_to_db(np.maximum(mel, _POWER_FLOOR), amin=_POWER_FLOOR), N_MFCC)
    # deltas over +-2 frames; "nearest" edges work for any number of frames (even 1)
    delta = spectral.delta(mfcc, width=5) if mfcc.shape[1] > 1 else np.zeros_like(mfcc)
    frames = spectral.frame(np.pad(y, (n_fft // 2, n_fft // 2)), frame_length=n_fft, hop_length=hop)
    frames = frames[:, : mag.shape[1]]
    signs = np.signbit(frames)
    zcr = np.mean(signs[1:] != signs[:-1], axis=0, keepdims=True)
    freqs = spectral.fft_frequencies(sample_rate, n_fft)[:, None]
    total = mag.sum(axis=0, keepdims=True)
    has_energy = total > 1e-8
    safe_total = np.where(has_energy, total, 1.0)
    centroid = np.where(has_energy, (freqs * mag).sum(axis=0, keepdims=True) / safe_total, 0.0)
    bandwidth = np.where(
        has_energy,
        np.sqrt(np.maximum(((freqs - centroid) ** 2 * mag).sum(axis=0, keepdims=True) / safe_total, 0)),
        0.0,
    )
    # rolloff: frequency below which 85 % of the magnitude lies
    cum = np.cumsum(mag, axis=0)
    idx = np.argmax(cum >= 0.85 * cum[-1:], axis=0)
    rolloff = np.where(has_energy, freqs[idx, 0][None, :], 0.0)
    chroma_raw = spectral.chroma_filters(sample_rate, n_fft) @ power
    cmax = chroma_raw.max(axis=0, keepdims=True)
    chroma = np.where(cmax > _POWER_FLOOR, chroma_raw / np.where(cmax > _POWER_FLOOR, cmax, 1.0), 0.0)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=0, keepdims=True))  # same frames as zcr
    lld = np.concatenate([mfcc, delta, zcr, centroid, bandwidth, rolloff, chroma, rms], axis=0).T
    return np.nan_to_num(lld.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def log_mel(audio: np.ndarray, sample_rate: int = 16000, hop_seconds: float = LOG_MEL_HOP,
            n_mels: int = LOG_MEL_BANDS) -> np.ndarray:
    """Log-mel energies in dB, float32 ``(T, n_mels)``: 25 ms Hann window, ``hop_seconds`` hop, centred
    frames (``T = 1 + len(audio) // hop``), 20 Hz to Nyquist, floored at -100 dB (never NaN)."""
    _, mag, n_fft, _ = _stft_magnitude(audio, sample_rate, hop_seconds)
    mel = spectral.mel_filters(sample_rate, n_fft, n_mels, 20.0, sample_rate / 2) @ mag ** 2
    db = spectral.power_to_db(np.maximum(mel, _POWER_FLOOR), amin=_POWER_FLOOR)
    return np.nan_to_num(db.T.astype(np.float32), nan=-100.0, posinf=0.0, neginf=-100.0)


def audio_functionals(lld: np.ndarray) -> np.ndarray:
    """Fixed-length utterance vector (``AUDIO_FUNCTIONAL_NAMES``): per LLD its mean, standard
    deviation, 10th and 90th percentile; an LLD matrix with no rows gives zeros."""
    x = np.asarray(lld, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected an LLD matrix (T, d), got shape {x.shape}")
    if x.shape[0] == 0:
        return np.zeros(len(_STATS) * x.shape[1], np.float32)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    p10, p90 = np.percentile(x, [10, 90], axis=0)
    return np.concatenate([x.mean(axis=0), x.std(axis=0), p10, p90]).astype(np.float32)


@functools.cache
def _egemaps_extractor():
    try:
        import opensmile
    except ImportError as err:  # optional: audEERING licence is non-commercial
        raise ImportError(
            "egemaps_functionals needs the optional 'opensmile' package (audEERING research licence, "
            "non-commercial use only): pip install opensmile==2.6.0; or use audio_lld/audio_functionals"
        ) from err
    return opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
    )


def egemaps_functionals(audio: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """openSMILE eGeMAPSv02 functionals, float32 ``(88,)`` (NaN replaced by 0).

    openSMILE needs a few frames of signal; clips shorter than 0.1 s are zero-padded to 0.1 s.
    The extractor is created once per process.
    """
    y = _as_mono(audio)
    min_len = max(1, round(0.1 * sample_rate))
    if y.size < min_len:
        y = np.pad(y, (0, min_len - y.size))
    out = _egemaps_extractor().process_signal(y, sample_rate).to_numpy(dtype=np.float32).reshape(-1)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def is_silent(audio: np.ndarray, threshold_db: float = -50.0, sample_rate: int = 16000) -> bool:
    """True if no 25 ms frame of ``audio`` reaches ``threshold_db`` dBFS RMS (full scale = 1.0).

    Uses the loudest frame rather than the overall level, so a long recording that is mostly
    silence but contains a short utterance is not called silent. Empty audio is silent.
    """
    y = _as_mono(audio).astype(np.float64)
    if y.size == 0:
        return True
    win = max(1, round(WIN_SECONDS * sample_rate))
    if y.size <= win:
        loudest = float(np.mean(y**2))
    else:
        hop = max(1, win // 2)
        c = np.concatenate([[0.0], np.cumsum(y**2)])
        starts = np.arange(0, y.size - win + 1, hop)
        loudest = float(np.max((c[starts + win] - c[starts]) / win))
    return 10.0 * math.log10(max(loudest, 1e-20)) < threshold_db
