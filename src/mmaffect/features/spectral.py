"""The few spectral operations :mod:`mmaffect.features.audio` needs, in plain numpy.

They compute what librosa 0.11 computes for the same settings (tests/test_spectral.py checks each
against librosa to float32 rounding): a centred STFT with a periodic Hann window, Slaney mel and
Ellis chroma filter banks, dB conversion, the orthonormal DCT-II of MFCCs and Savitzky-Golay deltas.
Why not librosa itself: importing it pulls in scipy.signal, scipy.stats, scipy.ndimage and numba,
about 3 s of a cold ``mmaffect analyze`` on 2 cores -- far more than these features cost to compute.
The filter banks depend only on the sample rate and FFT size, so each is built once per process.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["stft", "frame", "fft_frequencies", "mel_filters", "chroma_filters", "power_to_db", "dct_ii",
           "delta"]


def frame(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Overlapping frames of a 1-d signal as a read-only view ``(frame_length, n_frames)``."""
    if y.size < frame_length:
        raise ValueError(f"signal of {y.size} samples is shorter than one frame ({frame_length})")
    return np.lib.stride_tricks.sliding_window_view(y, frame_length)[::hop_length].T


def stft(y: np.ndarray, n_fft: int, hop_length: int, win_length: int) -> np.ndarray:
    """Centred STFT ``(n_fft // 2 + 1, 1 + len(y) // hop_length)``, complex64: the signal is zero-padded
    by ``n_fft // 2`` on both sides; a periodic Hann window of ``win_length`` sits centred in ``n_fft``."""
    n = np.arange(win_length)
    window = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    window[left:left + win_length] = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
    frames = frame(np.pad(y, n_fft // 2), n_fft, hop_length)
    return np.fft.rfft(window[:, None] * frames, axis=0).astype(np.complex64)


def fft_frequencies(sample_rate: int, n_fft: int) -> np.ndarray:
    """Centre frequency in Hz of each of the ``n_fft // 2 + 1`` STFT bins."""
    return np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)


_MEL_LINEAR_HZ = 200.0 / 3  # Slaney's scale: linear below 1 kHz (15 mels), logarithmic above
_MEL_BREAK_HZ = 1000.0
_MEL_LOG_STEP = math.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _MEL_LINEAR_HZ
    above = hz >= _MEL_BREAK_HZ
    log_part = _MEL_BREAK_HZ / _MEL_LINEAR_HZ + np.log(np.where(above, hz, _MEL_BREAK_HZ) / _MEL_BREAK_HZ) \
        / _MEL_LOG_STEP
    return np.where(above, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    break_mel = _MEL_BREAK_HZ / _MEL_LINEAR_HZ
    above = mel >= break_mel
    return np.where(above, _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (mel - break_mel)), _MEL_LINEAR_HZ * mel)


@functools.cache
def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular Slaney mel filters ``(n_mels, n_fft // 2 + 1)``, float32, each scaled to unit area
    (constant energy per band); the array is shared, do not modify it."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_frequencies(sample_rate, n_fft)[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None].astype(np.float32)
    weights.flags.writeable = False
    return weights


@functools.cache
def chroma_filters(sample_rate: int, n_fft: int, n_chroma: int = 12) -> np.ndarray:
    """Ellis' chroma filters ``(n_chroma, n_fft // 2 + 1)``, float32, first row C (A = 440 Hz): each FFT
    bin spreads over the pitch classes near its own with a Gaussian one bin-spacing wide, and a
    Gaussian over octaves (centre octave 5, width 2) weights mid-range bins most. Shared, read-only."""
    freqs = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    bins = n_chroma * np.log2(freqs / (440.0 / 16))  # pitch in chroma bins above A0 (octave 0)
    bins = np.concatenate([[bins[0] - 1.5 * n_chroma], bins])  # the DC bin: 1.5 octaves below bin 1
    spacing = np.concatenate([np.maximum(np.diff(bins), 1.0), [1.0]])
    half = round(n_chroma / 2)
    distance = np.remainder(bins[None, :] - np.arange(n_chroma)[:, None] + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2 * distance / spacing[None, :]) ** 2)
    norms = np.sqrt((weights ** 2).sum(axis=0, keepdims=True))
    weights /= np.where(norms < np.finfo(weights.dtype).tiny, 1.0, norms)
    weights *= np.exp(-0.5 * ((bins / n_chroma - 5.0) / 2.0) ** 2)[None, :]
    weights = np.roll(weights, -3 * (n_chroma // 12), axis=0)  # rows from A to rows from C
    out = np.ascontiguousarray(weights[:, : 1 + n_fft // 2], dtype=np.float32)
    out.flags.writeable = False
    return out


def power_to_db(power: np.ndarray, amin: float) -> np.ndarray:
    """``10 log10(max(power, amin))``, reference 1.0, no top-dB clipping."""
    return 10.0 * np.log10(np.maximum(amin, power))


@functools.cache
def _dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    k = np.arange(n_out)[:, None]
    basis = np.cos(np.pi * k * (2 * np.arange(n_in)[None, :] + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    basis.flags.writeable = False
    return basis


def dct_ii(x: np.ndarray, n_out: int) -> np.ndarray:
    """The first ``n_out`` coefficients of the orthonormal DCT-II along axis 0 (MFCCs from log-mel)."""
    return (_dct_matrix(n_out, x.shape[0]) @ x.astype(np.float64)).astype(x.dtype)


def delta(x: np.ndarray, width: int = 5) -> np.ndarray:
    """Local slope along the last axis: the least-squares line over ``width`` frames (a first-order
    Savitzky-Golay derivative), edges extended with the nearest frame."""
    if width < 3 or width % 2 == 0:
        raise ValueError(f"width must be an odd number >= 3, got {width}")
    half = width // 2
    offsets = np.arange(-half, half + 1)
    padded = np.pad(x.astype(np.float64), [(0, 0)] * (x.ndim - 1) + [(half, half)], mode="edge")
    steps = x.shape[-1]
    slope = sum(k * padded[..., half + k: half + k + steps] for k in offsets) / float((offsets ** 2).sum())
    return slope.astype(x.dtype)
