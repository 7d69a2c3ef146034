"""`mmaffect analyze` end to end on real IEMOCAP clips: a late-fusion model trained on a few real
clips through the CLI, then a clip analysed into segments with labels, confidences, contributions,
JSON and a plot; plus segmentation on hand-made word timings and videos without speech."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import pandas as pd
import pytest

import media_factory
from mmaffect.analysis import Analyzer, format_table, speech_windows
from mmaffect.cli import main
from mmaffect.errors import DataError


@dataclass
class W:
    text: str
    start: float
    end: float


def test_speech_windows_merge_split_and_assign_words():
    words = [W("hello", 0.2, 0.5), W("there", 0.6, 0.9), W("again", 5.0, 5.4)]
    windows = speech_windows(None, 16000, words, duration=30.0)  # no audio: words alone define speech
    assert [(round(w.start, 1), round(w.end, 1), w.text) for w in windows] == [(0.2, 0.9, "hello there"),
                                                                               (5.0, 5.4, "again")]
    long = [W(f"w{i}", i * 0.5, i * 0.5 + 0.4) for i in range(60)]  # 30 s of continuous speech
    windows = speech_windows(None, 16000, long, duration=31.0)
    assert len(windows) == 3 and all(w.end - w.start <= 12.0 for w in windows)
    assert " ".join(w.text for w in windows).split() == [w.text for w in long]
    assert speech_windows(None, 16000, [], duration=4.0)[0].end == 4.0  # nothing heard: the whole file


CLIP_COLUMNS = "path=clip_file,text=transcript,id=utterance_id"
FPS = 1.0  # not the extraction default (2): the checkpoint's recipe must carry it to analyze


@pytest.fixture(scope="module")
def clips_root(data_dir, tmp_path_factory):
    """16 real clips (2 per class) and one file that is not a video, extracted at FPS into ROOT/cache."""
    root = tmp_path_factory.mktemp("analysis")
    manifest = pd.read_csv(data_dir / "iemocap_clips" / "manifest.csv")
    picked = manifest.groupby("label").head(2).copy()
    (root / "clips").mkdir()
    for name in picked.clip_file:  # media must sit inside the manifest's folder: copy, never into the repo
        shutil.copyfile(data_dir / "iemocap_clips" / name, root / "clips" / name)
    picked["clip_file"] = ["clips/" + f for f in picked.clip_file]
    picked.to_csv(root / "clips_ok.csv", index=False)
    broken = picked.iloc[:1].assign(clip_file="clips/broken.mp4", utterance_id="broken")
    media_factory.text_as_mp4(root / "clips" / "broken.mp4")
    pd.concat([picked, broken]).to_csv(root / "clips.csv", index=False)
    assert main(["extract", str(root / "clips.csv"), "--output", str(root / "cache"), "--quiet", "--fps", str(FPS),
                 "--columns", CLIP_COLUMNS]) == 0
    return root


@pytest.fixture(scope="module")
def model_dir(clips_root):
    """A late-fusion model trained through the CLI on the 16 clips, 2-fold by speaker (2 fold models)."""
    assert main(["train", "--dataset", f"cache:{clips_root / 'cache'}", "--model", "late-fusion", "--cv", "2",
                 "--group-by", "speaker", "--epochs", "3", "--output", str(clips_root / "model"), "--quiet"]) == 0
    return clips_root / "model"


def test_analyze_a_real_clip(model_dir, data_dir, tmp_path, capsys, monkeypatch):
    from mmaffect.extraction import pipeline

    seen = []
    real_extract = pipeline.extract

    def spy(items, output, config=None, **kwargs):
        seen.append((config, kwargs.get("threads")))
        return real_extract(items, output, config, **kwargs)

    monkeypatch.setattr(pipeline, "extract", spy)
    clip = data_dir / "iemocap_clips" / "Ses01M_impro07_M013.mp4"
    out, plot = tmp_path / "result.json", tmp_path / "timeline.png"
    import torch

    threads = torch.get_num_threads()
    try:
        assert main(["--threads", "2", "analyze", str(clip), "--checkpoint", str(model_dir), "--json", str(out),
                     "--plot", str(plot)]) == 0
    finally:
        torch.set_num_threads(threads)  # --threads is process-wide; later tests keep their own setting
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert [c.fps for c, _ in seen] == [FPS] and result["extraction"]["fps"] == FPS  # the training recipe's fps
    assert [threads for _, threads in seen] == [2]  # the one --threads setting reaches extraction
    assert result["n_models"] == 2 and result["contributions_from"] == "relevance"
    assert 11.0 < result["duration"] < 12.5 and result["segments"]
    for seg in result["segments"]:
        assert seg["label"] in result["classes"] and 0 < seg["confidence"] <= 1
        assert sum(seg["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert sum(seg["contributions"].values()) == pytest.approx(1, abs=1e-4)
        assert set(seg["contributions"]) == {"t", "a", "v"} and seg["face_rate"] > 0.5
        assert seg["label"] in printed and seg["warnings"] == []
    assert " ".join(s["text"] for s in result["segments"]).strip()  # Whisper heard words
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_model_trained_on_a_manifest_with_features_keeps_its_recipe(clips_root, tmp_path):
    import mmaffect

    out = tmp_path / "run"
    assert main(["train", "--dataset", f"manifest:{clips_root / 'clips_ok.csv'}", "--columns", CLIP_COLUMNS,
                 "--features", str(clips_root / "cache"), "--model", "late-fusion", "--cv", "2", "--group-by",
                 "speaker", "--epochs", "1", "--output", str(out), "--quiet"]) == 0
    predictor = mmaffect.load(out)
    assert len(predictor.models) == 2 and predictor.recipe.extraction["fps"] == FPS
    assert predictor.recipe.dataset_args["features"] == str(clips_root / "cache")
    assert predictor.recipe.extract_config(asr="never").fps == FPS  # what Analyzer extracts with


def test_predict_keeps_rows_whose_extraction_failed(model_dir, clips_root, tmp_path, capsys):
    """A run folder (its 2 fold models averaged) predicts a media manifest whose last row failed extraction:
    the 16 good rows are predicted, the failed one keeps its place with the reason, exit status 1."""
    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(model_dir), "--dataset", f"manifest:{clips_root / 'clips.csv'}",
                 "--columns", CLIP_COLUMNS, "--features", str(clips_root / "cache"), "--output", str(out)]) == 1
    captured = capsys.readouterr()
    assert "17 rows: 16 predicted, 1 not processed" in captured.out
    assert "clips.csv: row 18: feature extraction failed" in captured.err
    pred = pd.read_csv(out, keep_default_na=False)
    assert pred.id.tolist()[-1] == "broken" and pred.status.tolist() == ["ok"] * 16 + ["error"]
    assert pred.error.iloc[-1].startswith("feature extraction failed") and pred.pred_label.iloc[-1] == ""
    probs = pred.iloc[:16][[c for c in pred.columns if c.startswith("prob_")]].astype(float)
    assert ((probs.sum(axis=1) - 1).abs() < 1e-5).all()
    assert {"relevance_t", "relevance_a", "relevance_v"} <= set(pred.columns)


def test_predict_a_cache_matches_the_training_predictions(model_dir, clips_root, tmp_path, capsys):
    """A registered-prefix dataset (cache:DIR) through `predict` gives the training run's predictions.csv rows
    back: the same columns (relevance too) and values; the item whose extraction failed keeps a row."""
    fold = model_dir / "seed0_fold0"
    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(fold / "model.safetensors"), "--dataset",
                 f"cache:{clips_root / 'cache'}", "--output", str(out)]) == 1
    assert f"cache:{clips_root / 'cache'}: id broken: feature extraction failed" in capsys.readouterr().err
    predicted = pd.read_csv(out, keep_default_na=False).set_index("id")
    assert len(predicted) == 17 and predicted.loc["broken", "status"] == "error"
    predicted = predicted.drop(index="broken")
    training = pd.read_csv(fold / "predictions.csv", keep_default_na=False)
    # the cache has no split column (no `split`); training names each row's role in the run (valid/test)
    assert predicted.reset_index().columns.tolist() == [c for c in training.columns if c != "split"]
    assert "relevance_v" in training.columns
    same = predicted.loc[training.id].reset_index()
    for column in predicted.columns:
        if column.startswith(("prob_", "relevance_")):
            assert (same[column].astype(float) - training[column].astype(float)).abs().max() < 1e-5, column
        else:
            assert same[column].tolist() == training[column].tolist(), column


def test_predict_one_media_file(model_dir, data_dir):
    import mmaffect

    predictor = mmaffect.load(model_dir)
    result = predictor.predict(text="It was at the slot machines.",
                               media=data_dir / "iemocap_clips" / "Ses01F_impro03_F005.mp4")
    assert result["label"] in predictor.classes and sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert set(result["relevance"]) == {"t", "a", "v"}
    with pytest.raises(DataError, match="broken.mp4"):
        predictor.predict(media=model_dir.parent / "clips" / "broken.mp4", text="x")


def test_nonfinite_audio_is_a_warning(model_dir, tmp_path):
    import numpy as np
    import soundfile as sf

    audio = media_factory.tone(2.0).astype(np.float32)
    audio[1000:1100] = np.nan
    audio[5000] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, audio, media_factory.SR, subtype="FLOAT")
    result = Analyzer(model_dir)(path)
    assert result["segments"]
    for seg in result["segments"]:
        assert seg["audio_nonfinite"] > 0 and any("NaN" in w for w in seg["warnings"])
    assert "warning: audio has NaN/Inf samples" in format_table(result)


def test_analyze_checks_its_outputs_before_the_work(model_dir, data_dir, tmp_path, capsys, monkeypatch):
    import mmaffect.analysis as analysis

    monkeypatch.setattr(analysis.Analyzer, "__init__", lambda *a, **k: pytest.fail("analysis started"))
    clip = str(data_dir / "iemocap_clips" / "Ses01M_impro07_M013.mp4")
    assert main(["analyze", clip, "--checkpoint", str(model_dir), "--json", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["analyze", clip, "--checkpoint", str(model_dir), "--plot", str(tmp_path / "file" / "t.png")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_analyze_videos_without_speech(model_dir, tmp_path):
    analyzer = Analyzer(model_dir)
    silent = media_factory.face_video(tmp_path / "silent.mp4", seconds=2.0)
    result = analyzer(silent)
    assert len(result["segments"]) == 1 and result["segments"][0]["text"] == ""
    face_only = media_factory.write_mp4(tmp_path / "face_only.mp4", media_factory.face_image(), None, seconds=2.0)
    result = analyzer(face_only)  # no audio track: the face alone is analysed
    assert len(result["segments"]) == 1 and result["segments"][0]["face_rate"] > 0.5
    nothing = media_factory.video_only_mp4(tmp_path / "no_face_no_audio.mp4")
    with pytest.raises(DataError, match="no_face_no_audio.mp4: no segment could be analysed .*nothing usable"):
        analyzer(nothing)


def test_missing_default_model_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMAFFECT_CACHE", str(tmp_path))
    assert main(["analyze", str(tmp_path / "x.mp4")]) == 2
    assert "x.mp4: no such file" in capsys.readouterr().err
    import mmaffect.pretrained

    def nothing_shipped(name):
        raise DataError(name, "not built or shipped")

    monkeypatch.setattr(mmaffect.pretrained, "location", nothing_shipped)  # else the package's copy is used
    video = media_factory.face_video(tmp_path / "x.mp4", seconds=1.0)
    assert main(["analyze", str(video)]) == 2
    assert "no analysis model here; train it with `mmaffect train-analysis-model`" in capsys.readouterr().err


def test_the_default_model_is_the_variant_validation_chose(tmp_path, monkeypatch):
    """`train-analysis-model` names the default in summary.json (the current fusion model unless a
    voice-transfer variant had the better validation accuracy); analyze follows it, never outside."""
    import json as _json

    from mmaffect.commands.analyze import default_model

    monkeypatch.setenv("MMAFFECT_CACHE", str(tmp_path))
    root = tmp_path / "models" / "analysis"
    for name in ("fusion", "fusion-voice-frozen"):
        (root / name).mkdir(parents=True)
    assert default_model() == root / "fusion"  # no summary yet
    for chosen, expected in (("fusion-voice-frozen", "fusion-voice-frozen"), ("../../elsewhere", "fusion"),
                             (["fusion"], "fusion")):
        (root / "summary.json").write_text(_json.dumps({"default": chosen}))
        assert default_model() == root / expected


def test_pad_windows_adds_context_within_the_file_and_the_gaps():
    from mmaffect.analysis import Window, pad_windows

    windows = [Window(0.2, 1.0, "a"), Window(1.6, 3.0, "b"), Window(5.0, 5.8, "c")]
    padded = pad_windows(windows, 0.5, duration=6.0)
    assert [(w.start, w.end, w.text) for w in padded] == [(0.0, 1.3, "a"), (1.3, 3.5, "b"), (4.5, 6.0, "c")]
    assert pad_windows(windows, 0.0, duration=6.0) == windows


def test_a_transcript_started_before_the_model_loads_gives_the_same_analysis(model_dir, data_dir, clips_root,
                                                                             monkeypatch):
    """`mmaffect analyze` starts Whisper before the model loads (BackgroundTranscript): the analysis that
    uses it equals the one that transcribes itself; one made with another recogniser is not used; a
    file it could not read leaves the analyzer to report the problem."""
    from mmaffect.features.asr import BackgroundTranscript

    clip = data_dir / "iemocap_clips" / "Ses01M_impro07_M013.mp4"
    heard = BackgroundTranscript(clip, threads=1)
    analyzer = Analyzer(model_dir, threads=1, asr="always")
    early = analyzer(clip, heard=heard)
    itself = analyzer(clip)
    assert heard.wait()[1] and early["segments"] == itself["segments"]

    other = BackgroundTranscript(clip, model=str(clips_root / "no-such-whisper"), threads=1)
    assert other.wait() is None  # that model cannot load

    def listens(video):
        raise AssertionError("listened itself")

    monkeypatch.setattr(analyzer, "_listen", listens)
    with pytest.raises(AssertionError, match="listened itself"):  # not the recogniser it wants
        analyzer(clip, heard=other)
    monkeypatch.undo()

    broken = clips_root / "clips" / "broken.mp4"  # text renamed .mp4: no audio stream, then undecodable
    with pytest.raises(DataError, match="broken.mp4"):
        analyzer(broken, heard=BackgroundTranscript(broken, threads=1))
