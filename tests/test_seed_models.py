"""The seed models MRE and SemanticMAC: masking, outputs, every ablation switch, SCLG hook, groups.

The registry-wide smoke tests (forward/backward, every parameter gets a gradient) are in
tests/test_models.py; these check what is specific to the two methods.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from mmaffect.models import ModelSpec, create_model

DIMS = {"t": 6, "a": 5, "v": 4}
SMALL = {"dim": 16, "heads": 2, "tokens": 3, "perceiver_layers": 1, "sgfi_layers": 1, "bridges": 2}


def spec_for(heads=None, sequences=True) -> ModelSpec:
    return ModelSpec(dims=dict(DIMS), seq_dims=dict(DIMS) if sequences else {}, heads=heads or {"score": 1})


def make_batch(size: int = 6, length: int = 4, seed: int = 0, heads=None) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    batch = {"index": torch.arange(size), "score": torch.randn(size, generator=gen) * 2}
    if heads and "logits" in heads:
        batch["label"] = torch.randint(heads["logits"], (size,), generator=gen)
    for m, d in DIMS.items():
        lengths = torch.randint(1, length + 1, (size,), generator=gen)
        lengths[0] = length
        mask = torch.arange(length)[None, :] < lengths[:, None]
        batch[f"{m}_seq"] = torch.randn(size, length, d, generator=gen) * mask[..., None]
        batch[f"{m}_mask"] = mask
        batch[m] = batch[f"{m}_seq"].sum(1) / lengths[:, None]
    return batch


def pad_more(batch: dict[str, torch.Tensor], extra: int = 3) -> dict[str, torch.Tensor]:
    """The same batch with ``extra`` more padded steps full of junk."""
    out = dict(batch)
    for m in DIMS:
        seq, mask = batch[f"{m}_seq"], batch[f"{m}_mask"]
        junk = torch.full((seq.shape[0], extra, seq.shape[2]), 37.0)
        out[f"{m}_seq"] = torch.cat([seq, junk], 1)
        out[f"{m}_mask"] = torch.cat([mask, torch.zeros(seq.shape[0], extra, dtype=torch.bool)], 1)
    return out


def build(name: str, heads=None, sequences=True, seed: int = 0, **kw):
    torch.manual_seed(seed)
    args = dict(SMALL, **kw) if name == "semanticmac" else kw
    return create_model(name, spec_for(heads, sequences), **args)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["mre", "semanticmac"])
def test_padded_steps_change_nothing(name):
    model = build(name).eval()
    batch = make_batch()
    with torch.no_grad():
        a, b = model(batch), model(pad_more(batch))
        junk_as_real = pad_more(batch)
        junk_as_real["t_mask"] = torch.ones_like(junk_as_real["t_mask"])
        c = model(junk_as_real)
    for key in ("score", "rep_t"):
        assert torch.allclose(a[key], b[key], atol=1e-5)
    assert not torch.allclose(a["rep_t"], c["rep_t"], atol=1e-3)  # the mask is what hides the junk


@pytest.mark.parametrize("name", ["mre", "semanticmac"])
def test_vector_only_datasets_work(name):
    """Without sequences each modality is one step (SemanticMAC) / its utterance vector (MRE)."""
    model = build(name, sequences=False).eval()
    batch = {k: v for k, v in make_batch().items() if not k.endswith(("_seq", "_mask"))}
    assert model(batch)["score"].shape == (6,)


def test_mre_relevance_output():
    model = build("mre", heads={"logits": 3}).eval()
    out = model(make_batch(heads={"logits": 3}))
    assert out["relevance"].shape == (6, 3)
    assert torch.allclose(out["relevance"].sum(1), torch.ones(6))
    assert (out["relevance"] > 0).all()


def test_mre_switches_remove_their_component():
    full = build("mre", heads={"logits": 3})
    batch = make_batch(heads={"logits": 3})
    terms = full.extra_losses(full(batch), batch)
    assert set(terms) == {"rs", "cnce"}
    no_rel = build("mre", heads={"logits": 3}, relevance=False)
    assert n_params(no_rel) < n_params(full) and "relevance" not in no_rel(batch)
    no_rs = build("mre", heads={"logits": 3}, rs=False)
    assert n_params(no_rs) < n_params(full) and set(no_rs.extra_losses(no_rs(batch), batch)) == {"cnce"}
    no_nce = build("mre", heads={"logits": 3}, cnce=False)
    assert set(no_nce.extra_losses(no_nce(batch), batch)) == {"rs"}


def test_mre_relevance_weights_the_modality_losses():
    """L_rs = Σ_s mean (1 + H_s) CE_s + mean CE_m, recomputed by hand from the outputs."""
    import torch.nn.functional as F

    model = build("mre", heads={"logits": 3})
    batch = make_batch(heads={"logits": 3})
    out = model(batch)
    ce = torch.stack([F.cross_entropy(out["unimodal_logits"][:, i], batch["label"], reduction="none")
                      for i in range(3)], 1)
    expected = ((1 + out["weights"]) * ce).sum(1).mean() + F.cross_entropy(out["bag_logits"], batch["label"])
    assert torch.allclose(model.extra_losses(out, batch)["rs"], expected)
    detached = build("mre", heads={"logits": 3}, detach_relevance=True)
    out = detached(batch)
    detached.extra_losses(out, batch)["rs"].backward()
    assert all(p.grad is None for p in detached.m1.parameters())  # only the fused loss would reach M1


SWITCHES = [  # (model_args, what must change: "params" or "output")
    ({"frame_embedding": False}, "params"),
    ({"perceiver_norm": False}, "params"),
    ({"perceiver_residual": False}, "output"),
    ({"modality_embedding": False}, "params"),
    ({"multi_query": False}, "params"),
    ({"bridge": False}, "output"),
    ({"gate": "none"}, "params"),
    ({"gate": "reglu"}, "params"),
    ({"multitask": False}, "params"),
]


@pytest.mark.parametrize(("args", "changes"), SWITCHES, ids=lambda x: str(x))
def test_semanticmac_architecture_switches(args, changes):
    full, ablated = build("semanticmac").eval(), build("semanticmac", **args).eval()
    if changes == "params":
        assert n_params(ablated) != n_params(full)
    else:
        assert n_params(ablated) == n_params(full)
        batch = make_batch()
        with torch.no_grad():
            assert not torch.allclose(full(batch)["score"], ablated(batch)["score"])


def test_semanticmac_loss_switches():
    batch = make_batch()

    def terms(**kw):
        model = build("semanticmac", **kw)
        return set(model.extra_losses(model(batch), batch))

    subtasks = {"subtask_c", "subtask_t", "subtask_a", "subtask_v"}
    assert terms() == subtasks | {"sccl_intra", "sccl_inter"}
    assert terms(sccl=False) == subtasks
    assert terms(intra=False) == subtasks | {"sccl_inter"}
    assert terms(inter=False) == subtasks | {"sccl_intra"}
    assert terms(multitask=False) == {"sccl_intra", "sccl_inter"}
    assert build("semanticmac", sclg=False).sclg is None
    assert not any("__" in name for name, _ in build("semanticmac", sclg=False).named_buffers())


@dataclass
class ToyData:
    score: torch.Tensor
    label: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.score)


@dataclass
class ToyState:
    epoch: int
    data: ToyData
    train_rows: np.ndarray
    outputs: object


@pytest.mark.parametrize("heads", [{"score": 1}, {"logits": 3}])
def test_sclg_hook_updates_pseudo_labels_and_they_are_used(heads):
    model = build("semanticmac", heads=heads, start_epoch=2, knn=3)
    full = make_batch(size=10, heads=heads, seed=3)
    data = ToyData(score=full["score"], label=full.get("label"))
    rows = np.array([0, 2, 3, 5, 6, 7, 8])

    def outputs(r):
        idx = torch.as_tensor(r)
        with torch.no_grad():
            return model.eval()({k: v[idx] for k, v in full.items()})

    batch = {k: v[torch.as_tensor(rows)] for k, v in full.items()}
    model.train()
    before = model.extra_losses(model(batch), batch)["subtask_t"]
    model.on_epoch_end(ToyState(1, data, rows, outputs))  # epoch 1 < start_epoch: still y_m
    assert int(model.sclg.updates) == 0
    model.on_epoch_end(ToyState(2, data, rows, outputs))
    assert int(model.sclg.updates) == 1
    head = next(iter(heads))
    labels = model.sclg.labels("t", head)
    assert labels.shape[0] == 10 and labels[rows].abs().sum() > 0 and labels[[1, 4, 9]].abs().sum() == 0
    torch.manual_seed(5)
    after = model.extra_losses(model(batch), batch)["subtask_t"]
    assert not torch.allclose(before, after)
    # the labels are buffers: a fresh model loading the state dict gets them (checkpoint/resume)
    fresh = build("semanticmac", heads=heads, start_epoch=2, knn=3, seed=1)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.sclg.labels("t", head), labels)


def test_sclg_off_trains_subtasks_on_ground_truth():
    model = build("semanticmac", sclg=False)
    model.on_epoch_end(ToyState(5, ToyData(score=torch.zeros(6)), np.arange(6), None))  # a no-op
    batch = make_batch()
    out = model(batch)
    expected = (out["sub_t_score"] - batch["score"]).abs().mean()
    assert torch.allclose(model.extra_losses(out, batch)["subtask_t"], expected)


def test_semanticmac_text_parameter_group():
    model = build("semanticmac")
    assert len(model.param_groups(None)) == 1
    model = build("semanticmac", text_lr=4e-5)
    groups = model.param_groups(None)
    assert groups[0]["lr"] == 4e-5
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.text.parameters()}


def test_single_modality_has_no_shared_path():
    spec = ModelSpec(dims={"a": 5}, seq_dims={"a": 5}, heads={"score": 1})
    model = create_model("semanticmac", spec, **SMALL)
    batch = make_batch()
    terms = model.extra_losses(model(batch), batch)
    assert set(terms) == {"subtask_a", "sccl_inter"}


def test_semanticmac_minilm_text_branch_reads_tokens_with_its_own_rate():
    """``text_encoder=minilm``: the packaged MiniLM reads the engine's token batches (padding word
    pieces change nothing), its pretrained weights form their own group at the paper's 4e-5 and the
    new projection learns at the common rate."""
    from mmaffect.features.text import token_ids
    from mmaffect.models import model_info

    spec = ModelSpec(dims={"t": 384, "a": 5}, seq_dims={}, heads={"score": 1})
    torch.manual_seed(0)
    model = create_model("semanticmac", spec, text_encoder="minilm", max_tokens=16, **SMALL)
    assert model.needs == {"vectors", "sequences?", "tokens"} and (model.tokenizer, model.max_tokens) == ("minilm", 16)
    assert model_info("semanticmac").needs == {"vectors", "sequences?"}  # the local branch needs no tokens
    ids, lengths = token_ids(["I am so happy today", "this is awful"], "minilm", 16)
    batch = {"index": torch.arange(2), "score": torch.tensor([2.0, -2.0]), "t": torch.randn(2, 384),
             "a": torch.randn(2, 5), "t_tokens": ids, "t_tokens_mask": torch.arange(ids.shape[1]) < lengths[:, None]}
    padded = dict(batch, t_tokens=torch.cat([ids, torch.zeros(2, 3, dtype=ids.dtype)], 1),
                  t_tokens_mask=torch.cat([batch["t_tokens_mask"], torch.zeros(2, 3, dtype=torch.bool)], 1))
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(batch)["score"], model(padded)["score"], atol=1e-5)
    model.train()
    out = model(batch)
    (out["score"].sum() + sum(model.extra_losses(out, batch).values())).backward()
    encoder = list(model.text.encoder.parameters())
    assert all(p.grad is not None for p in encoder)
    groups = model.param_groups(None)
    assert groups[0]["lr"] == 4e-5 and {id(p) for p in groups[0]["params"]} == {id(p) for p in encoder}
    rest = {id(p) for p in groups[1]["params"]}
    assert "lr" not in groups[1] and {id(p) for p in model.text.project.parameters()} <= rest
    slower = create_model("semanticmac", spec, text_encoder="minilm", text_lr=1e-5, **SMALL)
    assert slower.param_groups(None)[0]["lr"] == 1e-5


def test_semanticmac_rejects_an_unknown_text_encoder():
    from mmaffect.errors import ConfigError

    with pytest.raises(ConfigError, match="text_encoder"):
        build("semanticmac", text_encoder="bert")


def test_mre_relevance_weights_are_in_predictions_and_are_analyze_contributions(data_dir, tmp_path):
    """An MRE checkpoint trained through the CLI: the predictions file carries each row's relevance
    weights (summing to 1), and the contributions `analyze` reports for it are those weights (source
    "relevance"), not modality-ablation deltas."""
    import pandas as pd

    from mmaffect.analysis import _predict
    from mmaffect.cli import main
    from mmaffect.data import load_dataset
    from mmaffect.inference import load_model

    out = tmp_path / "mre"
    assert main(["--threads", "1", "train", "--quiet", "--dataset", "mosi-bclstm", "--model", "mre", "--task",
                 "binary", "--epochs", "2", "--output", str(out)]) == 0
    pred = pd.read_csv(out / "seed0" / "predictions.csv")
    weights = pred[["relevance_t", "relevance_a", "relevance_v"]].to_numpy()
    assert np.allclose(weights.sum(1), 1, atol=1e-5) and (weights > 0).all()
    loaded = load_model(out / "seed0" / "model.safetensors")
    data = load_dataset("mosi-bclstm")
    rows = np.flatnonzero(data.split == "test")[:20]
    probs, contributions, source = _predict([loaded], data.take(rows))
    with torch.no_grad():
        own = loaded.model.eval()(loaded.prepare(data.take(rows), "test").batch(torch.arange(20)))["relevance"]
    assert source == "relevance" and np.allclose(contributions, own.numpy(), atol=1e-6)
    test = pred[pred.split == "test"].set_index("id").loc[data.ids[rows]]
    assert np.allclose(test[["relevance_t", "relevance_a", "relevance_v"]].to_numpy(), own.numpy(), atol=1e-5)


def test_mre_text_sequence_switch_falls_back_to_the_text_vector():
    """With token features the text goes through the LSTM; ``text_sequence=false`` uses the vector."""
    batch = make_batch()
    lstm, vector = build("mre"), build("mre", text_sequence=False)
    assert isinstance(lstm.encoders["t"], torch.nn.Module) and hasattr(lstm.encoders["t"], "lstm")
    assert not hasattr(vector.encoders["t"], "lstm")
    vector.eval()
    with torch.no_grad():
        junk = dict(batch, t_seq=torch.randn_like(batch["t_seq"]))
        assert torch.equal(vector(batch)["score"], vector(junk)["score"])
