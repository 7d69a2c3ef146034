"""The command line end to end on real MOSI features: train, results.json, evaluate, resume, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from mmaffect.cli import main
from mmaffect.data import load_dataset
from mmaffect.errors import DataError
from mmaffect.inference import load_model
from mmaffect.training.checkpoint import load_tensors

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


def test_training_beats_constant_predictions(trained):
    """Three epochs of TFN learned from the features: well above the test split's majority rate (the
    best any constant sign can do) and a lower MAE than the best constant score (the test median)."""
    results = json.loads((trained / "results.json").read_text())
    pred = pd.read_csv(trained / "seed0" / "predictions.csv")
    test = pred[pred.split == "test"]
    majority = 100 * max((test.score >= 0).mean(), (test.score < 0).mean())  # 62.1 on this split
    constant_mae = (test.score - test.score.median()).abs().mean()
    for seed in (0, 1):
        assert results["test"]["acc2_has0"]["per_seed"][seed] > majority + 8
        assert results["test"]["mae"]["per_seed"][seed] < constant_mae - 0.2


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


def test_rerun_reads_finished_runs_back_and_other_config_is_refused(trained, capsys, monkeypatch):
    """Training is deterministic, so equal metrics alone cannot tell read-back from retraining: count
    the runs trained (a wrapper around run_one) and check that no file of a finished run is rewritten."""
    import mmaffect.training.runs as runs

    trained_runs = []
    real_run_one = runs.run_one

    def counting_run_one(config, data, plan, *args, **kwargs):
        trained_runs.append(plan.name)
        return real_run_one(config, data, plan, *args, **kwargs)

    monkeypatch.setattr(runs, "run_one", counting_run_one)
    args = ["train", "--dataset", "mosi-bclstm", "--model", "tfn", "--seeds", "2", "--epochs", "3",
            "--output", str(trained), "--quiet"]
    files = sorted(trained.glob("seed*/*"))
    assert {p.name for p in files} == {"model.safetensors", "predictions.csv", "result.json"}
    stamps = {p: p.stat().st_mtime_ns for p in files}
    before = json.loads((trained / "results.json").read_text())
    assert main(args) == 0
    after = json.loads((trained / "results.json").read_text())
    assert trained_runs == []
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert after["test"] == before["test"] and after["train_seconds"] == before["train_seconds"]

    # a run without its result.json is unfinished: only that one is trained again
    seed0 = {p: p.stat().st_mtime_ns for p in files if p.parent.name == "seed0"}
    (trained / "seed1" / "result.json").unlink()
    assert main(args) == 0
    assert trained_runs == ["seed1"]
    assert {p: p.stat().st_mtime_ns for p in seed0} == seed0
    assert json.loads((trained / "results.json").read_text())["test"] == before["test"]  # deterministic

    capsys.readouterr()
    assert main(args[:8] + ["4"] + args[9:]) == 2
    assert "holds runs of another configuration or other data" in capsys.readouterr().err
    assert trained_runs == ["seed1"]


# A training job killed with SIGKILL mid-run and started again ends with the same weights as one
# that was never interrupted (train.checkpoint_seconds=0: the state is saved after every epoch).
_TRAIN = ["--threads", "1", "train", "--dataset", "mosi-bclstm", "--model", "lf-dnn", "--seeds", "1",
          "--epochs", "24", "--set", "train.checkpoint_seconds=0", "--set", "train.patience=100", "--quiet"]
_CLI = "import sys; from mmaffect.cli import main; sys.exit(main(sys.argv[1:]))"


def _saved_epoch(path) -> int:
    try:
        return load_tensors(path)[1]["epoch"]
    except DataError:  # not written yet
        return 0


def test_training_killed_midway_resumes_to_the_same_weights(tmp_path, data_dir):
    killed = tmp_path / "killed"
    state = killed / "seed0" / "last.safetensors"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen([sys.executable, "-c", _CLI, *_TRAIN, "--output", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        while _saved_epoch(state) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "seed0" / "result.json").exists()
    _, interrupted = load_tensors(state)
    assert 3 <= interrupted["epoch"] < 24

    threads = torch.get_num_threads()
    try:
        assert main(_TRAIN + ["--output", str(killed)]) == 0
        assert main(_TRAIN + ["--output", str(tmp_path / "uninterrupted")]) == 0
    finally:
        torch.set_num_threads(threads)
    resumed = json.loads((killed / "seed0" / "result.json").read_text())
    # resumed, not retrained: the epochs before the kill keep the killed process's own timings
    assert resumed["history"][:interrupted["epoch"]] == interrupted["history"]
    reference = json.loads((tmp_path / "uninterrupted" / "seed0" / "result.json").read_text())
    assert resumed["epochs_run"] == reference["epochs_run"] == 24
    assert resumed["test"] == reference["test"] and resumed["valid"] == reference["valid"]
    weights, meta = load_tensors(killed / "seed0" / "model.safetensors")
    expected, expected_meta = load_tensors(tmp_path / "uninterrupted" / "seed0" / "model.safetensors")
    assert weights.keys() == expected.keys() and meta["best_epoch"] == expected_meta["best_epoch"]
    assert all(torch.equal(weights[k], expected[k]) for k in weights)  # bit for bit
    assert (killed / "seed0" / "predictions.csv").read_bytes() == \
        (tmp_path / "uninterrupted" / "seed0" / "predictions.csv").read_bytes()
    assert not state.exists()


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


def test_cross_validation_tests_every_row_once(tmp_path, data_dir):
    assert main(["train", "--dataset", "mosi-bclstm", "--model", "ef-mlp", "--cv", "3", "--epochs", "1",
                 "--output", str(tmp_path / "cv"), "--quiet"]) == 0
    results = json.loads((tmp_path / "cv" / "results.json").read_text())
    assert results["folds"] == [0, 1, 2] and len(results["test"]["mae"]["per_run"]) == 3
    tested = []
    for fold in range(3):
        pred = pd.read_csv(tmp_path / "cv" / f"seed0_fold{fold}" / "predictions.csv")
        tested += pred[pred.split == "test"].id.tolist()
    assert sorted(tested) == sorted(set(tested)) and len(tested) == 2199  # each row tested exactly once


def test_ablation_trains_each_subset_on_its_own_modalities(tmp_path, capsys, data_dir):
    assert main(["ablate", "--dataset", "mosi-bclstm", "--model", "lf-dnn", "--subsets", "t;av", "--epochs", "1",
                 "--output", str(tmp_path / "abl"), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    table = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["modalities"] for r in table["rows"]] == ["t", "av"]
    first, second = (r["test"] for r in table["rows"])
    assert first["mae"]["mean"] != second["mae"]["mean"] and first["corr"]["mean"] != second["corr"]["mean"]

    data = load_dataset("mosi-bclstm", root=data_dir)
    test_rows = torch.as_tensor(data.split_indices()["test"])
    for row in table["rows"]:
        subset, folder = list(row["modalities"]), tmp_path / "abl" / row["modalities"]
        results = json.loads((folder / "results.json").read_text())
        assert results["modalities"] == subset and json.loads((folder / "config.json").read_text())["modalities"] \
            == subset
        assert results["test"]["mae"]["mean"] == row["test"]["mae"]["mean"]
        line = next(x for x in printed if x.startswith(f"| {row['modalities']} |"))
        assert f"{row['test']['mae']['mean']:.4f} ± {row['test']['mae']['std']:.4f}" in line

        loaded = load_model(folder / "seed0" / "model.safetensors")
        assert loaded.meta["modalities"] == subset and sorted(loaded.meta["spec"]["dims"]) == sorted(subset)
        assert sorted(loaded.model.encoders) == sorted(subset)  # LF-DNN: one encoder per modality it was given
        batch = loaded.prepare(data, "mosi-bclstm").batch(test_rows)
        assert {"t", "a", "v"} & set(batch) == set(subset)  # the model runs without the excluded inputs
        with torch.no_grad():
            score = loaded.model(batch)["score"]
            noisy = dict(batch) | {m: torch.randn(len(test_rows), data.modalities[m].dim)
                                   for m in {"t", "a", "v"} - set(subset)}
            assert torch.equal(loaded.model(noisy)["score"], score)  # and ignores them when given
        pred = pd.read_csv(folder / "seed0" / "predictions.csv")
        np.testing.assert_allclose(pred[pred.split == "test"].pred_score, score.numpy(), rtol=1e-5, atol=1e-6)
