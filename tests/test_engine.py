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
from mmaffect.data.dataset import AffectDataset, FrameSequences, Modality
from mmaffect.data.standardize import Standardizer
from mmaffect.errors import ConfigError
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
    no_text = AffectDataset(name="vectors", ids=data.ids, modalities=data.modalities, score=data.score)
    with pytest.raises(Exception, match="no raw text"):  # mosi-bclstm itself now keeps its transcripts
        Feeder(no_text, create_model("text-finetune", model_spec(data, make_task(data))), splits["train"])
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


def test_optional_sequences_serve_vector_only_and_sequence_data():
    """``needs`` "sequences?": one registered name trains on sequence data and on vector-only corpora;
    a strict "sequences" model is still refused where a modality has only vectors."""
    for name in ("int2-m3ap", "st3dh", "deepmsi-mer"):
        info = model_info(name)
        assert "sequences?" in info.needs and info.input_form == "sequence"  # readers load what they have
        assert not name.endswith("-vec")
    vectors_only = ModelSpec(dims={"t": 4, "a": 3, "v": 2}, seq_dims={}, heads={"score": 1})
    model = create_model("st3dh", vectors_only, max_len=1, dim=4, hidden=4)
    batch = {"t": torch.randn(3, 4), "a": torch.randn(3, 3), "v": torch.randn(3, 2)}
    assert model(batch)["score"].shape == (3,)
    with pytest.raises(ConfigError, match="needs sequences"):
        create_model("ef-lstm", vectors_only)
    data = AffectDataset(name="mixed", ids=np.array(["a", "b"]), modalities={
        "t": Modality.from_sequence(torch.ones(2, 3, 4), torch.tensor([3, 1])), "a": Modality(torch.zeros(2, 3))})
    batch = data.batch(torch.tensor([1, 0]), {"vectors", "sequences?"})
    assert batch["t_seq"].shape == (2, 3, 4) and batch["t_mask"].tolist() == [[True, False, False], [True] * 3]
    assert "a_seq" not in batch and "t_seq" not in data.batch(torch.tensor([0]), {"vectors"})


def frames_dataset(calls: list) -> AffectDataset:
    """Three rows whose face crops (2, 3 and 1 frames of constant grey levels) come from a counting loader."""
    lengths = torch.tensor([2, 3, 1])

    def loader(ids: np.ndarray) -> FrameSequences:
        calls.append(list(ids))
        rows = {"r0": [10, 20], "r1": [30, 40, 255], "r2": [50]}
        frames = torch.zeros(len(ids), 3, 4, 4, dtype=torch.uint8)
        for i, row in enumerate(ids):
            for k, level in enumerate(rows[str(row)]):
                frames[i, k] = level
        return FrameSequences(frames, torch.tensor([len(rows[str(r)]) for r in ids]))

    return AffectDataset(name="faces", ids=np.array(["r0", "r1", "r2"]),
                         modalities={"v": Modality.from_sequence(torch.randn(3, 3, 2), lengths)},
                         label=torch.tensor([0, 1, 0]), class_names=["x", "y"], frame_loader=loader)


def test_face_frames_are_read_on_first_need_once_and_batched_as_floats():
    calls: list = []
    data = frames_dataset(calls)
    plain = data.batch(torch.tensor([0, 1]), {"vectors", "sequences"})
    assert "v_frames" not in plain and calls == []  # a model without "frames" never reads them
    view = Standardizer.fit(data, np.arange(3)).apply(data)  # a view with the same rows shares the crops
    batch = view.batch(torch.tensor([2, 0]), {"vectors", "frames"})
    assert calls == [["r0", "r1", "r2"]]
    assert batch["v_frames"].dtype == torch.float32 and batch["v_frames"].shape == (2, 2, 4, 4)
    assert batch["v_frames_mask"].tolist() == [[True, False], [True, True]]
    torch.testing.assert_close(batch["v_frames"][:, :, 0, 0], torch.tensor([[50, 0], [10, 20]]) / 255.0)
    assert data.face_frames().frames.dtype == torch.uint8 and calls == [["r0", "r1", "r2"]]
    taken = data.take([1])  # loaded crops follow take()
    assert taken.face_frames().lengths.tolist() == [3] and len(calls) == 1
    assert taken.batch(torch.tensor([0]), {"frames"})["v_frames"][0, 2, 0, 0] == 1.0
    unloaded = frames_dataset(calls).take([2, 1])  # not loaded yet: the view reads its own rows
    assert unloaded.face_frames().lengths.tolist() == [1, 3] and calls[-1] == ["r2", "r1"]


def test_models_that_need_face_crops_say_so_and_train_on_them():
    calls: list = []
    data = frames_dataset(calls)
    spec = ModelSpec(dims={"v": 2}, seq_dims={"v": 2}, heads={"logits": 2})
    st3dh = create_model("st3dh", spec, video_frames=True, video_channels=(2,), dim=4, max_len=3, hidden=4)
    int2 = create_model("int2-m3ap", spec, image="crops", image_channels=(2,))
    assert "frames" in st3dh.needs and "frames" in int2.needs
    assert "frames" not in create_model("st3dh", spec).needs and "frames" not in model_info("st3dh").needs
    task = make_task(data)
    for model in (st3dh, int2):
        result = fit(model, data, task, np.array([0, 1]), np.array([2]), TrainConfig(epochs=1, batch_size=2),
                     seed=0, progress=False)
        assert np.isfinite(result.history[0]["train_loss"])
    assert len(calls) == 1
    bare = AffectDataset(name="no-crops", ids=data.ids, modalities=data.modalities, label=data.label,
                         class_names=data.class_names)
    with pytest.raises(ConfigError, match="no-crops keeps no face crops"):
        Feeder(bare, st3dh, np.arange(3))


def test_cache_reader_exposes_the_extracted_face_crops(tmp_path):
    """Two generated face videos through `mmaffect extract`: the `cache:` dataset reads their 48x48 crops
    only when asked, one per sampled frame, i.e. one per visual step of the default grid."""
    try:
        import media_factory as mf
    except ModuleNotFoundError:  # tests/ imported as a package
        from tests import media_factory as mf
    from mmaffect.data.cache import load_cache
    from mmaffect.extraction.pipeline import ExtractItem, extract

    items = [ExtractItem(f"clip{i}", mf.face_video(tmp_path / f"clip{i}.mp4", seconds=s), text="hello there",
                         meta={"label": "hap" if i else "sad"}) for i, s in enumerate((1.0, 2.0))]
    extract(items, tmp_path / "cache", workers=1, progress=False)
    data = load_cache(str(tmp_path / "cache"), sequences=True)
    assert data.frames == {} and data.frame_loader is not None
    crops = data.face_frames()
    assert crops.frames.dtype == torch.uint8 and crops.frames.shape[2:] == (48, 48)
    assert crops.lengths.tolist() == data.modalities["v"].lengths.tolist() and crops.lengths.tolist()[0] >= 2
    assert crops.lengths[1] > crops.lengths[0] and crops.frames[0, 0].float().std() > 5  # a face, not a blank


def test_lbfgs_reaches_the_penalised_optimum_of_logistic_regression(mosi):
    """Full-batch L-BFGS on ``linear`` solves the problem scikit-learn's LogisticRegression solves.

    Binary case: sklearn minimises mean CE(v) + ||v||^2 / (2 C n) over one weight vector v; our softmax
    has two rows w0, w1 with v = w1 - w0, each decayed by wd, and at the optimum w0 = -w1 = -v/2, so
    the penalty is wd ||v||^2 / 4: the two agree at wd = 2 / (C n). Biases are not penalised in either.
    """
    from sklearn.linear_model import LogisticRegression

    mosi_data, splits = mosi
    rows = np.concatenate([splits["train"][:400], splits["valid"]])
    x = mosi_data.modalities["t"].vector[rows]
    y = (mosi_data.score[rows] >= 0).long()
    data = AffectDataset(name="mosi-binary", ids=mosi_data.ids[rows], modalities={"t": Modality(x)}, label=y,
                         class_names=["negative", "positive"])
    train, valid = np.arange(400), np.arange(400, len(rows))
    task = make_task(data)
    c = 0.05
    reference = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(x[train].numpy(), y[train].numpy())
    model = create_model("linear", model_spec(data, task))
    cfg = TrainConfig(epochs=1, batch_size=len(train), optimizer="lbfgs", weight_decay=2 / (c * len(train)))
    fit(model, data, task, train, valid, cfg, seed=0, progress=False)
    layer = model.heads.layers["logits"]
    v, b = (layer.weight[1] - layer.weight[0]).detach(), float((layer.bias[1] - layer.bias[0]).detach())
    np.testing.assert_allclose(v.numpy(), reference.coef_[0], atol=1e-3)
    assert b == pytest.approx(reference.intercept_[0], abs=1e-3)


def test_lbfgs_refuses_mini_batches(mosi):
    data, splits = mosi
    task = make_task(data)
    model = create_model("linear", model_spec(data, task))
    cfg = TrainConfig(epochs=1, batch_size=64, optimizer="lbfgs")
    with pytest.raises(ConfigError, match="batch_size >= "):
        fit(model, data, task, splits["train"], splits["valid"], cfg, seed=0, progress=False)
