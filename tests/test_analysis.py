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
from mmaffect.analysis import Analyzer, speech_windows
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


@pytest.fixture(scope="module")
def model_dir(data_dir, tmp_path_factory):
    """A late-fusion model trained through the CLI on 16 real clips (2 per class), 2-fold by speaker."""
    root = tmp_path_factory.mktemp("analysis")
    manifest = pd.read_csv(data_dir / "iemocap_clips" / "manifest.csv")
    picked = manifest.groupby("label").head(2).copy()
    (root / "clips").mkdir()
    for name in picked.clip_file:  # media must sit inside the manifest's folder: copy, never into the repo
        shutil.copyfile(data_dir / "iemocap_clips" / name, root / "clips" / name)
    picked["clip_file"] = ["clips/" + f for f in picked.clip_file]
    picked.to_csv(root / "clips.csv", index=False)
    assert main(["extract", str(root / "clips.csv"), "--output", str(root / "cache"), "--quiet",
                 "--columns", "path=clip_file,text=transcript,id=utterance_id"]) == 0
    assert main(["train", "--dataset", f"cache:{root / 'cache'}", "--model", "late-fusion", "--cv", "2",
                 "--group-by", "speaker", "--epochs", "3", "--output", str(root / "model"), "--quiet"]) == 0
    return root / "model"


def test_analyze_a_real_clip(model_dir, data_dir, tmp_path, capsys):
    clip = data_dir / "iemocap_clips" / "Ses01M_impro07_M013.mp4"
    out, plot = tmp_path / "result.json", tmp_path / "timeline.png"
    assert main(["analyze", str(clip), "--checkpoint", str(model_dir), "--json", str(out), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["n_models"] == 2 and result["contributions_from"] == "relevance"
    assert 11.0 < result["duration"] < 12.5 and result["segments"]
    for seg in result["segments"]:
        assert seg["label"] in result["classes"] and 0 < seg["confidence"] <= 1
        assert sum(seg["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert sum(seg["contributions"].values()) == pytest.approx(1, abs=1e-4)
        assert set(seg["contributions"]) == {"t", "a", "v"} and seg["face_rate"] > 0.5
        assert seg["label"] in printed
    assert " ".join(s["text"] for s in result["segments"]).strip()  # Whisper heard words
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    assert "train it with `mmaffect train-analysis-model`" in capsys.readouterr().err
