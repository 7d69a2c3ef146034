"""Validation search (training/selection.py) and the ``linear`` model: the choice depends on the
training and validation rows only, is recorded, and a linear model fits a separable problem."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.errors import ConfigError
from mmaffect.models.registry import SMALL_TRAIN_ROWS, model_info
from mmaffect.training.checkpoint import load_tensors
from mmaffect.training.config import ExperimentConfig, TrainConfig
from mmaffect.training.runs import RunPlan, run_one
from mmaffect.training.selection import search_space, with_values


def toy(n: int = 160, dim: int = 8, margin: float = 4.0, seed: int = 0) -> AffectDataset:
    """Two Gaussian blobs ``margin`` apart along a random direction, in modality ``a``."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    direction = rng.normal(size=dim)
    x = rng.normal(size=(n, dim)) + np.outer(label - 0.5, margin * direction / np.linalg.norm(direction))
    return AffectDataset(name="toy", ids=np.asarray([f"u{i}" for i in range(n)]),
                         modalities={"a": Modality(torch.tensor(x, dtype=torch.float32))},
                         label=torch.tensor(label), class_names=["neg", "pos"], default_task="classification")


def plan_for(n: int) -> RunPlan:
    rows = np.arange(n)
    return RunPlan(0, None, rows[: n // 2], rows[n // 2: 3 * n // 4], rows[3 * n // 4:])


def config(model: str, **train) -> ExperimentConfig:
    recipe = {**model_info(model).train_defaults, "epochs": 6, "patience": 3, **train}
    return ExperimentConfig(dataset="toy", model=model, train=TrainConfig(**recipe))


def test_linear_learns_a_separable_problem_and_records_its_choice(tmp_path):
    data = toy(margin=8.0)
    recipe = config("linear", epochs=40, patience=40, lr=1e-2)
    record = run_one(recipe, data, plan_for(len(data)), tmp_path, progress=False)
    assert record["test"]["acc"] == 100.0
    saved = json.loads((tmp_path / "result.json").read_text())
    chosen = saved["search"]["chosen"]
    assert set(chosen) == {"train.weight_decay"}
    assert chosen["train.weight_decay"] in model_info("linear").search["train.weight_decay"]
    assert len(saved["search"]["candidates"]) == len(model_info("linear").search["train.weight_decay"])
    # the checkpoint holds the chosen recipe, so the saved model can be rebuilt and audited
    _, meta = load_tensors(tmp_path / "model.safetensors")
    assert meta["train"]["weight_decay"] == chosen["train.weight_decay"]


def test_test_labels_never_change_the_choice(tmp_path):
    """Shuffling and corrupting the test rows' labels leaves the chosen values and every validation
    number identical (the test metrics change, so the test labels did reach the evaluation)."""
    data = toy(margin=1.5)
    plan = plan_for(len(data))
    garbage = data.label.clone()
    shuffled = torch.randperm(len(plan.test), generator=torch.Generator().manual_seed(1))
    garbage[plan.test] = 1 - garbage[plan.test][shuffled]
    corrupted = replace(data, label=garbage)
    runs = [run_one(config("audio-mlp"), d, plan, tmp_path / name, progress=False)
            for name, d in (("clean", data), ("corrupted", corrupted))]
    assert runs[0]["search"] == runs[1]["search"]
    assert runs[0]["valid"] == runs[1]["valid"]
    assert runs[0]["test"]["acc"] != runs[1]["test"]["acc"]
    assert len(runs[0]["search"]["candidates"]) > 1


def test_values_the_user_set_are_kept_and_large_training_sets_skip_the_search():
    mlp = config("audio-mlp")
    assert {"model_args.hidden", "train.weight_decay"} <= set(search_space(mlp, 100))
    assert search_space(mlp, SMALL_TRAIN_ROWS + 1) == {}  # the default recipe suffices on large data
    assert search_space(config("linear"), 10 * SMALL_TRAIN_ROWS)  # the linear penalty is always chosen
    pinned = with_values(config("audio-mlp", weight_decay=0.05), {"model_args.hidden": 32})
    space = search_space(pinned, 100)
    assert "train.weight_decay" not in space and "model_args.hidden" not in space
    assert pinned.model_args == {"hidden": 32} and pinned.train.weight_decay == 0.05


def test_a_model_without_a_search_trains_as_before(tmp_path):
    record = run_one(config("ef-mlp"), toy(), plan_for(160), tmp_path, progress=False)
    assert "search" not in record


def test_search_keys_are_checked():
    from mmaffect.models.base import AffectModel
    from mmaffect.models.registry import register_model

    with pytest.raises(ValueError, match="train.<field> or model_args.<name>"):
        register_model("x", description="", search={"lr": [1e-3]})(AffectModel)
    with pytest.raises(ConfigError, match="train.<field> or model_args.<name>"):
        search_space(replace(config("audio-mlp"), search={"lr": [1e-3]}), 100)


def test_the_config_replaces_or_switches_off_the_search():
    assert search_space(replace(config("audio-mlp"), search={}), 100) == {}
    asked = replace(config("audio-mlp"), search={"train.weight_decay": [0.0, 0.5]})
    assert search_space(asked, 10 * SMALL_TRAIN_ROWS) == {"train.weight_decay": (0.0, 0.5)}


def test_label_tasks_choose_on_validation_ua_and_a_set_select_wins(tmp_path):
    """By default a classification search keeps the candidate with the best validation UA (``wacc``, what
    the small-data tables report), ties going to the lower validation loss; ``train.select`` set to
    another metric is searched on instead."""
    data = toy(margin=1.5)
    search = run_one(config("linear"), data, plan_for(len(data)), tmp_path / "ua", progress=False)["search"]
    assert search["criterion"].startswith("valid wacc")
    best = max(search["candidates"], key=lambda c: (c["valid_wacc"], -c["valid_loss"]))
    assert search["chosen"] == best["values"]
    chosen_by = run_one(config("linear", select="f1_macro"), data, plan_for(len(data)), tmp_path / "f1",
                        progress=False)["search"]
    assert chosen_by["criterion"].startswith("valid f1_macro") and "valid_f1_macro" in chosen_by["candidates"][0]
