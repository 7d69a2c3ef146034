"""The training engine: batches chosen by what a model needs (tokens, dialogues), model hooks
(parameter groups, several optimizers, custom steps, end-of-epoch updates), gradient accumulation
and per-step schedules. Real MOSI features where the trainer runs; small hand-made datasets where a
layout is checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mmaffect.data import load_dataset
from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.data.standardize import Standardizer
from mmaffect.models import create_model
from mmaffect.models.base import AffectModel, EpochState, Heads, ModelSpec
from mmaffect.models.registry import model_info
from mmaffect.tasks import make_task
from mmaffect.training.config import TrainConfig
from mmaffect.training.runs import model_spec
from mmaffect.training.trainer import Feeder, StepSchedule, _optimizers, evaluate_rows, fit, predict_outputs


@pytest.fixture(scope="module")
def mosi(data_dir):
    data = load_dataset("mosi-bclstm", root=data_dir)
    splits = data.split_indices()
    return Standardizer.fit(data, splits["train"]).apply(data), splits


def tiny_dialogues() -> AffectDataset:
    """Two dialogues whose rows are stored out of turn order, with named speakers and text."""
    return AffectDataset(
        name="tiny", ids=np.array([f"u{i}" for i in range(7)]),
        modalities={"t": Modality(torch.arange(14, dtype=torch.float32).reshape(7, 2))},
        label=torch.tensor([0, 1, 0, 1, 0, 1, 0]), class_names=["a", "b"],
        dialogue_id=np.array(["d2", "d1", "d1", "d2", "d1", "d2", "d2"]),
        utt_index=np.array([1, 2, 0, 0, 1, 3, 2]),
        speaker=np.array(["zoe", "bob", "amy", "ann", "amy", "zoe", "ann"]),
        text=np.array(["hello there", "no", "why not then my friend", "ok", "sure", "fine", "yes indeed"]))


def test_dialogue_table_groups_rows_in_turn_order():
    data = tiny_dialogues()
    table = data.dialogue_table(np.arange(7))
    # d2 comes first (its first row is row 0); turns by utt_index; -1 pads the shorter dialogue
    assert table.tolist() == [[3, 0, 6, 5], [2, 4, 1, -1]]
    assert data.dialogue_table(np.array([1, 4])).tolist() == [[4, 1]]  # only the given rows


def test_dialogue_batch_layout_and_speaker_codes():
    data = tiny_dialogues()
    batch = data.dialogue_batch(data.dialogue_table(np.arange(7)))
    assert batch["turn_mask"].tolist() == [[True] * 4, [True, True, True, False]]
    assert batch["index"].tolist() == [3, 0, 6, 5, 2, 4, 1]  # dialogue by dialogue, turn by turn
    torch.testing.assert_close(batch["t_dlg"][batch["turn_mask"]], data.modalities["t"].vector[batch["index"]])
    assert batch["t_dlg"][1, 3].abs().sum() == 0
    assert batch["label"].tolist() == data.label[batch["index"]].tolist()
    # d2 turns: ann, zoe, ann, zoe -> 0 1 0 1; d1 turns: amy, amy, bob -> 0 0 1
    assert batch["speaker_ids"].tolist() == [[0, 1, 0, 1], [0, 0, 1, 0]]


def test_token_ids_are_computed_once_cut_per_batch_and_follow_take():
    data = tiny_dialogues()
    ids = data.tokenize("minilm", 16)
    assert data.tokenize("minilm", 16) is ids  # cached on the dataset
    assert ids.lengths.tolist()[1] == 3  # [CLS] no [SEP]
    batch = data.batch(torch.tensor([1, 3]), {"tokens"}, "minilm@16")
    assert batch["t_tokens"].shape == (2, 3) and batch["t_tokens"].dtype == torch.int64
    assert batch["t_tokens_mask"].all()
    sub = data.take([2, 1])
    assert sub.tokens["minilm@16"].ids[1].tolist() == ids.ids[1].tolist()
    assert "t_seq" not in data.batch(torch.tensor([1]), {"vectors"})


def test_rows_of_a_dataset_without_text_or_dialogues_are_refused(mosi):
    data, splits = mosi
    with pytest.raises(Exception, match="no raw text"):
        Feeder(data, create_model("text-finetune", model_spec(data, make_task(data))), splits["train"])
    no_dialogues = AffectDataset(name="flat", ids=data.ids, modalities=data.modalities, score=data.score)
    with pytest.raises(Exception, match="no dialogue ids"):
        Feeder(no_dialogues, create_model("bc-lstm", model_spec(data, make_task(data))), splits["train"])


def test_token_batches_are_bucketed_but_cover_every_row_once():
    data = tiny_dialogues()
    model = create_model("text-finetune", ModelSpec({"t": 2}, {}, {"logits": 2}), max_tokens=16)
    feeder = Feeder(data, model, np.arange(7))
    parts = feeder.epoch(feeder.units, 2, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(parts).tolist()) == list(range(7))


def test_text_finetune_puts_encoder_and_head_in_separate_groups():
    model = create_model("text-finetune", ModelSpec({"t": 384}, {}, {"logits": 3}), encoder_lr=2e-5)
    cfg = TrainConfig(optimizer="adamw", lr=1e-3)
    (optimizer,) = _optimizers(model, cfg)
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert lrs == [2e-5, 1e-3]
    n_encoder = sum(p.numel() for p in optimizer.param_groups[0]["params"])
    assert n_encoder > 20_000_000 and sum(p.numel() for p in optimizer.param_groups[1]["params"]) == 384 * 3 + 3
    assert model_info("text-finetune").needs == frozenset({"tokens"})


def test_accumulating_k_batches_of_b_equals_one_batch_of_k_times_b(mosi):
    data, splits = mosi
    train = splits["train"][:600]
    task = make_task(data)
    states = []
    for batch_size, accumulate in ((60, 1), (15, 4)):
        torch.manual_seed(0)
        model = create_model("text-mlp", model_spec(data, task), dropout=0.0)
        # SGD keeps float rounding where it is (Adam's division by tiny second moments magnifies it)
        cfg = TrainConfig(epochs=3, batch_size=batch_size, accumulate=accumulate, scheduler="linear",
                          warmup_ratio=0.2, patience=10, optimizer="sgd", lr=0.01)
        result = fit(model, data, task, train, splits["valid"], cfg, seed=0, progress=False)
        states.append((model.state_dict(), result.history))
    (big, big_history), (small, small_history) = states
    assert [h["train_loss"] for h in small_history] == pytest.approx([h["train_loss"] for h in big_history], rel=1e-6)
    assert small_history[-1]["train_loss"] < small_history[0]["train_loss"]
    for key, value in big.items():
        torch.testing.assert_close(small[key], value, rtol=1e-5, atol=1e-6)


def test_step_schedule_warms_up_then_decays_per_step():
    cfg = TrainConfig(epochs=2, scheduler="linear", warmup_ratio=0.25)
    schedule = StepSchedule(cfg, steps_per_epoch=4)  # 8 steps, 2 of warm-up
    factors = [schedule.factor(s) for s in range(8)]
    assert factors[:3] == [0.5, 1.0, 1.0] and factors[-1] == pytest.approx(1 / 6)
    assert all(a > b for a, b in zip(factors[2:], factors[3:], strict=False))
    cosine = StepSchedule(TrainConfig(epochs=1, scheduler="cosine"), steps_per_epoch=5)
    assert cosine.factor(0) == 1.0 and cosine.factor(4) < 0.1
    assert StepSchedule(TrainConfig(epochs=1, scheduler="plateau"), 5).factor(3) is None


class TwoOptimizerProbe(AffectModel):
    """A model using every hook: two optimizers, its own step, and a buffer updated at epoch end."""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.body = nn.Sequential(nn.Dropout(0.2), nn.Linear(spec.dims["t"], 8), nn.ReLU())
        self.heads = Heads(8, spec.heads)
        self.register_buffer("memory", torch.zeros(8))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.lrs: list[float] = []

    def forward(self, batch):
        h = self.body(batch["t"])
        return {**self.heads(h), "features": h}

    def configure_optimizers(self, cfg):
        self.optimizers = [torch.optim.Adam(self.body.parameters(), lr=cfg.lr),
                           torch.optim.SGD(self.heads.parameters(), lr=0.01)]
        return self.optimizers

    def training_step(self, batch, task):
        self.lrs.append(self.optimizers[0].param_groups[0]["lr"])
        outputs = self(batch)
        pull = (outputs["features"].mean(0) - self.memory).pow(2).sum()
        return {"score": task.losses(outputs, batch)["score"], "memory": 0.01 * pull}

    def on_epoch_end(self, state: EpochState):
        features = state.outputs(state.train_rows)["features"]
        assert features.shape == (len(state.train_rows), 8)
        self.memory.mul_(0.5).add_(0.5 * features.mean(0))
        self.updates += 1


def test_hooks_two_optimizers_epoch_end_and_exact_resume(mosi, tmp_path, monkeypatch):
    data, splits = mosi
    data = data.with_modalities(["t"])
    task = make_task(data)
    spec = model_spec(data, task)
    cfg = TrainConfig(epochs=4, patience=10, scheduler="cosine", warmup_epochs=1, checkpoint_seconds=0, lr=3e-3)

    torch.manual_seed(0)
    full = TwoOptimizerProbe(spec)
    before = {k: v.clone() for k, v in full.state_dict().items()}
    result = fit(full, data, task, splits["train"], splits["valid"], cfg, seed=1, progress=False)
    assert int(full.updates) == 4 and full.memory.abs().sum() > 0
    assert not torch.equal(full.heads.layers["score"].weight, before["heads.layers.score.weight"])  # SGD stepped
    steps = len(full.lrs) // 4
    assert full.lrs[0] == pytest.approx(3e-3 / steps)  # warm-up starts small, per step
    assert full.lrs[steps - 1] == pytest.approx(3e-3) and full.lrs[-1] < 3e-4  # then cosine to ~0

    calls = {"n": 0}
    original = type(data).batch

    def crashing_batch(self, index, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 * (steps + 2) + steps // 2:  # inside epoch 3 (epoch end: 1 train + 1 valid eval batch)
            raise RuntimeError("crash")
        return original(self, index, *args, **kwargs)

    monkeypatch.setattr(type(data), "batch", crashing_batch)
    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="crash"):
        fit(TwoOptimizerProbe(spec), data, task, splits["train"], splits["valid"], cfg, seed=1, workdir=tmp_path,
            progress=False)
    monkeypatch.setattr(type(data), "batch", original)
    torch.manual_seed(0)
    resumed = TwoOptimizerProbe(spec)
    again = fit(resumed, data, task, splits["train"], splits["valid"], cfg, seed=1, workdir=tmp_path,
                progress=False)
    assert [h["valid_loss"] for h in again.history] == [h["valid_loss"] for h in result.history]
    for key, value in full.state_dict().items():  # weights and the epoch-end buffers
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_bc_lstm_trains_on_whole_videos_and_predicts_in_row_order(mosi):
    data, splits = mosi
    task = make_task(data)
    torch.manual_seed(0)
    model = create_model("bc-lstm", model_spec(data, task))
    cfg = TrainConfig(epochs=6, batch_size=4)
    before, _ = evaluate_rows(model, data, splits["test"], task, cfg)
    fit(model, data, task, splits["train"], splits["valid"], cfg, seed=0, progress=False)
    after, _ = evaluate_rows(model, data, splits["test"], task, cfg)
    assert after["mae"] < before["mae"] and after["acc2_non0"] > 65
    rows = np.random.default_rng(0).permutation(splits["test"])
    shuffled = predict_outputs(model, data, rows, batch_size=5)["score"]
    ordered = predict_outputs(model, data, np.sort(rows))["score"]
    torch.testing.assert_close(shuffled[np.argsort(rows)], ordered)  # same dialogues, any row order


def test_bf16_autocast_trains(mosi):
    data, splits = mosi
    task = make_task(data)
    torch.manual_seed(0)
    model = create_model("bc-lstm", model_spec(data, task))
    cfg = TrainConfig(epochs=2, batch_size=8, bf16=True)
    result = fit(model, data, task, splits["train"], splits["valid"], cfg, seed=0, progress=False)
    assert all(np.isfinite(h["valid_loss"]) for h in result.history)
    assert next(model.parameters()).dtype == torch.float32  # weights stay float32; only the forward is bf16
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
