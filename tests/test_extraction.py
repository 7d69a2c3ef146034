"""The resumable extraction pipeline (mmaffect.extraction) on media generated in a temp dir, plus a
few real IEMOCAP clips read from the data root."""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

try:
    import media_factory as mf
except ModuleNotFoundError:  # tests/ imported as a package
    from tests import media_factory as mf

import torch  # noqa: E402

from mmaffect.commands.extract import add_parser, items_from_manifest, run  # noqa: E402
from mmaffect.data.cache import load_cache  # noqa: E402
from mmaffect.data.manifest import read_manifest  # noqa: E402
from mmaffect.errors import ConfigError, DataError, OutputError  # noqa: E402
from mmaffect.extraction.cache import FeatureCache, cache_modalities  # noqa: E402
from mmaffect.extraction.pipeline import ExtractConfig, ExtractItem, _JobLock, extract  # noqa: E402
from mmaffect.extraction.summaries import GEOMETRY_NAMES, VISUAL_STEP_NAMES, face_geometry  # noqa: E402

# id -> (expected status, substring of the reason, or of the warnings for ok items)
EXPECTED = {
    "good": ("ok", None),
    "speech": ("ok", None),
    "partial": ("ok", "partly decoded"),
    "truncated": ("failed", "corrupt or truncated media file"),
    "zero": ("failed", "empty file (0 bytes)"),
    "audio_only": ("ok", "no video track"),
    "video_only": ("ok", "no audio track"),
    "noface": ("ok", "no face detected in any of the"),
    "silent": ("ok", "silent audio track"),
    "text_as_mp4": ("failed", "not a media file"),
    "missing": ("failed", "file not found"),
    "useless": ("failed", "nothing usable: no audio track, no face detected, no transcript"),
    "french": ("ok", "no video track"),  # + a low-confidence ASR warning when espeak-ng can speak French
    "nan_audio": ("ok", "audio has NaN/Inf samples (25 % of them, set to 0)"),
}
FRENCH = "Je suis très heureux de te voir aujourd'hui, il fait beau dehors."


def espeak(text: str, voice: str) -> np.ndarray | None:
    """espeak-ng speech in any of its voices (media_factory.speech speaks English only), or None."""
    import io
    import shutil

    import librosa
    import soundfile as sf

    if shutil.which("espeak-ng") is None:
        return None
    out = subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "--stdout", text], check=True,
                         capture_output=True).stdout
    y, sr = sf.read(io.BytesIO(out), dtype="float32")
    return np.pad(librosa.resample(y, orig_sr=sr, target_sr=mf.SR), mf.SR // 2)


def nan_wav(path: Path, fraction: float = 0.25) -> Path:
    """A float WAV (a tone) whose first ``fraction`` of samples are NaN and Inf."""
    import soundfile as sf

    y = mf.tone(2.0)
    n = round(fraction * y.size)
    y[: n // 2], y[n // 2: n] = np.nan, np.inf
    sf.write(path, y, mf.SR, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("extract-media")
    speech = mf.speech()  # None without espeak-ng: then the "speech" item gets a tone and a given text
    files = {
        "good": mf.face_video(d / "good.mp4", seconds=2.0),
        "speech": mf.face_video(d / "speech.mp4", seconds=3.0 if speech is None else len(speech) / mf.SR,
                                audio=speech),
        "audio_only": mf.audio_only_mp4(d / "audio_only.mp4"),
        "video_only": mf.write_mp4(d / "video_only.mp4", mf.face_image(), None, seconds=2.0),
        "noface": mf.noface_video(d / "noface.mp4"),
        "silent": mf.write_mp4(d / "silent.mp4", mf.face_image(), mf.silence(2.0), seconds=2.0),
        "zero": mf.zero_byte(d / "zero.mp4"),
        "text_as_mp4": mf.text_as_mp4(d / "text_as_mp4.mp4"),
        "missing": d / "missing.mp4",
        "useless": mf.video_only_mp4(d / "useless.mp4"),  # no audio, no face and no text
        "nan_audio": nan_wav(d / "nan_audio.wav"),
    }
    french = espeak(FRENCH, "fr")
    files["french"] = mf.write_wav(d / "french.wav", mf.tone(2.0) if french is None else french)
    files["truncated"] = mf.truncated_copy(files["good"], d / "truncated.mp4", 0.4)  # index at the end: lost
    fast = mf.face_video(d / "fast.mp4", seconds=3.0, faststart=True)
    files["partial"] = mf.truncated_copy(fast, d / "partial.mp4", 0.85)  # index first: the head decodes
    files["_has_speech"] = speech is not None
    return files


def make_items(media: dict) -> list[ExtractItem]:
    items = []
    for i, name in enumerate(EXPECTED):
        asr = name == "useless" or (name in ("speech", "french") and media["_has_speech"])
        text = None if asr else f"words of {name}"
        items.append(ExtractItem(name, media[name], text=text,
                                 meta={"label": ["hap", "sad", "ang"][i % 3], "speaker": f"spk{i % 2}",
                                       "split": "train" if i % 4 else "test", "score": i / 10}))
    return items


@pytest.fixture(scope="module")
def job(media, tmp_path_factory):
    out = tmp_path_factory.mktemp("extract-cache") / "cache"
    items = make_items(media)
    report = extract(items, out, workers=1, progress=False)
    return out, items, report


def read_report(folder: Path) -> dict[str, dict]:
    with open(folder / "report.csv", newline="") as fh:
        return {row["id"]: row for row in csv.DictReader(fh)}


def all_entries(folder: Path) -> dict[str, tuple[dict, dict]]:
    with FeatureCache(folder) as cache:
        return {i: (cache.record(i), cache.arrays(i)) for i in cache.ids()}


def assert_same_cache(a: Path, b: Path) -> None:
    """Same ids, records, array names, dtypes and shapes; integer arrays (face crops, flags) bit-equal,
    float arrays equal to float32 rounding at the array's scale. Float features can differ in their
    last bits between two processes: the audio descriptors go through BLAS matrix products (mel and
    chroma filter banks, the DCT), whose summation order may change with the threads available. Seen
    in CI runs on a loaded machine: 1-ulp differences in ``audio_functionals``, and in ``audio_lld``
    differences up to 7e-6 on MFCC rows whose largest value is ~350 (the DCT mixes that scale into
    every coefficient), hence a tolerance relative to the array's largest magnitude."""
    ea, eb = all_entries(a), all_entries(b)
    assert sorted(ea) == sorted(eb)
    for key in ea:
        (ra, xa), (rb, xb) = ea[key], eb[key]
        assert ra == rb, key
        assert sorted(xa) == sorted(xb), key
        for name in xa:
            assert xa[name].dtype == xb[name].dtype and xa[name].shape == xb[name].shape, (key, name)
            if np.issubdtype(xa[name].dtype, np.floating):
                scale = max(float(np.abs(xb[name]).max(initial=0.0)), 1.0)
                np.testing.assert_allclose(xa[name], xb[name], rtol=1e-5, atol=1e-6 * scale,
                                           err_msg=f"{key}/{name} differs")
            else:
                assert xa[name].tobytes() == xb[name].tobytes(), f"{key}/{name} differs"


# --------------------------------------------------------------------------- failures and warnings
def test_broken_items_are_reported_and_the_job_continues(job):
    out, items, report = job
    rows = read_report(out)
    assert set(rows) == set(EXPECTED)
    for name, (status, text) in EXPECTED.items():
        row = rows[name]
        assert row["status"] == status, (name, row)
        if status == "failed":
            assert text in row["reason"], (name, row["reason"])
        elif text is not None:
            assert text in row["warnings"], (name, row["warnings"])
        else:
            assert row["warnings"] == "" and row["reason"] == "", (name, row)
    assert report.n_failed == sum(s == "failed" for s, _ in EXPECTED.values())
    assert report.n_extracted == len(EXPECTED)

    with FeatureCache(out) as cache:
        assert cache.meta["config"] == ExtractConfig().to_dict()
        assert cache.meta["versions"]["ai-edge-litert"] and "backend tflite" in cache.meta["extractors"]["face"]
        for name, (status, _) in EXPECTED.items():
            record, arrays = cache.record(name), cache.arrays(name)
            assert record["status"] == status and record["meta"]["speaker"]
            if status == "failed":
                assert arrays == {}
                continue
            for key, arr in arrays.items():  # NaN-free (or flagged)
                if arr.dtype.kind == "f":
                    assert np.isfinite(arr).all(), (name, key)
            assert record["flags"]["nonfinite"] == {}
            assert record["source"]["sha256"] and len(record["source"]["sha256"]) == 64
            n = len(arrays["frame_times"])
            assert record["streams"]["video"] == (n > 0)
            if record["streams"]["video"]:
                assert arrays["face_landmarks"].shape == (n, 478, 3) and arrays["face_landmarks"].dtype == np.float16
                assert arrays["face_crops"].shape == (n, 48, 48) and arrays["face_crops"].dtype == np.uint8
                assert arrays["face_expression"].shape == (n, 7)
                assert arrays["face_geometry"].shape == (n, len(GEOMETRY_NAMES))
            else:
                assert "face_detected" not in arrays
            assert ("audio_lld" in arrays) == record["streams"]["audio"]

        good = cache.record("good")
        assert good["flags"]["face_rate"] == 1.0 and good["transcript"] == "words of good"
        assert cache.arrays("good")["face_detected"].all()
        assert cache.record("noface")["flags"]["face_rate"] == 0.0
        assert cache.record("silent")["flags"]["silent"] is True
        assert cache.record("audio_only")["streams"] == {"audio": True, "video": False}
        assert cache.record("partial")["flags"]["partly_decoded"] is True
        nan = cache.record("nan_audio")
        assert nan["flags"]["audio_nonfinite"] == pytest.approx(0.25, abs=1e-3)
        assert good["flags"]["audio_nonfinite"] == 0 and good.get("asr") is None  # text given: no ASR
        if cache.record("speech")["transcript_source"] != "asr":
            pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): ASR checks not run")
        speech, french = cache.record("speech"), cache.record("french")
        assert speech["transcript_source"] == "asr" and "happy" in speech["transcript"].lower()
        assert speech["words"] and all(0 <= w["start"] <= w["end"] <= speech["duration"] + 0.5
                                       for w in speech["words"])
        assert speech["asr"]["avg_logprob"] > -1.0 and not speech["asr"]["low_confidence"]
        assert not any("ASR" in w for w in speech["warnings"])
        # tiny.en on French: fluent English nonsense, flagged by its low log-probability
        assert french["transcript_source"] == "asr" and french["transcript"]
        assert french["asr"]["low_confidence"] and french["asr"]["language"] == "en"
        assert any(w.startswith("low-confidence ASR transcript") for w in french["warnings"])
    assert float(rows["speech"]["asr_logprob"]) == speech["asr"]["avg_logprob"]
    assert "asr (auto, the packaged Whisper tiny.en (English only)): 2 transcribed" in report.summary()
    assert "1 low-confidence" in report.summary()


def test_rerun_of_a_finished_job_does_no_work(job):
    out, items, _ = job
    started = time.perf_counter()
    report = extract(items, out, workers=1, progress=False)
    assert time.perf_counter() - started < 5.0
    assert report.n_extracted == 0 and report.n_cached == len(items)
    assert {r["run"] for r in read_report(out).values()} == {"cached"}


def test_other_config_into_the_same_cache_is_refused(job):
    out, items, _ = job
    with pytest.raises(ConfigError, match=r"fps=2\.0.*fps=5\.0"):
        extract(items[:1], out, ExtractConfig(fps=5.0), progress=False)


def test_a_second_job_on_the_same_cache_is_refused(job):
    out, items, _ = job
    with _JobLock(out), pytest.raises(DataError, match="another extraction job"):
        extract(items[:1], out, progress=False)


def test_changed_metadata_updates_the_record_only(job, tmp_path):
    out, items, _ = job
    before = all_entries(out)["good"][1]
    changed = [ExtractItem(i.id, i.path, i.text, meta={**i.meta, "label": "neu"}) if i.id == "good" else i
               for i in items]
    try:
        report = extract(changed, out, progress=False)
        assert report.n_extracted == 0
        assert read_report(out)["good"]["run"] == "updated"
        record, arrays = all_entries(out)["good"]
        assert record["meta"]["label"] == "neu"
        assert all(arrays[k].tobytes() == before[k].tobytes() for k in before)
    finally:
        extract(items, out, progress=False)  # put the original labels back for the other tests


# ---------------------------------------------------------------------------------- resumability
_KILL_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from mmaffect.extraction.pipeline import ExtractItem, extract
    spec = json.loads(sys.argv[1])
    items = [ExtractItem(i["id"], i["path"], text=i["text"]) for i in spec["items"]]
    def committed(item_id, record):
        print("COMMITTED", item_id, flush=True)
        time.sleep(0.3)  # give the test time to kill us in the middle of the job
    extract(items, spec["output"], workers=1, progress=False, on_result=committed)
    print("FINISHED", flush=True)
""")


def test_killed_midway_resumes_to_the_same_cache(media, tmp_path):
    sources = [media[k] for k in ("good", "speech", "noface", "silent", "audio_only", "partial")]
    items = [ExtractItem(f"clip{i:02d}", sources[i % len(sources)], text=f"utterance {i}") for i in range(9)]
    spec = {"items": [{"id": i.id, "path": str(i.path), "text": i.text} for i in items],
            "output": str(tmp_path / "killed")}
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "GLOG_minloglevel": "2"}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    committed = 0
    try:
        for line in proc.stdout:
            committed += line.startswith("COMMITTED")
            if committed == 3:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with FeatureCache(tmp_path / "killed") as cache:
        survived = len(cache.ids())
    assert 3 <= survived < len(items)  # everything committed before the kill is there

    resumed = extract(items, tmp_path / "killed", workers=1, progress=False)
    assert resumed.n_cached == survived and resumed.n_extracted == len(items) - survived
    # the reference runs on 2 spawned workers: same arrays as in-process extraction, bit for bit
    reference = extract(items, tmp_path / "uninterrupted", workers=2, progress=False)
    assert reference.n_extracted == len(items) and reference.n_failed == 0
    assert_same_cache(tmp_path / "killed", tmp_path / "uninterrupted")
    assert extract(items, tmp_path / "uninterrupted", workers=2, progress=False).n_extracted == 0


_CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import mmaffect.extraction.pipeline as P
    import mmaffect.extraction.stages as S

    _process = S._Extractor.process

    def process(self, item):  # runs in the spawned workers too: they re-import this script
        if item.id == "boom":
            os.kill(os.getpid(), signal.SIGSEGV)  # a native crash while extracting this item
        return _process(self, item)

    S._Extractor.process = process

    if __name__ == "__main__":
        items = [P.ExtractItem(n, sys.argv[1], text="x") for n in ("a", "boom", "b", "c")]
        report = P.extract(items, sys.argv[2], workers=2, progress=False)
        print(report.failed)
""")


def test_a_worker_crash_fails_only_its_item(media, tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(_CRASH_SCRIPT)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "GLOG_minloglevel": "2"}
    done = subprocess.run([sys.executable, str(script), str(media["good"]), str(tmp_path / "cache")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_report(tmp_path / "cache")
    assert rows["boom"]["status"] == "failed" and "worker process died" in rows["boom"]["reason"]
    assert all(rows[k]["status"] == "ok" for k in ("a", "b", "c"))
    with FeatureCache(tmp_path / "cache") as cache:
        assert cache.record("boom")["retryable"] is True  # re-tried by the next run


# ----------------------------------------------------------------------------------- the dataset
def test_cache_modalities_refuses_failed_and_unknown_ids(job):
    out, _, _ = job
    with FeatureCache(out) as cache, pytest.raises(DataError) as err:
        cache_modalities(cache, ["good", "zero", "nope"], sequences=False)
    assert "nope" in str(err.value) and "zero (empty file" in str(err.value)


def test_cache_modalities_align_audio_and_visual_steps(job):
    out, _, _ = job
    ids = ["good", "audio_only", "video_only", "noface"]
    with FeatureCache(out) as cache:
        mods, recipe = cache_modalities(cache, ids, sequences=True)
        n_frames = [len(cache.arrays(i)["frame_times"]) for i in ids]
        coarse, _ = cache_modalities(cache, ids, sequences=True, fps=1.0)
    a, v = mods["a"], mods["v"]
    assert a.dim == recipe["audio_vector"]["width"] and v.dim == recipe["visual_vector"]["width"]
    assert a.seq_dim == recipe["audio_sequence"]["width"] and v.seq_dim == len(VISUAL_STEP_NAMES)
    assert torch.equal(a.lengths, v.lengths)  # one step grid for both modalities
    assert v.lengths[0] == n_frames[0] and v.lengths[1] == 4  # audio-only: a 2 fps grid over 2 s
    assert coarse["a"].lengths.tolist() == [2, 2, 2, 2]
    names = recipe["visual_vector"]["names"]
    face_rate, present = v.vector[:, names.index("face_rate")], v.vector[:, names.index("video_present")]
    assert face_rate.tolist() == [1.0, 0.0, 1.0, 0.0] and present.tolist() == [1.0, 0.0, 1.0, 1.0]
    a_names = recipe["audio_vector"]["names"]
    assert a.vector[:, a_names.index("audio_present")].tolist() == [1.0, 1.0, 0.0, 1.0]
    for mod in (a, v):
        assert torch.isfinite(mod.vector).all() and torch.isfinite(mod.sequence).all()


def test_cache_prefix_loads_a_dataset_a_model_can_use(job):
    from mmaffect.data.registry import load_dataset
    from mmaffect.models import ModelSpec, create_model

    out, _, _ = job
    data = load_dataset(f"cache:{out}", sequences=True)
    n_ok = sum(s == "ok" for s, _ in EXPECTED.values())
    assert len(data) == n_ok and set(data.modalities) == {"t", "a", "v"}
    meta = {i.id: i.meta for i in job[1]}  # what each item was given: read back, row by row
    assert data.class_names == sorted({meta[i]["label"] for i in data.ids})
    assert [data.class_names[k] for k in data.label.tolist()] == [meta[i]["label"] for i in data.ids]
    assert data.group is not None and (data.group == data.speaker).all()
    assert data.split.tolist() == [meta[i]["split"] for i in data.ids]
    assert data.score.tolist() == pytest.approx([meta[i]["score"] for i in data.ids])
    assert data.speaker.tolist() == [meta[i]["speaker"] for i in data.ids]
    assert data.meta["features"]["extraction"]["config"]["fps"] == 2.0
    batch = data.batch(torch.arange(len(data)))
    for m in ("t", "a", "v"):
        assert batch[m].shape == (n_ok, data.modalities[m].dim) and torch.isfinite(batch[m]).all()
        assert batch[f"{m}_mask"].shape == batch[f"{m}_seq"].shape[:2]
        assert batch[f"{m}_mask"].sum(1).tolist() == data.modalities[m].lengths.tolist()
    spec = ModelSpec(dims={m: mod.dim for m, mod in data.modalities.items()},
                     seq_dims={m: mod.seq_dim for m, mod in data.modalities.items()},
                     heads={"logits": len(data.class_names)})
    for name in ("tfn", "ef-lstm"):
        torch.manual_seed(0)
        logits = create_model(name, spec).eval()(batch)["logits"]
        assert logits.shape == (n_ok, len(data.class_names)) and torch.isfinite(logits).all()
    vectors_only = load_cache(str(out))
    assert vectors_only.modalities["v"].sequence is None and len(vectors_only) == n_ok


# ---------------------------------------------------------------------------------------- geometry
def test_face_geometry_ignores_in_plane_rotation_and_scale(job):
    out, _, _ = job
    with FeatureCache(out) as cache:
        arrays, record = cache.arrays("good"), cache.record("good")
    h, w = record["flags"]["frame_size"]
    lm = arrays["face_landmarks"][:1].astype(np.float64)
    base, valid = face_geometry(lm, w, h)
    assert valid.all() and np.allclose(base, arrays["face_geometry"][:1], atol=1e-2)  # float16 landmarks
    px = lm[..., :2] * [w, h]
    angle = np.radians(25.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    turned = (px - [w / 2, h / 2]) @ rot.T * 0.7 + [w / 2, h / 2]
    lm2 = lm.copy()
    lm2[..., :2] = turned / [w, h]
    geom, _ = face_geometry(lm2, w, h)
    roll, scale = GEOMETRY_NAMES.index("head_roll"), GEOMETRY_NAMES.index("face_scale")
    keep = [i for i in range(len(GEOMETRY_NAMES)) if i not in (roll, scale)]
    np.testing.assert_allclose(geom[0, keep], base[0, keep], atol=1e-4)
    assert geom[0, roll] == pytest.approx(base[0, roll] + angle, abs=1e-4)
    assert geom[0, scale] == pytest.approx(base[0, scale] * 0.7, rel=1e-4)
    assert base[0, GEOMETRY_NAMES.index("mouth_corner_lift")] > 0  # the astronaut smiles
    empty, none_valid = face_geometry(np.zeros((2, 478, 3)), w, h)
    assert not none_valid.any() and not empty.any()


# --------------------------------------------------------------------------------------------- CLI
def test_cli_extract_with_column_mapping(media, tmp_path):
    manifest = tmp_path / "clips" / "manifest.csv"
    manifest.parent.mkdir()
    rel = "media/good.mp4"  # the shared manifest reader wants media inside the manifest's folder
    (manifest.parent / "media").mkdir()
    (manifest.parent / rel).write_bytes(media["good"].read_bytes())
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["clip_file", "transcript", "utterance_id", "label", "speaker", "emotion_score"])
        writer.writerow([rel, "hello there", "u1", "hap", "Ses01F", "1.5"])
        writer.writerow([rel, "", "u2", "sad", "Ses01M", "-0.5"])
        writer.writerow(["nowhere.mp4", "lost", "u3", "ang", "Ses01M", "0"])
        writer.writerow(["media/notes.mp4", "a text file", "u4", "neu", "Ses01M", "0"])
    (manifest.parent / "media" / "notes.mp4").write_text("these are meeting notes, not a video\n" * 20)
    columns = "path=clip_file,text=transcript,id=utterance_id,score=emotion_score"
    items, skipped = items_from_manifest(str(manifest), columns)
    assert [i.id for i in items] == ["u1", "u2", "u4"] and items[1].text is None
    assert items[0].path == (manifest.parent / rel).resolve()
    assert items[0].meta == {"label": "hap", "speaker": "Ses01F", "score": 1.5, "row": 2}
    assert len(skipped) == 1 and "manifest.csv: row 4: media file 'nowhere.mp4' not found" in str(skipped[0])

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["extract", str(manifest), "--output", str(tmp_path / "cache"), "--columns", columns,
                              "--asr", "never", "--quiet"])
    assert run(args) == 0
    rows = read_report(tmp_path / "cache")
    assert rows["u1"]["status"] == "ok" and rows["u1"]["row"] == "2"
    assert rows["u3"]["status"] == "skipped" and rows["u3"]["row"] == "4" and "not found" in rows["u3"]["reason"]
    assert rows["u4"]["status"] == "failed" and "not a media file" in rows["u4"]["reason"]
    assert "empty transcript (no text given and ASR is off)" in rows["u2"]["warnings"]
    strict = parser.parse_args(["extract", str(manifest), "--output", str(tmp_path / "cache"), "--columns", columns,
                                "--asr", "never", "--quiet", "--strict"])
    assert run(strict) == 1
    data = load_cache(str(tmp_path / "cache"))
    assert data.ids.tolist() == ["u1", "u2"] and data.score.tolist() == [1.5, -0.5]
    with pytest.raises(DataError, match="missing column 'nope' \\(mapped to path\\)"):
        items_from_manifest(str(manifest), "path=nope")

    # the seam of the shared `manifest:` reader: features of its media rows come from this cache
    from mmaffect.data.manifest import load_manifest

    good_rows = tmp_path / "clips" / "good.csv"
    good_rows.write_text("".join(manifest.read_text().splitlines(keepends=True)[:3]))
    data = load_manifest(str(good_rows), sequences=True, features=str(tmp_path / "cache"),
                         columns="path=clip_file,text=transcript,id=utterance_id,score=emotion_score")
    assert data.ids.tolist() == ["u1", "u2"] and {"t", "a", "v"} <= set(data.modalities)
    assert torch.equal(data.modalities["a"].lengths, data.modalities["v"].lengths)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def extract_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["extract", *argv])


def report_rows(folder: Path) -> list[dict]:
    with open(folder / "report.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_skipped_manifest_rows_are_in_the_report_and_fail_strict(media, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "good.mp4").write_bytes(media["good"].read_bytes())
    (clips / "empty.mp4").write_bytes(b"")
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(media["good"].read_bytes())
    manifest = write_csv(clips / "manifest.csv", ["path", "id", "text"], [
        ["good.mp4", "a", "hello"], ["empty.mp4", "b", "x"], ["missing.mp4", "c", "x"], [str(outside), "d", "x"],
        ["good.mp4", "a", "again"]])
    assert run(extract_args(str(manifest), "--output", str(tmp_path / "c1"), "--asr", "never", "--quiet")) == 0
    rows = report_rows(tmp_path / "c1")
    assert [(r["id"], r["row"], r["status"], r["run"]) for r in rows] == [
        ("a", "2", "ok", "extracted"), ("b", "3", "skipped", "skipped"), ("c", "4", "skipped", "skipped"),
        ("d", "5", "skipped", "skipped"), ("a", "6", "skipped", "skipped")]
    reasons = [r["reason"] for r in rows[1:]]
    for reason, expected in zip(reasons, ["empty (0 bytes)", "not found", "outside the manifest's folder",
                                          "duplicate id 'a' (also row 2)"], strict=True):
        assert expected in reason, (expected, reason)
    assert rows[3]["path"] == str(outside)  # the path as written in the manifest
    # every extracted item is fine, yet rows were left out: --strict says so
    assert run(extract_args(str(manifest), "--output", str(tmp_path / "c1"), "--asr", "never", "--quiet",
                            "--strict")) == 1

    jsonl = clips / "manifest.jsonl"
    jsonl.write_text('{"path": "good.mp4", "id": "j1", "text": "hi"}\n{"path": "good.mp4", "id": \n')
    assert run(extract_args(str(jsonl), "--output", str(tmp_path / "c2"), "--asr", "never", "--quiet",
                            "--strict")) == 1
    bad = report_rows(tmp_path / "c2")[1]
    assert bad["status"] == "skipped" and bad["row"] == "2" and "not valid JSON" in bad["reason"]


def test_truncated_store_is_a_clean_error_not_sigbus(job, media, tmp_path):
    """A cut-off data.mdb used to kill train and extract with SIGBUS (exit 135, no message)."""
    out, _, _ = job
    cache = tmp_path / "cache"
    shutil.copytree(out, cache, ignore=shutil.ignore_patterns(".lock"))
    data = cache / "store" / "data.mdb"
    os.truncate(data, data.stat().st_size // 2)
    manifest = write_csv(tmp_path / "clips" / "m.csv", ["path", "id", "text"], [["good.mp4", "good", "hi"]])
    (tmp_path / "clips" / "good.mp4").write_bytes(media["good"].read_bytes())
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "GLOG_minloglevel": "2"}
    for argv in (["train", "--dataset", f"cache:{cache}", "--model", "late-fusion", "--output", str(tmp_path / "r")],
                 ["extract", str(manifest), "--output", str(cache), "--quiet"]):
        done = subprocess.run([sys.executable, "-m", "mmaffect.cli", *argv], capture_output=True, text=True, env=env,
                              timeout=300)
        assert done.returncode == 2, (argv[0], done.returncode, done.stderr[-1000:])  # SIGBUS gave -7
        assert f"error: {data}: truncated feature store" in done.stderr, done.stderr[-1000:]


def test_extract_output_is_checked_before_any_work(tmp_path, monkeypatch):
    nowhere = str(tmp_path / "no-manifest.csv")  # never read: the output is refused first
    taken = tmp_path / "taken"
    taken.write_text("a file, not a folder")
    with pytest.raises(OutputError, match="exists and is a file"):
        run(extract_args(nowhere, "--output", str(taken)))
    # no write permission: root ignores chmod, so os.access (what the check asks) is made to say no
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and real_access(p, mode, **kw))
    with pytest.raises(OutputError, match="no write permission"):
        run(extract_args(nowhere, "--output", str(locked / "cache")))
    assert not (locked / "cache").exists()


def test_full_disk_is_a_one_line_error_naming_the_store(media, tmp_path):
    """A real full disk: a 256 KiB tmpfs (needs root; skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        (tmp_path / "clips").mkdir()
        (tmp_path / "clips" / "good.mp4").write_bytes(media["good"].read_bytes())
        manifest = write_csv(tmp_path / "clips" / "m.csv", ["path", "id", "text"],
                             [["good.mp4", f"c{i:02d}", "hello"] for i in range(12)])
        with pytest.raises(OutputError) as err:
            run(extract_args(str(manifest), "--output", str(disk / "cache"), "--asr", "never", "--quiet"))
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{disk / 'cache' / 'store'}: cannot write")
        with FeatureCache(disk / "cache") as cache:  # what was committed before stays readable
            assert 0 < len(cache.ids()) < 12 and all(r["status"] == "ok" for r in cache.records().values())
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_threads_reach_the_models(tmp_path, monkeypatch):
    import mmaffect.extraction.pipeline as pipeline
    from mmaffect.extraction.stages import _Extractor

    ext = _Extractor(ExtractConfig(), threads=2)
    assert ext.asr().threads == 2  # the Whisper model's cpu_threads
    seen = {}

    def fake_extract(items, output, config, **kwargs):
        seen.update(kwargs)
        return pipeline.ExtractionReport(output=Path(output), rows=[])

    monkeypatch.setattr(pipeline, "extract", fake_extract)
    (tmp_path / "a.mp4").write_bytes(b"\0" * 10)
    manifest = write_csv(tmp_path / "m.csv", ["path", "text"], [["a.mp4", "hi"]])
    args = extract_args(str(manifest), "--output", str(tmp_path / "cache"), "--quiet")
    args.threads = 2  # the global `mmaffect --threads 2`
    assert run(args) == 0 and seen["threads"] == 2


def test_asr_plan_and_summary_say_what_asr_does():
    from mmaffect.extraction.pipeline import ExtractionReport, asr_mode, asr_plan

    items = [ExtractItem("a", "a.mp4"), ExtractItem("b", "b.mp4", text="hi")]
    plan = asr_plan(ExtractConfig(), items)
    assert "1 of 2 item(s) transcribed with the packaged Whisper tiny.en (English only)" in plan
    assert "--asr never" in plan
    assert asr_plan(ExtractConfig(asr="never"), items).startswith("asr: never")
    assert "2 of 2" in asr_plan(ExtractConfig(asr="always", asr_model="/models/large-v3"), items)

    def report(*asr):
        return ExtractionReport(output=Path("c"), rows=[
            {"id": str(i), "row": None, "path": "p", "status": "ok", "reason": None, "warnings": [], "run": "extracted",
             "asr_logprob": lp, "asr_no_speech": ns} for i, (lp, ns) in enumerate(asr)])

    english = report((-0.4, 0.1), (-0.6, 0.2), (None, None)).summary()
    assert "asr: 2 transcribed, mean log-probability -0.50, mean no-speech probability 0.15, 0 low-confidence" \
        in english and "WARNING" not in english
    never = ExtractionReport(output=Path("c"), rows=[], asr_mode=asr_mode(ExtractConfig(asr="never")))
    assert "; asr (never): nothing transcribed;" in never.summary()
    for other in (report((-1.3, 0.1), (-0.9, 0.1), (-1.6, 0.1)), report((-0.5, 0.4), (-0.5, 0.35))):
        summary = other.summary()
        assert "WARNING: the transcripts look unreliable" in summary and "--asr never" in summary


_READER_TAKES_MEDIA_ROOT = "media_root" in inspect.signature(read_manifest).parameters


def test_media_root_must_be_a_folder(tmp_path):
    manifest = write_csv(tmp_path / "m.csv", ["path", "text"], [["a.mp4", "hi"]])
    with pytest.raises(DataError, match="--media-root must be an existing folder"):
        run(extract_args(str(manifest), "--output", str(tmp_path / "c"), "--media-root", str(tmp_path / "nope")))


@pytest.mark.skipif(not _READER_TAKES_MEDIA_ROOT,
                    reason="mmaffect.data.manifest.read_manifest has no media_root parameter yet")
def test_media_root_lets_media_live_elsewhere_but_not_escape(media, tmp_path):
    store = tmp_path / "media"
    (store / "sub").mkdir(parents=True)
    (store / "sub" / "good.mp4").write_bytes(media["good"].read_bytes())
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(media["good"].read_bytes())
    (store / "link.mp4").symlink_to(secret)
    manifest = write_csv(tmp_path / "manifests" / "m.csv", ["path", "id", "text"], [
        ["sub/good.mp4", "r1", "hi"], [str(store / "sub" / "good.mp4"), "r2", "hi"], ["../secret.mp4", "r3", "hi"],
        [str(secret), "r4", "hi"], ["link.mp4", "r5", "hi"]])
    items, skipped = items_from_manifest(str(manifest))
    assert items == [] and len(skipped) == 5  # without it: nothing is inside the manifest's folder
    items, skipped = items_from_manifest(str(manifest), media_root=store)
    good = (store / "sub" / "good.mp4").resolve()
    assert [(i.id, i.path) for i in items] == [("r1", good), ("r2", good)]
    assert [s.id for s in skipped] == ["r3", "r4", "r5"] and all("outside" in s.reason for s in skipped)
    assert run(extract_args(str(manifest), "--output", str(tmp_path / "c"), "--media-root", str(store),
                            "--asr", "never", "--quiet")) == 0
    assert [(r["id"], r["status"]) for r in report_rows(tmp_path / "c")] == [
        ("r1", "ok"), ("r2", "ok"), ("r3", "skipped"), ("r4", "skipped"), ("r5", "skipped")]


# ---------------------------------------------------------------------------------- real IEMOCAP
def test_real_iemocap_clips(data_dir, tmp_path):
    manifest = data_dir / "iemocap_clips" / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"{manifest} not found")
    items, skipped = items_from_manifest(str(manifest), "path=clip_file,text=transcript,id=utterance_id")
    table = pd.read_csv(manifest).set_index("utterance_id")
    assert not skipped and len(items) == 40
    chosen = [i for i in items if table.loc[i.id, "speaker_visible"] == 1][:3]
    report = extract(chosen, tmp_path / "iemocap", progress=False)
    assert report.n_failed == 0
    with FeatureCache(tmp_path / "iemocap") as cache:
        for item in chosen:
            record, arrays = cache.record(item.id), cache.arrays(item.id)
            assert record["duration"] == pytest.approx(float(table.loc[item.id, "duration"]), abs=0.05)
            assert record["flags"]["face_rate"] >= 0.7, (item.id, record["flags"])
            assert abs(len(arrays["frame_times"]) - record["duration"] * 2.0) <= 1
            assert record["transcript"] == item.text and record["meta"]["label"] == item.meta["label"]
            assert record["source"]["sha256"] == table.loc[item.id, "clip_sha256"]


def test_items_are_extracted_with_the_requested_blas_threads(monkeypatch):
    """In-process extraction runs BLAS with ``threads`` threads, like a worker process or a Ray actor: the
    mel filter bank's matrix product rounds differently with 1 and 2 BLAS threads, which made an
    in-process cache differ from a Ray one in the MFCCs' last bits."""
    from threadpoolctl import threadpool_info

    from mmaffect.extraction.stages import _Extractor

    seen = []
    monkeypatch.setattr(_Extractor, "_process", lambda self, item, record, timings: seen.append(
        {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}))
    for threads in (1, 2):
        _Extractor(ExtractConfig(), threads).process(ExtractItem(id="x", path=Path(__file__)))
    assert seen == [{1}, {2}]
