"""The numpy spectral operations equal librosa 0.11's for the settings the audio features use.

librosa is the reference (a test dependency only): the features were computed with it before
``mmaffect.features.spectral`` replaced it to save its 3 s import, and every cache and checkpoint made
since must keep reading the same numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from mmaffect.features import audio, spectral

librosa = pytest.importorskip("librosa", reason="librosa is the reference; pip install -e '.[test]'")

RATES_AND_FFTS = [(16000, 512), (8000, 256), (22050, 1024), (44100, 2048)]


def _signal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("n", [1, 100, 512, 16000 * 2 + 37])
@pytest.mark.filterwarnings("ignore:n_fft=512 is too large")  # librosa on clips shorter than one FFT
def test_stft_equals_librosa(n):
    y = _signal(n)
    ours = spectral.stft(y, n_fft=512, hop_length=320, win_length=400)
    theirs = librosa.stft(y, n_fft=512, hop_length=320, win_length=400, center=True, pad_mode="constant")
    assert ours.shape == theirs.shape == (257, 1 + n // 320)
    assert ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * max(1.0, np.abs(theirs).max()))


@pytest.mark.parametrize(("sr", "n_fft"), RATES_AND_FFTS)
@pytest.mark.parametrize(("n_mels", "fmin"), [(40, 20.0), (64, 20.0), (128, 0.0)])
def test_mel_filters_equal_librosa(sr, n_fft, n_mels, fmin):
    ours = spectral.mel_filters(sr, n_fft, n_mels, fmin, sr / 2)
    theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=sr / 2)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7 * theirs.max())


@pytest.mark.parametrize(("sr", "n_fft"), RATES_AND_FFTS)
def test_chroma_filters_equal_librosa(sr, n_fft):
    ours = spectral.chroma_filters(sr, n_fft)
    theirs = librosa.filters.chroma(sr=sr, n_fft=n_fft)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (12, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_filter_banks_are_shared_and_read_only():
    bank = spectral.mel_filters(16000, 512, 40, 20.0, 8000.0)
    assert spectral.mel_filters(16000, 512, 40, 20.0, 8000.0) is bank
    with pytest.raises(ValueError):
        bank[0, 0] = 1.0


def test_mfcc_and_delta_equal_librosa():
    y = _signal(16000 * 3)
    power = np.abs(spectral.stft(y, 512, 320, 400)) ** 2
    mel = spectral.mel_filters(16000, 512, 40, 20.0, 8000.0) @ power
    db = spectral.power_to_db(np.maximum(mel, 1e-10), amin=1e-10)
    np.testing.assert_allclose(db, librosa.power_to_db(np.maximum(mel, 1e-10), amin=1e-10, top_db=None),
                               rtol=0, atol=1e-4)
    mfcc = spectral.dct_ii(db, 20)
    reference = librosa.feature.mfcc(S=db, n_mfcc=20)
    assert mfcc.dtype == reference.dtype == np.float32
    np.testing.assert_allclose(mfcc, reference, rtol=0, atol=1e-5 * np.abs(reference).max())
    ours = spectral.delta(mfcc, width=5)
    theirs = librosa.feature.delta(mfcc, width=5, mode="nearest")
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())


def test_delta_of_a_ramp_is_its_slope_and_of_a_constant_zero():
    ramp = np.tile(np.arange(10, dtype=np.float32) * 0.5, (3, 1))
    np.testing.assert_allclose(spectral.delta(ramp)[:, 2:-2], 0.5, rtol=1e-6)
    np.testing.assert_array_equal(spectral.delta(np.full((2, 6), 7.0, np.float32)), 0.0)
    with pytest.raises(ValueError, match="odd"):
        spectral.delta(ramp, width=4)


@pytest.mark.parametrize("sr", [16000, 8000, 22050])
def test_audio_lld_equals_the_librosa_pipeline(sr):
    """The whole 57-column LLD matrix, against the same descriptors computed with librosa's own calls."""
    y = _signal(sr * 2, seed=3)
    lld = audio.audio_lld(y, sr, 0.02)
    win = round(0.025 * sr)
    n_fft = 1 << (win - 1).bit_length()
    hop = round(0.02 * sr)
    power = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, pad_mode="constant")) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_fft=n_fft, n_mels=40, fmin=20.0, fmax=sr / 2)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(np.maximum(mel, 1e-10), amin=1e-10, top_db=None), n_mfcc=20)
    delta = librosa.feature.delta(mfcc, width=5, mode="nearest")
    chroma = librosa.filters.chroma(sr=sr, n_fft=n_fft) @ power
    chroma /= chroma.max(axis=0, keepdims=True)
    names = audio.AUDIO_LLD_NAMES
    for prefix, suffix, reference in (("mfcc", "", mfcc), ("mfcc", "_delta", delta), ("chroma_", "", chroma)):
        columns = [i for i, n in enumerate(names) if n.startswith(prefix) and n.endswith(suffix)
                   and (suffix or not n.endswith("_delta"))]
        assert len(columns) == reference.shape[0]
        np.testing.assert_allclose(lld[:, columns], reference.T, rtol=0, atol=1e-5 * np.abs(reference).max(),
                                   err_msg=prefix + suffix)


@pytest.mark.parametrize("sr", [8000, 44100])
def test_whisper_resampling_equals_librosa(sr):
    from mmaffect.features.asr import ASR_SAMPLE_RATE, _to_16k

    y = _signal(sr)
    np.testing.assert_allclose(_to_16k(y, sr), librosa.resample(y, orig_sr=sr, target_sr=ASR_SAMPLE_RATE),
                               rtol=0, atol=1e-6)
