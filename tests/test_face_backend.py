"""The face backend as an extraction setting (``ExtractConfig.face_backend``): validation, the cache
identity (config, hash, ``meta.json`` extractors and versions, the feature recipe), resuming, and the
backend reaching the :class:`~mmaffect.features.face.FaceAnalyzer`. Needs neither mediapipe nor media."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmaffect.errors import ConfigError
from mmaffect.extraction.config import FACE_BACKENDS, ExtractConfig, _meta_for, config_hash, package_versions

PRETRAINED = Path(__file__).resolve().parents[1] / "src" / "mmaffect" / "pretrained" / "files"


def test_backends_are_the_analyzers():
    from mmaffect.features.face import BACKENDS

    assert FACE_BACKENDS == BACKENDS == ("mediapipe", "tflite")
    assert ExtractConfig().face_backend == "tflite"  # the vendored port: works without mediapipe


@pytest.mark.parametrize("bad", ["onnx", "TFLite", "", None])
def test_unknown_backend_is_refused_naming_the_choices(bad):
    with pytest.raises(ConfigError, match=r"unknown face_backend .*choose one of 'mediapipe', 'tflite'"):
        ExtractConfig(face_backend=bad)


def test_mediapipe_keeps_old_caches_and_records_valid():
    """A mediapipe config, and so its hash, is what the default was before the option existed; a record
    without the key (an old cache's meta.json, an old checkpoint's recipe) reads back as mediapipe, not as
    today's default."""
    mediapipe = ExtractConfig(face_backend="mediapipe")
    assert "face_backend" not in mediapipe.to_dict()
    # config_hash(ExtractConfig()) before face_backend existed (commit 72e8d27)
    assert config_hash(mediapipe) == "9f932b2eb8eb3e9c"
    assert ExtractConfig.from_dict(mediapipe.to_dict()) == mediapipe
    assert ExtractConfig.from_dict({"fps": 1.0, "unknown_later_setting": 3}).face_backend == "mediapipe"
    assert ExtractConfig.from_dict(ExtractConfig().to_dict()) == ExtractConfig()
    assert ExtractConfig.from_dict({}, face_backend="tflite").face_backend == "tflite"
    for card in sorted(PRETRAINED.glob("*/card.json")):
        recorded = (json.loads(card.read_text()).get("extractors") or {}).get("extraction")
        if recorded:  # the settings a media checkpoint was trained on rebuild exactly the same config
            assert ExtractConfig.from_dict(recorded).to_dict() == recorded, card


def test_backends_never_share_a_cache_identity():
    mp, tfl = ExtractConfig(face_backend="mediapipe"), ExtractConfig()
    assert tfl.to_dict() == {**mp.to_dict(), "face_backend": "tflite"}
    assert config_hash(mp) != config_hash(tfl)
    # also with other settings on (audio encoders, short-range detector)
    kw = {"audio_encoders": ("whisper",), "whisper_window": "trim", "full_range_detector": False}
    assert config_hash(ExtractConfig(**kw, face_backend="mediapipe")) != config_hash(ExtractConfig(**kw))
    meta_mp, meta_tfl = _meta_for(mp), _meta_for(tfl)
    assert meta_mp["config_hash"] != meta_tfl["config_hash"]
    # the face stage names its backend
    assert "backend mediapipe" in meta_mp["extractors"]["face"] and "refined" in meta_mp["extractors"]["face"]
    assert "backend tflite" in meta_tfl["extractors"]["face"] and "ai-edge-litert" in meta_tfl["extractors"]["face"]
    # mediapipe's version is recorded only when it runs; fer's model is mmaffect's own file now
    assert "mediapipe" in package_versions(mp) and "mediapipe" not in package_versions(tfl)
    assert "fer" not in package_versions(mp) and "mmaffect" in package_versions(tfl)


def test_recipes_of_the_two_backends_differ(tmp_path):
    """The feature recipe a model records (``cache_modalities``) carries the backend, hash and extractor."""
    from mmaffect.extraction.cache import FeatureCache, cache_modalities

    recipes = {}
    for backend in FACE_BACKENDS:
        folder = tmp_path / backend
        folder.mkdir()
        (folder / "meta.json").write_text(json.dumps(_meta_for(ExtractConfig(face_backend=backend))))
        with FeatureCache(folder) as cache:
            recipes[backend] = cache_modalities(cache, [], False)[1]["extraction"]
    mp, tfl = recipes["mediapipe"], recipes["tflite"]
    assert "face_backend" not in mp["config"] and tfl["config"]["face_backend"] == "tflite"
    assert mp["config_hash"] != tfl["config_hash"]
    assert mp["extractors"]["face"] != tfl["extractors"]["face"]


def test_resuming_a_cache_with_the_other_backend_is_refused(tmp_path):
    from mmaffect.extraction.pipeline import _prepare_output

    _prepare_output(tmp_path, ExtractConfig(face_backend="mediapipe"))
    _prepare_output(tmp_path, ExtractConfig(face_backend="mediapipe"))  # the same settings: fine
    with pytest.raises(ConfigError, match=r"face_backend='<unset>'.*face_backend='tflite'"):
        _prepare_output(tmp_path, ExtractConfig())
    other = tmp_path / "tflite"
    other.mkdir()
    _prepare_output(other, ExtractConfig())
    _prepare_output(other, ExtractConfig(face_backend="tflite"))
    with pytest.raises(ConfigError, match="face_backend"):
        _prepare_output(other, ExtractConfig(face_backend="mediapipe"))


@pytest.mark.parametrize("backend", FACE_BACKENDS)
def test_the_backend_reaches_the_face_analyzer(backend, monkeypatch):
    """``_Extractor.load`` builds the analyzer with the config's backend (the analyzer is faked: no models)."""
    import numpy as np

    import mmaffect.features.face as face
    from mmaffect.extraction.stages import _Extractor

    seen = {}

    class FakeAnalyzer:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def __call__(self, frames):
            return face.FaceFrames.empty(len(frames))

    monkeypatch.setattr(face, "FaceAnalyzer", FakeAnalyzer)
    _Extractor(ExtractConfig(face_backend=backend, full_range_detector=False)).load()
    assert seen["backend"] == backend and seen["full_range"] is False
    assert isinstance(seen["threads"], int) and np.isscalar(seen["min_confidence"])


def test_old_media_checkpoints_need_mediapipe_and_say_so(monkeypatch):
    """A recipe without ``face_backend`` (made with mediapipe) that reads video needs mediapipe; without it
    the check names the install line. Audio-only models (the voice model) and tflite recipes need nothing."""
    import importlib.util

    from mmaffect.extras import require_face_backend

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mediapipe" else real(name, *a))
    old = ExtractConfig.from_dict({"fps": 2.0})
    with pytest.raises(ConfigError, match=r"ckpt uses the mediapipe face backend.*mmaffect\[mediapipe\]"):
        require_face_backend(old, "ckpt")
    require_face_backend(old, "voice", faces=False)
    require_face_backend(ExtractConfig(), "new")
    # a path that skipped the early check (e.g. an audio-only recipe given a video) meets it where mediapipe loads
    import numpy as np

    from mmaffect.features.face import FaceAnalyzer

    with pytest.raises(ConfigError, match=r"FaceAnalyzer\(backend='mediapipe'\) uses the mediapipe face backend"):
        FaceAnalyzer(backend="mediapipe")(np.zeros((1, 48, 64, 3), np.uint8))
