"""Tests of the raw-media extractors on media generated in a temp dir (tests/media_factory.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest

try:
    import media_factory as mf
except ModuleNotFoundError:  # tests/ imported as a package
    from tests import media_factory as mf

from mmaffect.errors import MediaError  # noqa: E402
from mmaffect.features.audio import (  # noqa: E402
    AUDIO_FUNCTIONAL_NAMES,
    AUDIO_LLD_NAMES,
    audio_functionals,
    audio_lld,
    egemaps_functionals,
    is_silent,
)
from mmaffect.features.media import Media, decode  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def av_clip(media_dir):
    """3 s, 10 fps astronaut video; audio silent except a tone burst from 1.0 to 2.0 s."""
    audio = np.concatenate([mf.silence(1.0), mf.tone(1.0), mf.silence(1.0)])
    return mf.face_video(media_dir / "face.mp4", seconds=3.0, fps=10, audio=audio)


@pytest.fixture(scope="module")
def speech_audio():
    y = mf.speech()
    if y is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return y


# ---------------------------------------------------------------------------------------- media
def test_decode_video_and_audio(av_clip):
    m = decode(av_clip, fps=2.0)
    assert isinstance(m, Media) and m.sample_rate == SR
    assert m.duration == pytest.approx(3.0, abs=0.05)
    assert m.audio.dtype == np.float32 and m.audio.ndim == 1
    assert abs(m.audio.size - 3 * SR) <= 1024
    assert m.frames.dtype == np.uint8 and m.frames.shape[1:] == (480, 640, 3)
    assert abs(len(m.frames) - m.duration * 2.0) <= 1
    assert m.frame_times.dtype == np.float32 and len(m.frame_times) == len(m.frames)
    assert np.all(np.diff(m.frame_times) > 0)
    np.testing.assert_allclose(m.frame_times, np.arange(len(m.frames)) / 2.0, atol=0.06)
    # the tone burst is where it was written
    rms = np.sqrt(np.mean(m.audio[: 3 * SR].reshape(30, -1) ** 2, axis=1))
    assert rms[:9].max() < 0.01 and rms[11:19].min() > 0.1 and rms[21:].max() < 0.01


def test_decode_downscale_and_fps(av_clip):
    m = decode(av_clip, fps=5.0, max_side=320)
    assert m.frames.shape[1:] == (240, 320, 3)
    assert abs(len(m.frames) - 15) <= 1
    m = decode(av_clip, fps=30.0)  # faster than the video: each of its 30 frames once
    assert len(m.frames) == 30 and np.all(np.diff(m.frame_times) > 0)


def test_decode_window(av_clip):
    m = decode(av_clip, fps=5.0, start=0.5, end=2.5)
    assert m.start == 0.5 and m.duration == pytest.approx(2.0)
    assert m.audio.size == 2 * SR
    assert m.frame_times[0] >= 0 and m.frame_times[-1] < 2.0 and np.all(np.diff(m.frame_times) > 0)
    assert abs(len(m.frames) - 10) <= 1
    # times are relative to the window: the burst (1.0-2.0 s in the file) starts at 0.5 s
    env = np.sqrt(np.mean(m.audio.reshape(-1, 160) ** 2, axis=1))  # 10 ms frames
    onset = np.argmax(env > 0.1) / 100
    assert onset == pytest.approx(0.5, abs=0.03)
    with pytest.raises(MediaError, match="after the end"):
        decode(av_clip, start=10.0)
    with pytest.raises(ValueError):
        decode(av_clip, start=2.0, end=1.0)


def test_audio_only_and_video_only(media_dir):
    for path in (
        mf.audio_only_mp4(media_dir / "audio_only.mp4"),
        mf.write_wav(media_dir / "tone.wav", mf.tone(1.5)),
    ):
        m = decode(path)
        assert m.frames is None and m.frame_times.shape == (0,) and not m.has_video
        assert m.audio is not None and m.audio.size > SR
    m = decode(mf.video_only_mp4(media_dir / "video_only.mp4"))
    assert m.audio is None and not m.has_audio
    assert m.frames.shape[0] == 4 and m.duration == pytest.approx(2.0, abs=0.05)


def test_decode_applies_rotation(media_dir):
    m = decode(mf.rotated_mp4(media_dir / "rotated.mp4"))
    assert m.frames.shape[1:] == (160, 120, 3)  # portrait after the 90 deg clockwise turn
    cols = m.frames[0].mean(axis=(0, 2))
    assert cols[-30:].mean() > 200 and cols[:60].mean() < 30  # the top band is now on the right


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: mf.zero_byte(d / "empty.mp4"), "empty file (0 bytes)"),
        (lambda d: mf.text_as_mp4(d / "text.mp4"), "not a media file"),
        (lambda d: d / "does_not_exist.mp4", "file not found"),
    ],
    ids=["zero-byte", "text-renamed", "missing"],
)
def test_decode_errors(media_dir, make, reason):
    path = make(media_dir)
    with pytest.raises(MediaError, match=re.escape(reason)) as info:
        decode(path)
    assert str(info.value).startswith(f"{path}: ")


def test_truncated_mp4(media_dir):
    # index (moov) at the end, as PyAV/ffmpeg write by default: a cut file cannot be opened
    full = mf.write_mp4(media_dir / "full.mp4", mf.noface_image(160, 120), mf.tone(6.0), seconds=6.0)
    cut = mf.truncated_copy(full, media_dir / "cut.mp4", 0.4)
    with pytest.raises(MediaError, match="corrupt or truncated"):
        decode(cut)
    # index first (faststart): the first ~40 % still decodes; never anything but a MediaError
    full = mf.write_mp4(
        media_dir / "full_fs.mp4", mf.noface_image(160, 120), mf.tone(6.0), seconds=6.0, faststart=True
    )
    cut = mf.truncated_copy(full, media_dir / "cut_fs.mp4", 0.4)
    with pytest.warns(UserWarning, match=r"partly decoded \(1 decode error"):
        m = decode(cut)
    n_full = len(decode(full).frames)
    assert n_full == 12 and 0 < len(m.frames) < n_full / 2  # 40 % of the bytes: under half of the frames
    assert 0.5 < m.audio.size / SR < 2.4 and m.duration < 2.4  # the duration is what decoded, not the 6 s declared


# ---------------------------------------------------------------------------------------- audio
def _nan_wav(path, fraction: float):
    """A 16 kHz float WAV whose first ``fraction`` of samples are NaN/Inf (float PCM can store them)."""
    import soundfile as sf

    y = mf.tone(2.0)
    n = round(fraction * y.size)
    y[: n // 2] = np.nan
    y[n // 2: n] = np.inf
    sf.write(path, y, SR, subtype="FLOAT")
    return path


def test_decode_counts_nonfinite_audio(media_dir):
    m = decode(_nan_wav(media_dir / "nan.wav", 0.25))
    assert m.audio_nonfinite == pytest.approx(0.25, abs=1e-3)  # measured before the samples are repaired
    assert np.isfinite(m.audio).all() and not m.audio[: SR // 4].any() and m.audio[SR:].any()
    assert decode(mf.write_wav(media_dir / "clean.wav", mf.tone(1.0))).audio_nonfinite == 0.0


def test_audio_lld_values_on_known_signals():
    """Each descriptor against its closed-form value (frames away from the zero-padded edges)."""
    col = {n: i for i, n in enumerate(AUDIO_LLD_NAMES)}
    chroma = [n for n in AUDIO_LLD_NAMES if n.startswith("chroma_")]
    for freq, note in ((440.0, "chroma_A"), (1000.0, "chroma_B"), (3000.0, "chroma_F#")):
        x = audio_lld(mf.tone(1.0, freq=freq, amp=0.5))[5:-5]
        assert np.median(x[:, col["spectral_centroid"]]) == pytest.approx(freq, rel=0.01)
        assert np.median(x[:, col["spectral_rolloff"]]) == pytest.approx(freq, abs=2 * SR / 512)  # 2 FFT bins
        assert np.median(x[:, col["spectral_bandwidth"]]) < 100  # a pure tone: one narrow peak
        assert x[:, col["rms"]].mean() == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)  # A / sqrt(2)
        assert x[:, col["zcr"]].mean() == pytest.approx(2 * freq / SR, rel=0.02)  # two crossings per period
        assert chroma[int(x[:, [col[c] for c in chroma]].mean(0).argmax())] == note
    # MFCC: digital silence sits exactly on the -100 dB floor, the same in every frame; noise is far above.
    # "The same" up to float rounding: the DCT of identical rows may differ by ~1e-14 with the CPU's SIMD path
    silent = audio_lld(mf.silence(1.0))
    noise = audio_lld((0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32))[5:-5]
    assert np.ptp(silent[:, :40], axis=0).max() < 1e-6 and np.abs(silent[:, 20:40]).max() < 1e-6  # no deltas
    assert noise[:, col["mfcc00"]].mean() > silent[0, col["mfcc00"]] + 400
    assert noise[:, 1:20].std(axis=0).min() > 0.5  # noise varies frame to frame
    assert np.median(noise[:, col["spectral_centroid"]]) == pytest.approx(SR / 4, rel=0.05)  # white: band centre
    assert noise[:, col["zcr"]].mean() == pytest.approx(0.5, abs=0.03)


def test_audio_lld_shapes_and_silence():
    tone = mf.tone(1.0)
    lld = audio_lld(tone)
    assert lld.dtype == np.float32 and lld.shape == (1 + SR // 320, len(AUDIO_LLD_NAMES))
    assert np.isfinite(lld).all()
    for y in (mf.silence(1.0), mf.silence(0.01), mf.tone(0.01), np.zeros(0, np.float32)):
        x = audio_lld(y)
        assert x.shape[0] >= 1 and x.shape[1] == len(AUDIO_LLD_NAMES) and np.isfinite(x).all()
    assert audio_lld(mf.tone(0.01)).shape[0] == 1
    assert is_silent(np.zeros(SR, np.float32)) and is_silent(np.zeros(0, np.float32))
    assert not is_silent(tone)
    assert is_silent(mf.tone(1.0, amp=1e-4))  # -83 dBFS
    # a short sound in a long silence is not silence
    assert not is_silent(np.concatenate([mf.silence(5.0), mf.tone(0.1), mf.silence(5.0)]))


def test_audio_functionals_fixed_length():
    lens = {audio_functionals(audio_lld(mf.tone(s))).shape for s in (0.01, 0.5, 3.0)}
    assert lens == {(len(AUDIO_FUNCTIONAL_NAMES),)}
    f = audio_functionals(audio_lld(mf.silence(1.0)))
    assert np.isfinite(f).all()
    # the functionals are the stated statistics of the LLD columns
    ramp = np.stack([np.arange(101, dtype=np.float32)] * len(AUDIO_LLD_NAMES), axis=1)
    stats = dict(zip(AUDIO_FUNCTIONAL_NAMES, audio_functionals(ramp), strict=True))
    assert stats["rms_mean"] == 50 and stats["rms_p10"] == 10 and stats["rms_p90"] == 90
    assert stats["zcr_std"] == pytest.approx(np.arange(101).std())
    assert audio_functionals(np.zeros((0, len(AUDIO_LLD_NAMES)), np.float32)).shape == (
        len(AUDIO_FUNCTIONAL_NAMES),
    )


def test_egemaps_functionals():
    f = egemaps_functionals(mf.tone(1.0), SR)
    assert f.shape == (88,) and f.dtype == np.float32 and np.isfinite(f).all()
    assert np.isfinite(egemaps_functionals(mf.silence(0.05), SR)).all()
    names = list(_egemaps_names())
    loud, quiet = f[names.index("loudness_sma3_amean")], egemaps_functionals(mf.tone(1.0, amp=0.01), SR)
    assert loud > 5 * quiet[names.index("loudness_sma3_amean")] > 0  # 30 dB quieter: far less loud
    # F0 in semitones from 27.5 Hz: a 220 Hz tone is 36 semitones up
    pitch = egemaps_functionals(mf.tone(1.0, freq=220.0), SR)[names.index("F0semitoneFrom27.5Hz_sma3nz_amean")]
    assert pitch == pytest.approx(36.0, abs=1.0)


def _egemaps_names():
    from mmaffect.features.audio import _egemaps_extractor

    return _egemaps_extractor().feature_names


# ----------------------------------------------------------------------------------------- face
@pytest.fixture(scope="module")
def face_analyzer():
    from mmaffect.features.face import FaceAnalyzer

    fa = FaceAnalyzer()
    yield fa
    fa.close()


def test_face_on_astronaut(face_analyzer, av_clip):
    from mmaffect.features.face import FER_LABELS

    frames = decode(av_clip, fps=2.0).frames
    ff = face_analyzer(frames)
    t = len(frames)
    assert len(ff) == t and ff.detected.dtype == bool
    assert ff.detected.mean() >= 0.75
    d = ff.detected
    assert ff.score.shape == (t,) and (ff.score[d] > 0.5).all()
    assert ff.box.shape == (t, 4) and (ff.box[d] >= 0).all() and (ff.box[d] <= 1).all()
    assert ff.landmarks.shape == (t, 478, 3)
    xy = ff.landmarks[d][:, :, :2]
    assert (xy > 0).all() and (xy < 1).all()
    # landmarks lie inside (a slightly enlarged) detection box
    bx = ff.box[d]
    assert (np.median(xy[:, :, 0], axis=1) > bx[:, 0]).all() and (
        np.median(xy[:, :, 0], axis=1) < bx[:, 0] + bx[:, 2]
    ).all()
    assert ff.expression.shape == (t, 7)
    np.testing.assert_allclose(ff.expression[d].sum(axis=1), 1.0, atol=1e-5)
    assert FER_LABELS[int(ff.expression[d].mean(axis=0).argmax())] == "happy"  # she smiles
    assert ff.crops.shape == (t, 48, 48) and ff.crops.dtype == np.uint8
    assert (ff.crops[d].reshape(d.sum(), -1).std(axis=1) > 10).all()


def test_face_alignment_levels_the_eyes(face_analyzer):
    import cv2

    img = mf.face_image()
    tilted = cv2.warpAffine(img, cv2.getRotationMatrix2D((320.0, 240.0), 20.0, 1.0), (640, 480))
    ff = face_analyzer(np.stack([img, tilted]))
    assert ff.detected.all()
    px = ff.landmarks[:, :, :2] * np.array([640, 480], np.float32)
    dx, dy = (px[:, 362] - px[:, 33]).T  # outer corner of the image-left eye -> inner corner of the other
    angles = np.degrees(np.arctan2(dy, dx))
    assert angles[0] - angles[1] == pytest.approx(20.0, abs=4.0)  # the mesh sees the tilt ...
    a, b = (c.astype(np.float32).ravel() for c in ff.crops)
    assert np.corrcoef(a, b)[0, 1] > 0.9  # ... and the aligned crops undo it


def test_face_geometry_values_on_the_test_face(face_analyzer):
    """The geometric descriptor on the astronaut: upright, frontal, smiling; rotating the image moves
    only head_roll (by the angle), halving the face only face_scale (by half)."""
    import cv2

    from mmaffect.extraction.summaries import GEOMETRY_NAMES, face_geometry

    img = mf.face_image()
    tilted = cv2.warpAffine(img, cv2.getRotationMatrix2D((320.0, 240.0), 20.0, 1.0), (640, 480))
    half = cv2.copyMakeBorder(cv2.resize(img, (320, 240), interpolation=cv2.INTER_AREA), 120, 120, 160, 160,
                              cv2.BORDER_CONSTANT, value=(40, 40, 40))
    ff = face_analyzer(np.stack([img, tilted, half]))
    geom, valid = face_geometry(ff.landmarks, 640, 480)
    assert valid.all()
    g = {n: geom[:, i] for i, n in enumerate(GEOMETRY_NAMES)}
    assert abs(g["head_roll"][0]) < 0.1 and abs(g["head_yaw"][0]) < 0.05  # upright, facing the camera
    assert g["mouth_corner_lift"][0] > 0.1  # corners above the lip centre: she smiles
    assert g["eye_open_r"][0] == pytest.approx(g["eye_open_l"][0], rel=0.15)  # both eyes alike
    # mouth width ~ one inter-ocular distance (the normaliser), as on a typical adult face
    assert 0.8 < g["mouth_width"][0] < 1.2
    assert g["head_roll"][1] - g["head_roll"][0] == pytest.approx(-np.radians(20.0), abs=0.05)
    assert g["face_scale"][2] == pytest.approx(g["face_scale"][0] / 2, rel=0.1)
    invariant = [i for i, n in enumerate(GEOMETRY_NAMES) if n not in ("head_roll", "face_scale")]
    np.testing.assert_allclose(geom[1:, invariant], np.repeat(geom[:1, invariant], 2, 0), atol=0.03)


def test_face_on_no_face_video(face_analyzer, media_dir):
    frames = decode(mf.noface_video(media_dir / "noface.mp4"), fps=2.0).frames
    ff = face_analyzer(frames)
    assert len(ff) == len(frames) and not ff.detected.any()
    for arr in (ff.score, ff.box, ff.landmarks, ff.expression, ff.crops):
        assert not arr.any()
    assert len(face_analyzer(np.zeros((0, 64, 64, 3), np.uint8))) == 0


# ------------------------------------------------------------------------------------------ asr
@pytest.fixture(scope="module")
def recognizer():
    from mmaffect.features.asr import SpeechRecognizer

    return SpeechRecognizer()


def test_speech_recognizer(recognizer, speech_audio):
    tr = recognizer(speech_audio, SR)
    got = [re.sub(r"[^a-z]", "", w.text.lower()) for w in tr.words]
    expected = re.sub(r"[^a-z ]", "", mf.SENTENCE.lower()).split()
    assert sum(w in got for w in expected) >= 0.7 * len(expected), tr.text
    starts = [w.start for w in tr.words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in tr.words)
    assert 0 <= starts[0] and tr.words[-1].end <= len(speech_audio) / SR + 0.1
    assert tr.language == "en" and "happy" in tr.text.lower()
    assert all(0 <= w.probability <= 1 for w in tr.words)


def _espeak(text: str, voice: str) -> np.ndarray:
    import io
    import shutil
    import subprocess

    import librosa
    import soundfile as sf

    out = subprocess.run([shutil.which("espeak-ng"), "-v", voice, "-s", "150", "--stdout", text], check=True,
                         capture_output=True).stdout
    y, sr = sf.read(io.BytesIO(out), dtype="float32")
    return np.pad(librosa.resample(y, orig_sr=sr, target_sr=SR), SR // 2)


def test_speech_recognizer_confidence_flags_another_language(recognizer, speech_audio):
    """tiny.en turns French into fluent English; its mean log-probability gives it away."""
    import ctranslate2

    from mmaffect.features.asr import LOW_CONFIDENCE_LOGPROB

    english = recognizer(speech_audio, SR)
    assert english.avg_logprob > LOW_CONFIDENCE_LOGPROB + 0.3 and not english.low_confidence
    assert english.no_speech_prob < 0.3 and english.compression_ratio < 2.4
    assert english.language_probability is None  # an English-only model cannot tell the language
    ctranslate2.set_random_seed(0)  # low confidence triggers Whisper's sampled temperature fallback
    french = recognizer(_espeak("Je suis très heureux de te voir aujourd'hui, il fait beau dehors.", "fr"), SR)
    assert french.text and french.low_confidence, (french.text, french.avg_logprob)


def test_speech_recognizer_on_silence(recognizer):
    tr = recognizer(mf.silence(2.0), SR)
    assert tr.words == [] and tr.text == "" and tr.avg_logprob is None and not tr.low_confidence


def test_speech_recognizer_resamples(recognizer, speech_audio):
    import librosa

    y8 = librosa.resample(speech_audio, orig_sr=SR, target_sr=8000)
    assert "happy" in recognizer(y8, 8000).text.lower()


def test_speech_segments(speech_audio):
    from mmaffect.features.asr import speech_segments

    segs = speech_segments(speech_audio, SR)
    dur = len(speech_audio) / SR
    assert all(0 <= s < e <= dur for s, e in segs)
    assert segs[0][0] >= 0.3 and segs[-1][1] <= dur - 0.2  # the 0.5 s padding is not speech
    # "Hello world." and the rest: two regions (the pause after the full stop is > 0.3 s) that cover
    # most of the spoken part (measured: 82 % of it)
    assert len(segs) == 2 and sum(e - s for s, e in segs) > 0.7 * (dur - 1.0)


def test_speech_segments_none_in_silence():
    from mmaffect.features.asr import speech_segments

    assert speech_segments(mf.silence(2.0), SR) == []
    assert speech_segments(mf.tone(2.0, amp=1e-3), SR) == []
    assert speech_segments(np.zeros(100, np.float32), SR) == []


# ----------------------------------------------------------------------------------------- text
def test_minilm_puts_paraphrases_closer_than_unrelated_sentences():
    """The packaged MiniLM encoder (features/text.py): unit-length sentence vectors whose cosine
    similarity ranks a paraphrase above an unrelated sentence, for each of three pairs."""
    import torch

    from mmaffect.features.text import TextEncoder

    torch.set_num_threads(1)
    pairs = [("The cat is sleeping on the sofa.", "A cat naps on the couch."),
             ("I am so angry that you lied to me.", "You lied to me and it makes me furious."),
             ("The stock market fell sharply today.", "Share prices dropped a lot this afternoon.")]
    out = TextEncoder().encode([s for pair in pairs for s in pair])
    vec = np.stack([v for v, _ in out])
    assert vec.shape == (6, 384) and np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    sim = vec @ vec.T
    for i in range(3):
        a, b = 2 * i, 2 * i + 1
        unrelated = [sim[a, 2 * j] for j in range(3) if j != i] + [sim[a, 2 * j + 1] for j in range(3) if j != i]
        assert sim[a, b] > max(unrelated) + 0.2, (pairs[i], sim[a, b], max(unrelated))
    tokens = out[0][1]  # token states: [CLS] + word pieces + [SEP], 384 wide
    assert tokens.dtype == np.float16 and tokens.shape[1] == 384 and 8 <= tokens.shape[0] <= 14
