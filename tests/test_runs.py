"""Run planning: fixed splits, group k-fold (no group in two of train/valid/test), two-fold carve-outs."""

from __future__ import annotations

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
