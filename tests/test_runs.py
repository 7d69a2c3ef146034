"""Run planning: fixed splits, group k-fold (no group in two of train/valid/test), two-fold carve-outs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmaffect.data import load_dataset
from mmaffect.errors import ConfigError
from mmaffect.training.config import CVConfig, ExperimentConfig
from mmaffect.training.runs import plan_runs


@pytest.fixture(scope="module")
def mosi(data_dir):
    return load_dataset("mosi-bclstm", root=data_dir)


def config(cv=None, seeds=(0,)):
    return ExperimentConfig(dataset="mosi-bclstm", model="tfn", cv=cv, seeds=list(seeds))


def test_fixed_split_one_plan_per_seed(mosi):
    plans = plan_runs(mosi, config(seeds=(0, 1)))
    assert [p.name for p in plans] == ["seed0", "seed1"]
    assert [len(plans[0].train), len(plans[0].valid), len(plans[0].test)] == [1209, 238, 752]


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_group_folds_are_disjoint_and_cover_every_row(mosi, folds):
    plans = plan_runs(mosi, config(CVConfig(folds, "group")))
    assert len(plans) == folds
    tested = np.concatenate([p.test for p in plans])
    assert sorted(tested.tolist()) == list(range(len(mosi)))
    for p in plans:
        parts = [set(p.train), set(p.valid), set(p.test)]
        assert all(not a & b for i, a in enumerate(parts) for b in parts[i + 1:])
        assert not set(mosi.group[p.test]) & set(mosi.group[np.concatenate([p.train, p.valid])])
        if folds > 2:  # with three folds or more, validation is a whole other fold: no shared video
            assert not set(mosi.group[p.valid]) & set(mosi.group[p.train])


def test_too_many_folds_or_missing_groups_are_errors(mosi):
    with pytest.raises(ConfigError, match="no 'speaker' to group folds by"):
        plan_runs(mosi, config(CVConfig(3, "speaker")))
    with pytest.raises(ConfigError, match="at least 2 folds"):
        plan_runs(mosi, config(CVConfig(1, "group")))
    with pytest.raises(ConfigError, match="has no fold column"):
        plan_runs(mosi, config(CVConfig("column", "group")))


def test_runs_of_an_older_config_schema_resume(tmp_path, capsys):
    """Options added to the config after a run was written count as their defaults, so a newer
    mmaffect reads the finished runs back; a run that set one of them otherwise is still refused."""
    from mmaffect.cli import main

    args = ["--threads", "1", "train", "--dataset", "mosi-bclstm", "--model", "lf-dnn", "--epochs", "1", "--quiet",
            "--output", str(tmp_path)]
    assert main(args) == 0
    saved = tmp_path / "config.json"
    identity = json.loads(saved.read_text())
    del identity["search"], identity["train"]["accumulate"]  # as written before these options existed
    saved.write_text(json.dumps(identity))
    result = tmp_path / "seed0" / "result.json"
    written = result.stat().st_mtime_ns
    assert main(args) == 0 and result.stat().st_mtime_ns == written  # read back, not retrained
    identity["train"]["bf16"] = True  # a run that used an option otherwise
    saved.write_text(json.dumps(identity))
    capsys.readouterr()
    assert main(args) == 2 and "another configuration" in capsys.readouterr().err


def test_a_run_folders_config_json_starts_a_new_run(tmp_path):
    """The config.json a training writes (with its data fingerprint) is a valid --config for a new output."""
    from mmaffect.cli import main
    from mmaffect.training.config import load_config

    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["--threads", "1", "train", "--dataset", "mosi-bclstm", "--model", "lf-dnn", "--epochs", "1",
                 "--quiet", "--output", str(first)]) == 0
    saved = first / "config.json"
    assert "data_fingerprint" in saved.read_text()
    assert load_config(saved).to_dict() == {k: v for k, v in json.loads(saved.read_text()).items()
                                            if k != "data_fingerprint"}
    assert main(["--threads", "1", "train", "--config", str(saved), "--quiet", "--output", str(second)]) == 0
    assert json.loads((second / "config.json").read_text()) == json.loads(saved.read_text())
