"""Config precedence: defaults < model recipe < YAML file < command-line options < --set."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmaffect.errors import ConfigError
from mmaffect.training.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_shipped_configs_load():
    paths = sorted(CONFIGS.glob("*.yaml"))
    assert {"iemocap6-text_text-mlp.yaml", "mosi-bclstm_tfn.yaml"} <= {p.name for p in paths}
    for path in paths:
        config = load_config(path)
        assert f"{config.dataset}_{config.model}.yaml" == path.name  # each file is named after what it trains
        assert config.seeds == [0, 1, 2]
        assert f"--config configs/{path.name}" in path.read_text()  # its header shows how to run it


def test_precedence(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: mosi-bclstm\nmodel: tfn\nseeds: 2\ntrain: {lr: 0.01, patience: 7}\n")
    config = load_config(path)
    assert config.seeds == [0, 1]
    assert config.train.batch_size == 512  # TFN's recipe
    assert config.train.lr == 0.01 and config.train.patience == 7  # the file wins over the recipe
    config = load_config(path, {"seeds": 3, "train.epochs": 4}, ["train.lr=1e-4", "model_args.dropout=0.5",
                                                                 "modalities=t,a"])
    assert config.seeds == [0, 1, 2] and config.train.epochs == 4 and config.train.lr == 1e-4
    assert config.model_args == {"dropout": 0.5} and config.modalities == ["t", "a"]


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="unknown train option lrate"):
        load_config(None, {"dataset": "d", "model": "tfn"}, ["train.lrate=1"])
    with pytest.raises(ConfigError, match="train.optimizer must be one of"):
        load_config(None, {"dataset": "d", "model": "tfn"}, ["train.optimizer=newton"])
    with pytest.raises(ConfigError, match="no model given"):
        load_config(None, {"dataset": "d"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: cannot read config"):
        load_config(bad)


def test_loss_weights_merge_with_the_model_recipe():
    """Setting one loss weight keeps the model's other recipe weights (they are a mapping, merged by key)."""
    config = load_config(None, {"dataset": "mosi-bclstm", "model": "semanticmac"},
                         ["train.loss_weights.sccl_intra=0.5"])
    assert config.train.loss_weights == {"sccl_intra": 0.5, "sccl_inter": 0.1}
