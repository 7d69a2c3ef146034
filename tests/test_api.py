"""The library layer: ``mmaffect.load`` -> a predictor for one checkpoint or a run folder (its models
averaged), the feature recipe saved in checkpoints, the one prediction-table schema shared by training and
``predict``, and the import layering (library code never imports the commands; models never import
extraction).

Text is embedded by a deterministic hashed bag of words instead of MiniLM (these tests check the
library's logic; tests/test_own_data.py trains on real MiniLM vectors)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import mmaffect
import mmaffect.data.manifest as manifest
import mmaffect.data.text_features as text_features
from mmaffect.cli import main
from mmaffect.data import Modality
from mmaffect.errors import ConfigError, DataError

SRC = Path(mmaffect.__file__).parent
POSITIVE = ["good", "great", "happy", "lovely", "fine", "glad"]
NEGATIVE = ["bad", "awful", "sad", "angry", "poor", "upset"]


def hashed_bag(texts, sequences=False, width=64):
    out = torch.zeros(len(texts), width)
    for i, text in enumerate(texts):
        for word in re.findall(r"\w+", text.lower()):
            out[i, zlib.crc32(word.encode()) % width] += 1.0
    return Modality(torch.nn.functional.normalize(out, dim=1)), {"text_encoder": "hashed-bag-64"}


@pytest.fixture()
def fake_text(monkeypatch):
    monkeypatch.setattr(manifest, "text_modality", hashed_bag)
    monkeypatch.setattr(text_features, "text_modality", hashed_bag)


@pytest.fixture()
def trained(tmp_path, fake_text):
    """A text-mlp trained for 2 seeds on a 60-row manifest (train 36 / valid 12 / test 12)."""
    rng = np.random.default_rng(0)
    rows = []
    for k in range(60):
        label = "pos" if k % 2 else "neg"
        words = rng.choice(POSITIVE if label == "pos" else NEGATIVE, 3).tolist() + ["the", "day"]
        rows.append({"id": f"u{k}", "text": " ".join(words), "label": label,
                     "split": "train" if k < 36 else "valid" if k < 48 else "test"})
    path = tmp_path / "data.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    out = tmp_path / "run"
    assert main(["--threads", "1", "train", "--dataset", f"manifest:{path}", "--model", "text-mlp", "--epochs", "8",
                 "--seeds", "2", "--output", str(out), "--quiet"]) == 0
    return path, out


def test_load_predicts_text_with_a_checkpoint_and_a_run_folder(trained):
    path, out = trained
    one = mmaffect.load(out / "seed0" / "model.safetensors")
    result = one.predict(text="great happy glad the day")
    assert result["label"] == "pos" and set(result["probabilities"]) == {"neg", "pos"}
    assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-6)
    assert one.predict(text=["awful sad poor the day", "glad"])[0]["label"] == "neg"
    both = mmaffect.load(out)  # the output folder: its 2 seed models, averaged
    assert len(both.models) == 2 and mmaffect.load(out / "seed1").models[0].path == out / "seed1" / "model.safetensors"
    members = [mmaffect.load(out / f"seed{s}" / "model.safetensors").predict(text="fine but upset")
               for s in (0, 1)]
    averaged = both.predict(text="fine but upset")
    for name in ("neg", "pos"):
        expected = np.mean([m["probabilities"][name] for m in members])
        assert averaged["probabilities"][name] == pytest.approx(expected, abs=1e-6)
    assert members[0]["probabilities"] != members[1]["probabilities"]  # the average is not one member
    with pytest.raises(ConfigError, match="non-empty"):
        one.predict(text="  ")


def test_training_predictions_and_predict_share_one_schema(trained, tmp_path, capsys):
    path, out = trained
    pred = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(out / "seed0" / "model.safetensors"), "--dataset",
                 f"manifest:{path}", "--output", str(pred)]) == 0
    predicted = pd.read_csv(pred, keep_default_na=False)
    training = pd.read_csv(out / "seed0" / "predictions.csv", keep_default_na=False)
    assert training.columns.tolist() == ["id", "split", "status", "error", "label", "pred_label", "prob_neg",
                                         "prob_pos"]
    assert [c for c in predicted.columns if c != "row"] == training.columns.tolist()  # row: the file's line
    same = predicted.set_index("id").loc[training.id].reset_index()[training.columns]
    for column in training.columns:
        if column.startswith("prob_"):
            assert np.allclose(same[column].astype(float), training[column].astype(float), atol=1e-6), column
        else:
            assert same[column].tolist() == training[column].tolist(), column


def test_evaluate_and_predict_accept_a_run_folder(trained, tmp_path, capsys):
    path, out = trained
    metrics = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", str(out), "--dataset", f"manifest:{path}", "--json", str(metrics)]) == 0
    assert 0 <= json.loads(metrics.read_text())["acc"] <= 100
    pred = tmp_path / "p.jsonl"
    assert main(["predict", "--checkpoint", str(out), "--dataset", f"manifest:{path}", "--output", str(pred)]) == 0
    records = [json.loads(line) for line in pred.read_text().splitlines()]
    assert len(records) == 60 and all(r["status"] == "ok" for r in records)
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--checkpoint", str(tmp_path / "empty"), "--dataset", f"manifest:{path}",
                 "--output", str(tmp_path / "x.csv")]) == 2
    assert "no model.safetensors here or in its run folders" in capsys.readouterr().err


def test_the_recipe_is_saved_and_checked(trained, monkeypatch):
    path, out = trained
    predictor = mmaffect.load(out / "seed0" / "model.safetensors")
    recipe = predictor.recipe
    assert recipe.dataset == f"manifest:{path}" and recipe.modalities == ("t",) and not recipe.sequences
    assert recipe.text_encoder == "hashed-bag-64" and recipe.extraction is None and not recipe.media

    def other_encoder(texts, sequences=False):
        modality, _ = hashed_bag(texts)
        return modality, {"text_encoder": "another-encoder"}

    monkeypatch.setattr(text_features, "text_modality", other_encoder)
    with pytest.raises(DataError, match="trained on text features hashed-bag-64, this installation makes "
                                        "another-encoder"):
        predictor.predict(text="good")


def test_recipe_refuses_features_extracted_otherwise():
    from mmaffect.recipe import FeatureRecipe

    recipe = FeatureRecipe(dataset="cache:x", modalities=("t", "a"), extraction={"fps": 1.0, "sample_rate": 16000})
    recipe.check_extraction({"fps": 1.0, "sample_rate": 16000}, "cache")
    with pytest.raises(DataError, match=r"fps=2\.0 \(checkpoint: 1\.0\)"):
        recipe.check_extraction({"fps": 2.0, "sample_rate": 16000}, "cache")
    assert FeatureRecipe.from_dict(recipe.to_dict()) == recipe
    assert recipe.extract_config(asr="never").fps == 1.0
    # a recipe without face_backend was extracted with mediapipe, whatever today's default
    assert recipe.extract_config().face_backend == "mediapipe"
    # face_backend is left out of a config at "mediapipe" (older caches have no key): still compared
    with pytest.raises(DataError, match=r"face_backend='tflite' \(checkpoint: 'mediapipe'\)"):
        recipe.check_extraction({"fps": 1.0, "sample_rate": 16000, "face_backend": "tflite"}, "cache")
    tflite = FeatureRecipe(dataset="cache:x", modalities=("v",), extraction={"fps": 1.0, "face_backend": "tflite"})
    with pytest.raises(DataError, match=r"face_backend='mediapipe' \(checkpoint: 'tflite'\)"):
        tflite.check_extraction({"fps": 1.0}, "cache")


def test_predict_checks_the_output_before_the_work(trained, tmp_path, capsys, monkeypatch):
    """Existing file: replaced. Folder, parent that is a file, no permission, disk full: exit 2, one line."""
    import os

    import mmaffect.predictor as predictor

    path, out = trained
    ckpt = str(out / "seed0" / "model.safetensors")
    args = ["predict", "--checkpoint", ckpt, "--dataset", f"manifest:{path}", "--output"]
    target = tmp_path / "p.csv"
    target.write_text("old")
    assert main([*args, str(target)]) == 0 and target.read_text().startswith("id,row,split")
    capsys.readouterr()
    calls = []
    real_load = predictor.load
    monkeypatch.setattr(predictor, "load", lambda *a: calls.append(a))  # the work must not start
    assert main([*args, str(tmp_path)]) == 2 and "is a folder" in capsys.readouterr().err
    assert main([*args, str(target / "x.csv")]) == 2 and "is a file, not a folder" in capsys.readouterr().err
    real_access = os.access
    # running as root ignores chmod, so the permission check is simulated
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path / "ro" else real_access(p, mode))
    (tmp_path / "ro").mkdir()
    assert main([*args, str(tmp_path / "ro" / "p.csv")]) == 2 and "no write permission" in capsys.readouterr().err
    assert calls == []
    monkeypatch.setattr(os, "access", real_access)
    monkeypatch.setattr(predictor, "load", real_load)
    import mmaffect.io as io

    def full(tmp):
        raise OSError(28, "No space left on device")

    real_write = io.atomic_write
    monkeypatch.setattr(io, "atomic_write", lambda p, write: real_write(p, full))
    assert main([*args, str(tmp_path / "full.csv")]) == 2
    assert "No space left on device" in capsys.readouterr().err and not (tmp_path / "full.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_import_mmaffect_is_light():
    code = "import sys, mmaffect; assert callable(mmaffect.load); print(sorted({'torch', 'numpy', 'pandas'} & " \
           "set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_library_layering():
    """Library code never imports the commands or the CLI; models never import extraction."""
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "commands" or rel.name == "cli.py":
            continue
        bad = {n for n in _imports(path) if n.startswith(("mmaffect.commands", "mmaffect.cli"))}
        if rel.parts[0] == "models":
            bad |= {n for n in _imports(path) if n.startswith("mmaffect.extraction")}
        offenders += [f"{rel}: {n}" for n in sorted(bad)]
    assert offenders == []


def test_media_needs_a_model_trained_on_extracted_features(trained):
    """A model whose audio came from a corpus's own feature files cannot be given media files: refused
    before any extraction, naming where its features came from."""
    from mmaffect.inference import LoadedModel
    from mmaffect.predictor import Predictor
    from mmaffect.recipe import FeatureRecipe

    _, out = trained
    loaded = mmaffect.load(out / "seed0").models[0]
    meta = {**loaded.meta, "recipe": FeatureRecipe(dataset="mosi-bclstm", modalities=("t", "a")).to_dict()}
    predictor = Predictor([LoadedModel(loaded.model, loaded.task, None, meta)], "old.safetensors")
    with pytest.raises(DataError, match="old.safetensors: its audio/visual inputs come from mosi-bclstm"):
        predictor.predict(text="good", media="clip.mp4")
    meta["recipe"] = FeatureRecipe(dataset="mosi-bclstm", modalities=("t",)).to_dict()  # text-CNN features
    predictor = Predictor([LoadedModel(loaded.model, loaded.task, None, meta)], "old.safetensors")
    with pytest.raises(DataError, match="its text features come from mosi-bclstm, not from a sentence encoder"):
        predictor.predict(text="good")


def test_training_recipe_records_extraction_and_reader_options():
    from mmaffect.data.dataset import AffectDataset
    from mmaffect.recipe import FeatureRecipe, training_recipe

    meta = {"features": {"extraction": {"config": {"fps": 1.0, "sample_rate": 16000}, "config_hash": "abc"},
                         "visual_vector": {"names": ["face_rate", "speaker_sync"]}}}
    data = AffectDataset(name="c", ids=np.array(["a", "b"]), modalities={"v": Modality(torch.zeros(2, 2))}, meta=meta)
    recipe = training_recipe("cache:/c", {"fps": 5}, data, sequences=True)
    assert recipe.step_fps == 5.0 and recipe.sequences and recipe.media and recipe.extraction_hash == "abc"
    assert recipe.extraction == {"fps": 1.0, "sample_rate": 16000} and recipe.visual_names == ("face_rate",
                                                                                               "speaker_sync")
    old = {"dataset": "cache:/c", "modalities": ["v"], "features": meta}  # a checkpoint from before the recipe
    assert FeatureRecipe.from_checkpoint(old).extraction == recipe.extraction
    assert json.loads(json.dumps(recipe.to_dict())) == recipe.to_dict()


def test_a_token_model_gets_the_raw_text(trained, tmp_path):
    """text-finetune reads token ids of the raw text, not the sentence vectors: predict must hand it the text."""
    from mmaffect.models import ModelSpec, create_model
    from mmaffect.training.checkpoint import prefixed, save_tensors

    _, out = trained
    meta = dict(mmaffect.load(out / "seed0").meta)
    spec = ModelSpec(dims={"t": 64}, seq_dims={}, heads={"logits": 2})
    torch.manual_seed(0)
    model = create_model("text-finetune", spec).eval()
    path = tmp_path / "finetune.safetensors"
    save_tensors(path, prefixed(model.state_dict(), "model/"),
                 {**meta, "model": "text-finetune", "model_args": {}, "spec": spec.to_dict()})
    predictor = mmaffect.load(path)
    single, pair = predictor.predict(text="glad"), predictor.predict(text=["glad", "awful sad poor the day"])
    assert single["probabilities"] == pytest.approx(pair[0]["probabilities"], abs=1e-5)
    assert pair[0]["probabilities"] != pytest.approx(pair[1]["probabilities"], abs=1e-4)  # the text matters


def test_a_model_on_replaced_text_vectors_is_evaluated_on_them(fake_text, tmp_path, data_dir):
    """``dataset_args.text_encoder`` is part of the recipe: evaluating on the dataset's name rebuilds the
    text vectors the model was trained on (here 64 hashed-bag dims), not MOSI's own 100-d text CNN ones."""
    out = tmp_path / "run"
    assert main(["--threads", "1", "train", "--dataset", "sentiment2:mosi-bclstm", "--model", "linear",
                 "--modalities", "t", "--set", "dataset_args.text_encoder=minilm", "--seeds", "1",
                 "--output", str(out), "--quiet"]) == 0
    trained = json.loads((out / "results.json").read_text())["test"]["acc"]["mean"]
    metrics = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", str(out), "--dataset", "sentiment2:mosi-bclstm",
                 "--json", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["acc"] == pytest.approx(trained)
