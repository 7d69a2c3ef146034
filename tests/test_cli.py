"""The command line end to end on real MOSI features: train, results.json, evaluate, resume, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from mmaffect.cli import main

SENTIMENT_METRICS = {"acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc3", "acc5", "acc7", "mae", "corr", "loss"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("tfn")
    code = main(["train", "--dataset", "mosi-bclstm", "--model", "tfn", "--seeds", "2", "--epochs", "3",
                 "--output", str(out), "--quiet"])
    assert code == 0
    return out


def test_datasets_and_models_commands(capsys, data_dir):
    assert main(["datasets"]) == 0
    listing = capsys.readouterr().out
    assert "mosi-bclstm" in listing and "2199" in listing and "found" in listing and "mmsa:PATH" in listing
    assert main(["models", "-v"]) == 0
    listing = capsys.readouterr().out
    assert "tfn" in listing and "text_hidden=128" in listing


def test_results_json_format(trained):
    results = json.loads((trained / "results.json").read_text())
    for key in ("dataset", "model", "split", "modalities", "seeds", "test", "valid", "train_seconds", "n_params"):
        assert key in results
    assert results["dataset"] == "mosi-bclstm" and results["model"] == "tfn" and results["seeds"] == [0, 1]
    assert results["modalities"] == ["t", "a", "v"]
    assert set(results["test"]) == SENTIMENT_METRICS
    stats = results["test"]["acc2_non0"]
    assert len(stats["per_seed"]) == 2
    assert stats["mean"] == pytest.approx(np.mean(stats["per_seed"]))
    assert stats["std"] == pytest.approx(np.std(stats["per_seed"], ddof=1))
    assert results["n_params"] > 9_000_000  # TFN's 140k-wide fusion layer
    assert any(r["comparable"] and r["metric"] == "acc2_has0" for r in results["published"])


def test_metrics_match_the_predictions_file(trained):
    """results.json values are recomputed independently from predictions.csv with sklearn."""
    results = json.loads((trained / "results.json").read_text())
    pred = pd.read_csv(trained / "seed1" / "predictions.csv")
    test = pred[pred.split == "test"]
    assert len(test) == 752 and test.id.is_unique
    has0 = accuracy_score(test.score >= 0, test.pred_score >= 0) * 100
    nz = test[test.score != 0]
    non0_f1 = f1_score(nz.score > 0, nz.pred_score > 0, average="weighted") * 100
    assert results["test"]["acc2_has0"]["per_seed"][1] == pytest.approx(has0)
    assert results["test"]["f1_non0"]["per_seed"][1] == pytest.approx(non0_f1)
    assert results["test"]["mae"]["per_seed"][1] == pytest.approx(np.abs(test.score - test.pred_score).mean(),
                                                                  rel=1e-5)


def test_evaluate_reproduces_test_metrics(trained, tmp_path, capsys):
    run = json.loads((trained / "seed0" / "result.json").read_text())
    out = tmp_path / "metrics.json"
    preds = tmp_path / "preds.csv"
    assert main(["evaluate", "--checkpoint", str(trained / "seed0" / "model.safetensors"),
                 "--dataset", "mosi-bclstm", "--json", str(out), "--predictions", str(preds)]) == 0
    metrics = json.loads(out.read_text())
    for name, value in run["test"].items():
        assert metrics[name] == pytest.approx(value, rel=1e-5, abs=1e-6)
    assert len(pd.read_csv(preds)) == 752
    assert "acc2_non0" in capsys.readouterr().out


def test_rerun_resumes_and_other_config_is_refused(trained, capsys):
    before = (trained / "results.json").read_text()
    assert main(["train", "--dataset", "mosi-bclstm", "--model", "tfn", "--seeds", "2", "--epochs", "3",
                 "--output", str(trained), "--quiet"]) == 0
    after = json.loads((trained / "results.json").read_text())
    assert after["test"] == json.loads(before)["test"]
    capsys.readouterr()
    assert main(["train", "--dataset", "mosi-bclstm", "--model", "tfn", "--seeds", "2", "--epochs", "4",
                 "--output", str(trained), "--quiet"]) == 2
    assert "holds runs of another configuration or other data" in capsys.readouterr().err


def test_missing_data_is_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMAFFECT_DATA", str(tmp_path))
    assert main(["train", "--dataset", "mosi-bclstm", "--model", "tfn", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "mosi_bclstm_features.npz: file not found" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_bad_config_values_are_errors(tmp_path, capsys, data_dir):
    assert main(["train", "--dataset", "mosi-bclstm", "--model", "tfn", "--set", "train.optimiser=adam",
                 "--output", str(tmp_path / "o")]) == 2
    assert "unknown train option optimiser" in capsys.readouterr().err
    assert main(["train", "--dataset", "mosi-bclstm", "--model", "text-mlp", "--modalities", "a",
                 "--output", str(tmp_path / "o2")]) == 2
    assert "needs modality t" in capsys.readouterr().err


def test_cross_validation_and_ablation(tmp_path, capsys, data_dir):
    assert main(["train", "--dataset", "mosi-bclstm", "--model", "ef-mlp", "--cv", "3", "--epochs", "1",
                 "--output", str(tmp_path / "cv"), "--quiet"]) == 0
    results = json.loads((tmp_path / "cv" / "results.json").read_text())
    assert results["folds"] == [0, 1, 2] and len(results["test"]["mae"]["per_run"]) == 3
    tested = []
    for fold in range(3):
        pred = pd.read_csv(tmp_path / "cv" / f"seed0_fold{fold}" / "predictions.csv")
        tested += pred[pred.split == "test"].id.tolist()
    assert sorted(tested) == sorted(set(tested)) and len(tested) == 2199  # each row tested exactly once
    assert main(["ablate", "--dataset", "mosi-bclstm", "--model", "lf-dnn", "--subsets", "t;av", "--epochs", "1",
                 "--output", str(tmp_path / "abl"), "--quiet"]) == 0
    table = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["modalities"] for r in table["rows"]] == ["t", "av"]
    assert "| av |" in capsys.readouterr().out
