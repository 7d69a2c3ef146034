"""Pretrained models: the shipped default analysis model loads and predicts with no training, every load
checks the card's sha256 (a changed, missing or unlisted weight file is refused), a hub repository
loads from a local folder in the hub cache layout (offline), and `mmaffect models --pretrained` lists
the catalogue."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest

import mmaffect
from mmaffect.cli import main
from mmaffect.errors import ConfigError, DataError
from mmaffect.pretrained import CARD_FILE, CATALOG, location, read_card, resolve, shipped_dir, verify


@pytest.fixture(scope="module")
def shipped():
    folder = shipped_dir() / "analysis"
    if not (folder / CARD_FILE).is_file():
        pytest.fail(f"the default analysis model is not in the package ({folder}); build it with "
                    "`mmaffect pretrained build analysis`")
    return folder


@pytest.fixture
def copy(shipped, tmp_path):
    """A copy of the shipped model folder, free to damage."""
    return shutil.copytree(shipped, tmp_path / "analysis")


def test_shipped_default_is_verified_and_small(shipped):
    card = verify(shipped)
    assert card["name"] == "analysis" and card["members"] == len(card["files"]) >= 1
    size = sum(f["bytes"] for f in card["files"].values())
    assert size < 8 * 1024 * 1024, f"the shipped model is {size / 2**20:.1f} MB; keep package data small"
    assert card["metrics"]["acc"]["std"] >= 0 and card["build_command"].startswith("mmaffect pretrained build")
    assert (shipped / "README.md").read_text().startswith("# analysis")


def test_shipped_default_loads_and_predicts_without_training(shipped, tmp_path):
    """With an empty $MMAFFECT_CACHE (conftest), analyze's default model is the shipped one, and it predicts."""
    import media_factory
    from mmaffect.commands.analyze import default_model

    assert default_model() == location("analysis") == shipped
    predictor = mmaffect.load("pretrained:analysis")
    assert len(predictor.models) == read_card(shipped)["members"]
    assert predictor.modalities == ["t", "a", "v"] and len(predictor.classes) == 8
    clip = media_factory.face_video(tmp_path / "clip.mp4", seconds=2.0, fps=5, audio=media_factory.tone(2.0, 220.0))
    record = predictor.predict(text="I am so happy to see you again", media=clip)
    assert record["label"] in predictor.classes
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert set(record["relevance"]) == {"t", "a", "v"}


def test_a_changed_weight_file_is_refused(copy):
    member = copy / next(iter(read_card(copy)["files"]))
    raw = bytearray(member.read_bytes())
    raw[-10] ^= 0xFF  # one byte in the last weights
    member.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="sha256 mismatch") as err:
        mmaffect.load(copy)
    assert str(member) in str(err.value) and "refusing to load" in str(err.value)


def test_a_missing_or_unlisted_file_is_refused(copy):
    files = list(read_card(copy)["files"])
    extra = copy / "seed9_fold9" / "model.safetensors"
    extra.parent.mkdir()
    shutil.copy(copy / files[0], extra)
    with pytest.raises(DataError, match="does not list"):
        resolve(copy)
    shutil.rmtree(extra.parent)
    (copy / files[-1]).unlink()
    with pytest.raises(DataError, match="missing"):
        resolve(copy)


def test_a_card_naming_a_file_outside_its_folder_is_refused(copy):
    card = read_card(copy)
    card["files"]["../elsewhere.safetensors"] = {"sha256": "0" * 64, "bytes": 1}
    (copy / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(DataError, match="outside its folder"):
        verify(copy)


def _hub_cache(root, repo_id: str, source) -> str:
    """``source`` stored as huggingface_hub stores a downloaded repository: content-addressed blobs,
    a snapshot folder of relative symlinks named by the commit, and refs/main naming the commit."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return commit


def test_hub_repository_loads_offline_from_the_hub_cache(shipped, tmp_path, monkeypatch):
    from huggingface_hub import constants

    commit = _hub_cache(tmp_path / "hub", "someone/mmaffect-analysis", shipped)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    predictor = mmaffect.load("hf:someone/mmaffect-analysis")
    assert len(predictor.models) == read_card(shipped)["members"]
    folder = resolve("hf:someone/mmaffect-analysis")
    assert folder.name == commit and folder.parent.name == "snapshots"
    # a corrupted blob is caught through the snapshot's symlink
    blob = max((tmp_path / "hub").rglob("blobs/*"), key=lambda p: p.stat().st_size)  # a weight file
    blob.write_bytes(blob.read_bytes()[:-1])
    with pytest.raises(DataError, match="sha256 mismatch"):
        mmaffect.load("hf:someone/mmaffect-analysis")
    with pytest.raises(DataError, match="not in the local hub cache"):
        mmaffect.load("hf:someone/not-downloaded")
    with pytest.raises(ConfigError, match="OWNER/NAME"):
        mmaffect.load("hf:no-owner")


def test_models_pretrained_lists_the_catalogue(capsys, shipped):
    assert main(["models", "--pretrained"]) == 0
    out = capsys.readouterr().out
    for name in CATALOG:
        assert f"pretrained:{name}" in out
    assert str(shipped) in out
    assert "not built (mmaffect pretrained build text-meld7)" in out  # the test cache is empty


def test_unknown_and_unbuilt_names_say_what_to_do():
    with pytest.raises(ConfigError, match="unknown pretrained model 'nope'"):
        mmaffect.load("pretrained:nope")
    with pytest.raises(DataError, match="mmaffect pretrained build sentiment-mosi"):
        mmaffect.load("pretrained:sentiment-mosi")


def test_packaged_minilm_runs_without_transformers_and_matches_it():
    """Start-up: the packaged MiniLM runs as a plain torch module (no transformers import, ~2 s less on a
    cold `analyze`); same word pieces, same token states as transformers' BertModel within float error."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mmaffect.features.minilm import load_packaged
    from mmaffect.features.text import TextEncoder, model_source

    texts = ["I am so happy to see you again!", "ok", "Naïve café, résumé: 😀 " * 3, "well " * 100]
    folder = model_source(None)
    tokenizer, model = load_packaged(folder)
    theirs_tok, theirs = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
    ours_in = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    theirs_in = theirs_tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(ours_in[key], theirs_in[key]), key
    with torch.inference_mode():
        ours_states = model(**ours_in).last_hidden_state
        theirs_states = theirs.eval()(**theirs_in).last_hidden_state
    mask = ours_in["attention_mask"].bool()
    assert torch.allclose(ours_states[mask], theirs_states[mask], atol=1e-4)
    encoder = TextEncoder()
    vectors = encoder.encode(texts)
    assert isinstance(encoder._model, type(model)) and encoder.dim == 384
    pooled = torch.nn.functional.normalize((theirs_states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    for (vector, states), expected, n in zip(vectors, pooled, mask.sum(1), strict=True):
        assert np.allclose(vector, expected.numpy(), atol=1e-5) and states.shape == (int(n), 384)


def test_pack_writes_a_card_that_loads(tmp_path):
    """The build's packing step on a small real training run: members copied as float16, a card whose
    sha256 match the files, the float16 effect measured on each member's test rows, and the packed
    folder loads (verified) and predicts."""
    import pandas as pd

    from mmaffect.commands.pretrained_build import Built, pack

    words = {"hap": ["glad", "happy", "great", "lovely"], "sad": ["sad", "awful", "gloomy", "upset"]}
    rows = [{"text": f"I feel {words[label][k % 4]} about day {k}", "label": label,
             "split": ("train", "train", "train", "valid", "test")[k % 5]}
            for k in range(60) for label in [("hap", "sad")[k % 2]]]
    pd.DataFrame(rows).to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "runs"
    assert main(["train", "--dataset", f"manifest:{tmp_path / 'rows.csv'}", "--model", "text-mlp", "--seeds", "2",
                 "--epochs", "3", "--set", "search={}", "--output", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    card = pack("text-iemocap6", Built(out, results, {"notes": ["a test pack"]}), tmp_path / "packed", True,
                "mmaffect pretrained build text-iemocap6")
    assert card["members"] == 2 and card["weights_dtype"] == "float16" and card["classes"] == ["hap", "sad"]
    assert card["metrics"]["acc"]["mean"] == results["test"]["acc"]["mean"]
    assert card["float16_effect"]["test_rows"] == 2 * 12 and card["float16_effect"]["max_probability_change"] < 1e-2
    assert set(card["ensemble_test"]) == {"acc", "wacc", "f1_weighted", "f1_macro"}
    assert verify(tmp_path / "packed") == read_card(tmp_path / "packed")
    assert "a test pack" in (tmp_path / "packed" / "README.md").read_text()
    record = mmaffect.load(tmp_path / "packed").predict(text="I feel glad about it")
    assert record["label"] in ("hap", "sad")


def test_serve_takes_pretrained_names(shipped):
    from mmaffect.commands.serve import _path

    assert _path("pretrained:analysis", "--model") == shipped
    with pytest.raises(ConfigError, match="unknown pretrained model"):
        _path("pretrained:nope", "--text-model")
