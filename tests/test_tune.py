"""``mmaffect tune``: the search space file, the rows a search may see, and an end-to-end search on a
local Ray (one Ray per module) on real MELD rows, run twice -- once with the test labels flipped --
to show the search never reads test labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmaffect.cli import main
from mmaffect.errors import ConfigError, DataError
from mmaffect.training.config import load_config
from mmaffect.training.runs import load_experiment_data
from mmaffect.training.tune import load_space, search_data, search_split

SPACE = """\
train.lr: {loguniform: [1.0e-4, 3.0e-2]}
model_args.hidden: {choice: [16, 64]}
model_args.dropout: {uniform: [0.0, 0.5]}
"""


def test_space_reads_the_three_distributions(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    space = load_space(path)
    assert {k: d.kind for k, d in space.items()} == {"train.lr": "loguniform", "model_args.hidden": "choice",
                                                     "model_args.dropout": "uniform"}
    assert space["train.lr"].values == (1e-4, 3e-2)


@pytest.mark.parametrize("text, problem", [
    ("lr: {choice: [1, 2]}", "must be train.<field> or model_args.<name>"),
    ("train.lr: {normal: [0, 1]}", "give exactly one of choice, uniform, loguniform"),
    ("train.lr: {loguniform: [0, 1]}", "needs 0 < low < high"),
    ("train.lr: {uniform: [1, a]}", "needs [low, high] numbers"),
    ("train.lr: {choice: []}", "needs a list of values"),
    ("- 1", "non-empty mapping"),
])
def test_bad_space_is_a_one_line_error_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=re.escape(problem)) as info:
        load_space(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def meld_manifest(data_dir: Path, path: Path, flip_test: bool = False) -> Path:
    """120 train / 40 valid / 40 test positive-vs-negative MELD rows; optionally every test label flipped."""
    frame = pd.read_csv(data_dir / "meld" / "train_sent_emo.csv")
    rows = frame[frame.Sentiment.isin(["positive", "negative"])].sample(n=200, random_state=1)
    split = np.array(["train"] * 120 + ["valid"] * 40 + ["test"] * 40)
    label = rows.Sentiment.to_numpy().copy()
    if flip_test:
        label[split == "test"] = np.where(label[split == "test"] == "positive", "negative", "positive")
    pd.DataFrame({"id": [f"u{d}_{u}" for d, u in zip(rows.Dialogue_ID, rows.Utterance_ID, strict=True)],
                  "text": rows.Utterance.to_numpy(), "label": label, "split": split}).to_csv(path, index=False)
    return path


def test_search_data_holds_no_test_row(data_dir, tmp_path):
    config = load_config(None, {"dataset": f"manifest:{meld_manifest(data_dir, tmp_path / 'm.csv')}",
                                "model": "text-mlp"})
    data = load_experiment_data(config)
    train, valid, test = search_split(data, config)
    seen = search_data(data, train, valid)
    assert len(seen) == 160 and set(seen.split) == {"train", "valid"}
    assert not set(seen.ids) & set(data.ids[test])
    with pytest.raises(ConfigError, match="cross-validation is not supported"):
        search_split(data, load_config(None, {"dataset": "x", "model": "text-mlp", "cv": {"folds": 3}}))


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024 ** 2)
    yield
    ray.shutdown()


def tune(manifest: Path, space: Path, out: Path) -> dict:
    argv = ["--threads", "1", "tune", str(space), "--dataset", f"manifest:{manifest}", "--model", "text-mlp",
            "--trials", "2", "--epochs", "3", "--seeds", "1", "--concurrent", "1", "--grace-period", "2",
            "--output", str(out), "--quiet"]
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text())


def trials(out: Path) -> list[dict]:
    """Every trial without its Ray id and timings."""
    records = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("trial")
        for epoch in record["history"]:
            epoch.pop("seconds")
    return records


def test_tune_searches_on_validation_only_and_resumes(local_ray, data_dir, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    clean = tune(meld_manifest(data_dir, tmp_path / "clean.csv"), space, tmp_path / "clean")
    poisoned = tune(meld_manifest(data_dir, tmp_path / "poisoned.csv", flip_test=True), space, tmp_path / "poisoned")

    records = trials(tmp_path / "clean")
    assert len(records) == 2 and all(r["epochs"] >= 2 for r in records)
    assert {r["status"] for r in records} <= {"completed", "stopped early by ASHA"}
    # the search never saw a test label: every trial, epoch by epoch, and the choice are identical
    assert trials(tmp_path / "poisoned") == records
    assert {**poisoned["search"], "best_trial": None} == {**clean["search"], "best_trial": None}
    assert poisoned["best"]["valid"] == clean["best"]["valid"]
    # ... while the flipped labels do reach the one test evaluation after it
    assert poisoned["best"]["test"]["acc"]["mean"] == pytest.approx(100 - clean["best"]["test"]["acc"]["mean"])
    best = min(records, key=lambda r: r["best_valid_loss"])
    assert clean["search"]["best"] == best["values"]
    assert clean["best_config"]["search"] == {}

    # a re-run resumes: the search is not repeated and the results are the same
    stamp = (tmp_path / "clean" / "trials.jsonl").stat().st_mtime_ns
    assert tune(tmp_path / "clean.csv", space, tmp_path / "clean") == clean
    assert (tmp_path / "clean" / "trials.jsonl").stat().st_mtime_ns == stamp


def test_bad_tune_runs_are_one_line_errors(data_dir, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    manifest = meld_manifest(data_dir, tmp_path / "m.csv")
    no_split = tmp_path / "nosplit.csv"
    no_split.write_text(manifest.read_text().replace(",split\n", ",part\n", 1))
    cases = [([str(space), "--dataset", f"manifest:{no_split}", "--trials", "2"], "has no train, valid, test split"),
             ([str(space), "--dataset", f"manifest:{manifest}", "--trials", "0"], "--trials must be 1 or more"),
             ([str(tmp_path / "none.yaml"), "--dataset", f"manifest:{manifest}", "--trials", "2"],
              "cannot read the search space")]
    for argv, message in cases:
        assert main(["tune", *argv, "--model", "text-mlp", "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
