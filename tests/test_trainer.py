"""The generic trainer on real MOSI features: it learns, selects on validation, and resumes exactly."""

from __future__ import annotations

import math

import pytest
import torch

from mmaffect.data import load_dataset
from mmaffect.data.standardize import Standardizer
from mmaffect.models import create_model
from mmaffect.tasks import make_task
from mmaffect.training.config import TrainConfig
from mmaffect.training.runs import model_spec
from mmaffect.training.trainer import batches, evaluate_rows, fit


@pytest.fixture(scope="module")
def mosi(data_dir):
    data = load_dataset("mosi-bclstm", root=data_dir)
    splits = data.split_indices()
    return Standardizer.fit(data, splits["train"]).apply(data), splits


def build(data, name="lf-dnn", task_spec=None):
    task = make_task(data, task_spec)
    torch.manual_seed(0)
    return create_model(name, model_spec(data, task)), task


def test_batches_cover_rows_once_and_avoid_single_row_tail():
    rows = torch.arange(129)
    got = list(batches(rows, 64, torch.Generator().manual_seed(0)))
    assert [len(b) for b in got] == [64, 65]
    assert sorted(torch.cat(got).tolist()) == list(range(129))


def test_fit_learns_and_selects_on_validation(mosi):
    data, splits = mosi
    model, task = build(data)
    before, _ = evaluate_rows(model, data, splits["test"], task, TrainConfig())
    cfg = TrainConfig(epochs=8, patience=3)
    result = fit(model, data, task, splits["train"], splits["valid"], cfg, seed=0, progress=False)
    assert 1 <= result.best_epoch <= result.epochs_run <= 8
    assert result.best_value == min(h["valid_loss"] for h in result.history)
    model.load_state_dict(result.best_state)
    after, _ = evaluate_rows(model, data, splits["test"], task, cfg)
    assert after["mae"] < before["mae"] and after["acc2_non0"] > 70


def test_classification_and_joint_tasks_train(mosi):
    data, splits = mosi
    for spec, metric in (("classification", "f1_weighted"), ("sentiment+classification", "acc7")):
        model, task = build(data, "ef-mlp", spec)
        cfg = TrainConfig(epochs=3, select=metric)
        fit(model, data, task, splits["train"], splits["valid"], cfg, seed=0, progress=False)
        metrics, pred = evaluate_rows(model, data, splits["test"], task, cfg)
        assert metrics["acc"] > 65 and "prob" in pred
        assert ("acc7" in metrics) == (spec != "classification")


class Crash(RuntimeError):
    pass


def test_interrupted_fit_resumes_to_identical_weights(mosi, tmp_path, monkeypatch):
    data, splits = mosi
    cfg = TrainConfig(epochs=5, patience=10, scheduler="cosine", checkpoint_seconds=0)
    full_model, task = build(data)
    full = fit(full_model, data, task, splits["train"], splits["valid"], cfg, seed=3, progress=False)

    calls = {"n": 0}
    original = type(data).batch

    def crashing_batch(self, index, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 60:  # in the middle of epoch 3 (19 training batches + 1 eval batch per epoch)
            raise Crash
        return original(self, index, *args, **kwargs)

    monkeypatch.setattr(type(data), "batch", crashing_batch)
    model, task = build(data)
    with pytest.raises(Crash):
        fit(model, data, task, splits["train"], splits["valid"], cfg, seed=3, workdir=tmp_path, progress=False)
    assert (tmp_path / "last.safetensors").exists()
    monkeypatch.setattr(type(data), "batch", original)
    model, task = build(data)  # a fresh process would start from scratch weights
    resumed = fit(model, data, task, splits["train"], splits["valid"], cfg, seed=3, workdir=tmp_path,
                  progress=False)
    assert resumed.epochs_run == full.epochs_run and resumed.best_epoch == full.best_epoch
    for key, value in full.best_state.items():
        torch.testing.assert_close(resumed.best_state[key], value, rtol=0, atol=0)
    for key, value in full_model.state_dict().items():  # the last-epoch weights agree too
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    assert [h["valid_loss"] for h in resumed.history] == [h["valid_loss"] for h in full.history]


def test_seeds_are_deterministic_and_differ(mosi):
    data, splits = mosi
    cfg = TrainConfig(epochs=2)
    losses = []
    for seed in (0, 0, 1):
        model, task = build(data)
        torch.manual_seed(seed)
        losses.append(fit(model, data, task, splits["train"], splits["valid"], cfg, seed, progress=False).best_value)
    assert losses[0] == losses[1] and losses[0] != losses[2]
    assert all(math.isfinite(v) for v in losses)


def test_non_finite_loss_is_reported(mosi):
    data, splits = mosi
    model, task = build(data)
    with torch.no_grad():
        model.heads.layers["score"].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite training loss at epoch 1"):
        fit(model, data, task, splits["train"], splits["valid"], TrainConfig(epochs=1), 0, progress=False)
    assert torch.isnan(model.heads.layers["score"].bias.detach()).all()
