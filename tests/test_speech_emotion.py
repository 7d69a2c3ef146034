"""Voice-only emotion: audio-only extraction (wav/flac/mp3/m4a), the log-mel and Whisper-encoder
extractors, the ``cache:`` audio representation options and the audio models (audio-cnn, audio-asp)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import media_factory as mf
from mmaffect.errors import ConfigError


def _voice(seconds: float = 1.5) -> np.ndarray:
    """espeak-ng speech when installed, else an amplitude-modulated tone (a voice-like envelope)."""
    y = mf.speech("I am very happy today.", pad=0.1)
    if y is not None:
        return y
    t = np.arange(int(seconds * mf.SR)) / mf.SR
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("voice")
    y = _voice()
    files = {
        "wav": mf.write_wav(d / "a.wav", y),
        "flac": d / "b.flac",
        "mp3": d / "c.mp3",
        "m4a": mf.write_mp4(d / "d.m4a", audio=y),
    }
    sf.write(files["flac"], y, mf.SR, subtype="PCM_16")
    sf.write(files["mp3"], y, mf.SR, format="MP3")
    with open(d / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "utterance_id", "emotion", "actor"])
        for i, (kind, path) in enumerate(files.items()):
            w.writerow([path.name, kind, ["happy", "sad"][i % 2], f"A{i % 2}"])
    return files


@pytest.fixture(scope="module")
def voice_cache(audio_files, tmp_path_factory) -> Path:
    """All four formats through ``mmaffect extract`` (CLI), ASR off, both audio encoders."""
    out = tmp_path_factory.mktemp("cache") / "voice"
    manifest = audio_files["wav"].parent / "manifest.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "mmaffect.cli", "--threads", "1", "extract", str(manifest), "--output", str(out),
         "--columns", "id=utterance_id,label=emotion,speaker=actor", "--asr", "never",
         "--audio-encoders", "logmel,whisper", "--whisper-window", "trim", "--quiet", "--strict"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "4 ok" in proc.stdout
    return out


def test_audio_only_formats_extract_without_error(voice_cache, audio_files):
    from mmaffect.extraction.cache import FeatureCache

    with FeatureCache(voice_cache) as cache:
        assert cache.meta["config"]["audio_encoders"] == ["logmel", "whisper"]
        assert "whisper" in cache.meta["extractors"] and "logmel" in cache.meta["extractors"]
        for kind in audio_files:
            record, arrays = cache.record(kind), cache.arrays(kind)
            assert record["status"] == "ok", (kind, record["reason"])
            assert record["streams"] == {"audio": True, "video": False}
            assert any("no video track" in w for w in record["warnings"])
            assert not any(k.startswith("face") for k in arrays)
            duration = float(arrays["duration"][0])
            assert 1.0 < duration < 4.0
            # 10 ms log-mel frames and 20 ms encoder frames covering the clip
            assert arrays["audio_logmel"].shape[1] == 64 and arrays["audio_logmel"].dtype == np.float16
            assert abs(len(arrays["audio_logmel"]) - duration / 0.01) <= 3
            assert arrays["whisper_frames"].shape[1] == 384
            assert abs(len(arrays["whisper_frames"]) - duration / 0.02) <= 2
            assert np.isfinite(arrays["whisper_frames"].astype(np.float32)).all()


def test_cache_reader_audio_representations(voice_cache):
    from mmaffect.data import load_dataset

    data = load_dataset(f"cache:{voice_cache}", sequences=True, audio_vector="functionals,whisper",
                        audio_sequence="whisper")
    a = data.modalities["a"]
    assert a.vector.shape == (4, 228 + 768 + 2)
    assert a.sequence.shape[2] == 384 and (a.lengths > 50).all()
    recipe = data.meta["features"]
    assert recipe["audio_vector"]["parts"] == ["functionals", "whisper"]
    assert recipe["audio_sequence"]["source"] == "whisper"
    assert data.class_names == ["happy", "sad"] and set(data.speaker) == {"A0", "A1"}
    # the pooled vector is the mean and std of the sequence's frames
    frames = a.sequence[0, :a.lengths[0]]
    assert torch.allclose(a.vector[0, 228:228 + 384], frames.mean(0), atol=1e-3)
    logmel = load_dataset(f"cache:{voice_cache}", sequences=True, audio_sequence="logmel")
    assert logmel.modalities["a"].sequence.shape[2] == 64
    with pytest.raises(ConfigError, match="eGeMAPS"):
        load_dataset(f"cache:{voice_cache}", audio_vector="egemaps")
    with pytest.raises(ConfigError, match="audio_sequence"):
        load_dataset(f"cache:{voice_cache}", sequences=True, audio_sequence="mfcc")


def test_missing_encoder_is_named(tmp_path):
    from mmaffect.extraction.cache import FeatureCache, cache_modalities

    meta = {"format": "mmaffect-feature-cache", "config": {"fps": 2.0, "egemaps": False}, "store": "store"}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with FeatureCache(tmp_path) as cache, pytest.raises(ConfigError, match="--audio-encoders whisper"):
        cache_modalities(cache, [], True, audio_sequence="whisper")


def test_config_keeps_old_caches_resumable():
    from mmaffect.extraction.config import ExtractConfig, config_hash

    plain = ExtractConfig()
    assert "audio_encoders" not in plain.to_dict() and "whisper_window" not in plain.to_dict()
    assert config_hash(ExtractConfig(audio_encoders=())) == config_hash(plain)
    both = ExtractConfig(audio_encoders=["whisper", "logmel", "whisper"])
    assert both.audio_encoders == ("whisper", "logmel")
    assert both.to_dict()["whisper_window"] == "full"
    assert "whisper_window" not in ExtractConfig(audio_encoders=("logmel",)).to_dict()
    with pytest.raises(ConfigError, match="unknown audio encoder"):
        ExtractConfig(audio_encoders=("wav2vec",))
    with pytest.raises(ConfigError, match="whisper_window"):
        ExtractConfig(audio_encoders=("whisper",), whisper_window="half")


def test_log_mel_frames_and_silence():
    from mmaffect.features.audio import log_mel

    y = _voice()
    m = log_mel(y)
    assert m.shape == (1 + len(y) // 160, 64) and np.isfinite(m).all()
    assert m.max() > -40  # speech energy, well above the -100 dB floor
    for clip in (np.zeros(0, np.float32), np.zeros(16000, np.float32), np.zeros(50, np.float32)):
        s = log_mel(clip)
        assert np.isfinite(s).all() and s.shape[1] == 64 and np.allclose(s, -100.0)


def test_whisper_encoder_full_vs_trim_and_long_audio():
    from mmaffect.features.speech_encoder import WhisperEncoder

    y = _voice()
    full, trim = WhisperEncoder(window="full"), WhisperEncoder(window="trim")
    a, b = full(y), trim(y)
    n = int(np.ceil(len(y) / 16000 / 0.02))
    assert a.shape == b.shape == (n, 384)
    # same encoder, different padding: the utterance means agree closely
    assert np.corrcoef(a.mean(0), b.mean(0))[0, 1] > 0.9
    long = np.concatenate([y] * int(np.ceil(31 * 16000 / len(y))))[:31 * 16000]  # two windows
    assert trim(long).shape == (31 * 50, 384)
    assert trim(np.zeros(10, np.float32)).shape == (1, 384)
    with pytest.raises(ValueError, match="16 kHz"):
        trim(y, 8000)


@pytest.mark.parametrize("name", ["audio-cnn", "audio-asp"])
def test_audio_models_ignore_padding_and_learn(name):
    import mmaffect.models.audio  # noqa: F401  (registers the models)
    from mmaffect.models.base import ModelSpec
    from mmaffect.models.registry import create_model

    torch.manual_seed(0)
    spec = ModelSpec(dims={"a": 10}, seq_dims={"a": 16}, heads={"logits": 2})
    model = create_model(name, spec).eval()
    x = torch.randn(2, 40, 16)
    mask = torch.arange(40)[None] < torch.tensor([40, 25])[:, None]
    x = x * mask[..., None]
    out = model({"a": torch.zeros(2, 10), "a_seq": x, "a_mask": mask})["logits"]
    padded = torch.cat([x, torch.randn(2, 24, 16)], dim=1)  # garbage in the padding must not matter
    pmask = torch.cat([mask, torch.zeros(2, 24, dtype=torch.bool)], dim=1)
    out2 = model({"a": torch.zeros(2, 10), "a_seq": padded, "a_mask": pmask})["logits"]
    assert torch.allclose(out[1], out2[1], atol=1e-5)
    # a class signalled by a few loud frames is learnt
    model.train()
    n = 64
    y = torch.arange(n) % 2
    seq = torch.randn(n, 30, 16) * 0.5
    seq[y == 1, 10:14, :4] += 3.0
    m = torch.ones(n, 30, dtype=torch.bool)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = {"a": torch.zeros(n, 10), "a_seq": seq, "a_mask": m}
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(batch)["logits"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    acc = (model(batch)["logits"].argmax(1) == y).float().mean()
    assert acc > 0.9


def test_speaker_normalize_removes_each_speakers_offset():
    from mmaffect.data.dataset import Modality
    from mmaffect.extraction.cache import speaker_normalize

    torch.manual_seed(0)
    speakers = ["a"] * 5 + ["b"] * 5 + ["c"]
    vec = torch.randn(11, 3) + torch.tensor([[10.0]] * 5 + [[-4.0]] * 5 + [[7.0]])  # a voice offset per speaker
    seq = torch.randn(11, 6, 3) + vec[:, None, :]
    lengths = torch.tensor([6, 4] * 5 + [3])
    seq[torch.arange(6)[None, :] >= lengths[:, None]] = 0.0
    out = speaker_normalize(Modality(vec, seq, lengths), speakers)
    for rows in (slice(0, 5), slice(5, 10)):
        assert torch.allclose(out.vector[rows].mean(0), torch.zeros(3), atol=1e-5)
        assert torch.allclose(out.vector[rows].std(0, unbiased=False), torch.ones(3), atol=1e-4)
        real = torch.arange(6)[None, :] < lengths[rows][:, None]
        assert torch.allclose(out.sequence[rows][real].mean(0), torch.zeros(3), atol=1e-5)
        assert (out.sequence[rows][~real] == 0).all()  # padding stays zero
    assert torch.equal(out.vector[10], vec[10])  # a speaker with one item is left as is


@pytest.fixture(scope="module")
def voice_model(voice_cache, tmp_path_factory) -> Path:
    """An audio-mlp trained (2 epochs) on the pooled Whisper frames of the 4 files: a voice-only model
    whose recipe records the reader option ``audio_vector: whisper``."""
    from mmaffect.training.config import ExperimentConfig, TrainConfig
    from mmaffect.training.runs import RunPlan, load_experiment_data, run_one

    config = ExperimentConfig(dataset=f"cache:{voice_cache}", dataset_args={"audio_vector": "whisper"},
                              model="audio-mlp", modalities=["a"], search={}, train=TrainConfig(epochs=2))
    data = load_experiment_data(config)
    rows = np.arange(len(data))
    folder = tmp_path_factory.mktemp("voice_model")
    run_one(config, data, RunPlan(0, None, rows[:2], rows[2:3], rows[3:]), folder, progress=False)
    return folder


def test_predict_reads_a_cache_with_the_recipes_reader_options(voice_model, voice_cache, tmp_path):
    """The model saw 770-wide whisper vectors; the cache's default audio vector is 230 wide. predict must
    read the cache as the recipe says and give the training run's probabilities back."""
    import pandas as pd

    from mmaffect.cli import main

    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(voice_model / "model.safetensors"), "--dataset",
                 f"cache:{voice_cache}", "--output", str(out)]) == 0
    predicted = pd.read_csv(out).set_index("id")
    training = pd.read_csv(voice_model / "predictions.csv").set_index("id")
    probs = [c for c in training.columns if c.startswith("prob_")]
    assert probs and (predicted.loc[training.index, probs] - training[probs]).abs().max().max() < 1e-5


def test_predict_media_extracts_the_audio_vector_the_model_was_trained_on(voice_model, audio_files):
    """``predict(media=...)`` on a model trained with ``audio_vector: whisper`` re-extracts the file and
    reads the Whisper vector (not the cache's default, 230 wide): the training run's probabilities back."""
    import pandas as pd

    import mmaffect

    predictor = mmaffect.load(voice_model / "model.safetensors")
    result = predictor.predict(media=audio_files["wav"])
    training = pd.read_csv(voice_model / "predictions.csv").set_index("id")
    for name, prob in result["probabilities"].items():
        assert abs(prob - training.loc["wav", f"prob_{name}"]) < 1e-4


def test_analyze_a_voice_recording_without_video_or_asr(voice_model, audio_files, tmp_path, capsys, monkeypatch):
    """`analyze VOICE.wav --asr never` with a voice-only model: segments from voice activity, every
    contribution the voice's, JSON and timeline; no recogniser is loaded; the default for a file without
    a video stream is the voice model."""
    from mmaffect.cli import main
    from mmaffect.features import asr

    monkeypatch.setattr(asr.SpeechRecognizer, "__init__", lambda *a, **k: pytest.fail("ASR loaded"))
    out, plot = tmp_path / "voice.json", tmp_path / "voice.png"
    wav = audio_files["wav"]
    assert main(["analyze", str(wav), "--checkpoint", str(voice_model), "--asr", "never", "--json", str(out),
                 "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert "audio only (no video stream)" in printed and "ASR off" in printed
    assert result["video_stream"] is False and result["asr"] == "never" and result["modalities"] == ["a"]
    assert result["extraction"]["reader"] == {"audio_vector": "whisper"}
    assert result["segments"] and not result["failed"]
    for seg in result["segments"]:
        assert seg["label"] in {"happy", "sad"} and seg["text"] == "" and seg["face_rate"] is None
        assert seg["warnings"] == []  # no transcript, no video: expected for a voice model, not warned about
        assert seg["contributions"] == {"a": pytest.approx(1.0)}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # without --checkpoint an audio-only file goes to the voice model (and says how to train it)
    import mmaffect.pretrained
    from mmaffect.errors import DataError

    def nothing_shipped(name):
        raise DataError(name, "not built or shipped")

    monkeypatch.setattr(mmaffect.pretrained, "location", nothing_shipped)  # else the package's copy is used
    monkeypatch.setenv("MMAFFECT_CACHE", str(tmp_path / "cache"))
    assert main(["analyze", str(wav), "--asr", "never"]) == 2
    assert "no voice analysis model here; train it with `mmaffect train-analysis-model --voice`" \
        in capsys.readouterr().err
    shutil.copytree(voice_model, tmp_path / "cache" / "models" / "analysis" / "voice")
    assert main(["analyze", str(audio_files["flac"]), "--asr", "never"]) == 0
    assert "models/analysis/voice" in capsys.readouterr().out


def test_analyze_refuses_speaker_normalised_models():
    from mmaffect.errors import DataError
    from mmaffect.predictor import audio_reader_options

    assert audio_reader_options({"audio_vector": "whisper", "speaker_norm": False, "fps": 2}, "m") == \
        {"audio_vector": "whisper"}
    with pytest.raises(DataError, match="m: trained with speaker_norm"):
        audio_reader_options({"audio_vector": "whisper", "speaker_norm": True}, "m")


def test_silence_db_decides_which_quiet_files_are_silent(tmp_path):
    """A recording whose loudest 25 ms frame is at -55 dBFS RMS: silent under the default --silence-db -50
    (an audio-only file with nothing usable fails, with its reason in report.csv), kept with -60."""
    import pandas as pd

    from mmaffect.cli import main
    from mmaffect.features.audio import is_silent

    y = _voice()
    win = 400  # 25 ms at 16 kHz, as is_silent measures
    loudest = max(np.sqrt(np.mean(y[i:i + win].astype(np.float64) ** 2)) for i in range(0, len(y) - win, 200))
    quiet = (y / loudest * 10 ** (-55 / 20)).astype(np.float32)
    assert is_silent(quiet, -50.0) and not is_silent(quiet, -60.0)
    sf.write(tmp_path / "quiet.wav", quiet, mf.SR, subtype="FLOAT")
    sf.write(tmp_path / "loud.wav", y, mf.SR, subtype="FLOAT")
    pd.DataFrame({"path": ["quiet.wav", "loud.wav"], "id": ["quiet", "loud"]}).to_csv(tmp_path / "m.csv", index=False)
    for db, quiet_status in (("-50", "failed"), ("-60", "ok")):
        out = tmp_path / f"cache{db}"
        main(["extract", str(tmp_path / "m.csv"), "--output", str(out), "--asr", "never", "--silence-db", db,
              "--quiet"])
        report = pd.read_csv(out / "report.csv", keep_default_na=False).set_index("id")
        assert report.loc["loud", "status"] == "ok"
        assert report.loc["quiet", "status"] == quiet_status, (db, report.loc["quiet"].to_dict())
        if quiet_status == "failed":
            assert "silent" in report.loc["quiet", "reason"]


def test_a_voice_model_becomes_the_audio_branch_of_late_fusion(voice_model):
    """late-fusion-voice copies the audio-mlp's hidden layer and input standardisation into its audio
    branch (frozen: not trained, dropout off in training mode; or fine-tuned), with a new class layer."""
    from mmaffect.models.base import ModelSpec
    from mmaffect.models.registry import create_model
    from mmaffect.training.checkpoint import load_tensors, unprefixed

    tensors, _ = load_tensors(voice_model / "model.safetensors")
    voice, norm = unprefixed(tensors, "model/"), unprefixed(tensors, "norm/a/vector/")
    spec = ModelSpec(dims={"t": 4, "a": 770}, seq_dims={}, heads={"logits": 5})
    checkpoint = str(voice_model / "model.safetensors")
    frozen = create_model("late-fusion-voice", spec, audio_init=checkpoint)
    branch = frozen.branches["a"]
    assert torch.equal(branch.body[1][0].weight, voice["body.1.0.weight"]) and torch.equal(branch.std, norm["std"])
    assert not any(p.requires_grad for p in branch.body.parameters()) and branch.out.weight.requires_grad
    assert branch.out.weight.shape == (5, 256)  # the fusion model's classes, not the voice model's
    frozen.train()
    assert frozen.training and not branch.body.training and frozen.branches["t"].training
    batch = {"t": torch.randn(3, 4), "a": torch.randn(3, 770)}
    assert frozen(batch)["logits"].shape == (3, 5)
    tuned = create_model("late-fusion-voice", spec, audio_init=checkpoint, audio_frozen=False)
    assert all(p.requires_grad for p in tuned.branches["a"].parameters())
    with pytest.raises(ConfigError, match="does not match the audio branch"):
        create_model("late-fusion-voice", ModelSpec(dims={"a": 230}, seq_dims={}, heads={"logits": 5}),
                     audio_init=checkpoint)
