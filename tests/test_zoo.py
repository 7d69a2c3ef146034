"""The MMSA-zoo baselines: shapes, masking, the vector-as-one-step path and each model's own part
(Graph-MFN's fusion graph, MISA's losses, Self-MM's label memory, MMIM's two optimizers, MulT's
cross-modal directions). Registry smoke tests (forward/backward at batch 1 and padded) are in
``tests/test_models.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.models import ModelSpec, create_model
from mmaffect.models.base import EpochState
from mmaffect.models.baselines.graph_mfn import DynamicFusionGraph
from mmaffect.models.baselines.misa import StackedBiLSTM, cmd, difference_loss
from mmaffect.models.baselines.mult import MultiheadAttention
from mmaffect.models.baselines.self_mm import generated_labels
from mmaffect.models.baselines.zoo_common import LSTMEncoder, one_step_lstm
from mmaffect.training.config import TrainConfig

ZOO = ("mfn", "graph-mfn", "mult", "misa", "self-mm", "mmim")
DIMS = {"t": 6, "a": 5, "v": 4}
SMALL = {"mfn": {"hidden": 8, "mem_dim": 8}, "graph-mfn": {"hidden": 8, "node_dim": 8, "mem_dim": 8},
         "mult": {"dim": 8, "heads": 2, "layers": 1, "memory_layers": 1}, "misa": {"hidden": 8, "rnn_hidden": 4},
         "self-mm": {}, "mmim": {}}


def make(name: str, seq: bool = True, heads: dict | None = None, dims: dict = DIMS, **kw):
    spec = ModelSpec(dims=dict(dims), seq_dims=dict(dims) if seq else {}, heads=heads or {"score": 1})
    torch.manual_seed(0)
    return create_model(name, spec, **(SMALL[name] | kw)).eval()


def batch(size: int = 4, length: int = 5, seed: int = 0, dims: dict = DIMS) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {"index": torch.arange(size), "score": torch.tensor([1.5, -2.0, 0.5, -0.5])[:size]}
    for m, d in dims.items():
        lengths = torch.randint(1, length + 1, (size,), generator=gen)
        lengths[0] = length
        mask = torch.arange(length)[None, :] < lengths[:, None]
        out[f"{m}_seq"] = torch.randn(size, length, d, generator=gen) * mask[..., None]
        out[f"{m}_mask"] = mask
        out[m] = torch.randn(size, d, generator=gen)
    return out


@pytest.mark.parametrize("name", ZOO)
def test_padded_steps_change_nothing(name):
    model = make(name)
    b = batch()
    padded = dict(b)
    for m in DIMS:
        seq, mask = b[f"{m}_seq"], b[f"{m}_mask"]
        noisy = torch.cat([seq, torch.zeros(4, 3, seq.shape[2])], 1)
        full_mask = torch.cat([mask, torch.zeros(4, 3, dtype=torch.bool)], 1)
        noisy[~full_mask] = 7 * torch.randn(int((~full_mask).sum()), seq.shape[2])  # garbage in every padded step
        padded[f"{m}_seq"], padded[f"{m}_mask"] = noisy, full_mask
    with torch.no_grad():
        reference, out = model(b)["score"], model(padded)["score"]
    assert reference.shape == (4,)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ZOO)
def test_a_vector_is_a_one_step_sequence(name):
    """On vector-only data (mosi-bclstm) the model reads each vector as a length-1 sequence."""
    vector_model, sequence_model = make(name, seq=False), make(name)
    sequence_model.load_state_dict(vector_model.state_dict())
    b = batch()
    one_step = dict(b) | {f"{m}_seq": b[m][:, None] for m in DIMS} | \
        {f"{m}_mask": torch.ones(4, 1, dtype=torch.bool) for m in DIMS}
    without_sequences = {k: v for k, v in b.items() if not k.endswith(("_seq", "_mask"))}
    with torch.no_grad():
        torch.testing.assert_close(vector_model(without_sequences)["score"], sequence_model(one_step)["score"])
    assert "sequences?" in vector_model.needs


@pytest.mark.parametrize("name", ZOO)
def test_classification_heads_and_one_modality(name):
    out = make(name, heads={"logits": 3})(batch())
    assert out["logits"].shape == (4, 3) and torch.isfinite(out["logits"]).all()
    text_only = make(name, dims={"t": 6})(batch(dims={"t": 6}))
    assert text_only["score"].shape == (4,)


def test_dynamic_fusion_graph_vertices_and_efficacies():
    assert DynamicFusionGraph([3, 3, 3], 4, 5).n_efficacies == 19  # 3 pairs x 2 + triple 6 + tau 7
    assert DynamicFusionGraph([3, 3], 4, 5).n_efficacies == 5
    assert DynamicFusionGraph([3], 4, 5).n_efficacies == 1
    torch.manual_seed(0)
    graph = DynamicFusionGraph([3, 3, 3], 4, 5)
    x = [torch.randn(2, 3) for _ in range(3)]
    tau, efficacies = graph(x)
    assert tau.shape == (2, 4) and efficacies.shape == (2, 19)
    assert ((efficacies > 0) & (efficacies < 1)).all()
    # close every edge but tau <- vertex (0,): tau then follows modality 0 and ignores modalities 1 and 2
    last = graph.efficacy[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-60.0)
        last.bias[19 - len(graph.vertices)] = 60.0  # tau's inputs are the 7 vertices, (0,) first
    base = graph(x)[0]
    assert not torch.allclose(graph([x[0] + 1, x[1], x[2]])[0], base)
    torch.testing.assert_close(graph([x[0], x[1] + 1, x[2] - 1])[0], base)


def test_mult_cross_modal_directions():
    model = make("mult")
    assert set(model.cross) == {"t<-a", "t<-v", "a<-t", "a<-v", "v<-t", "v<-a"}
    seen: dict[str, list[torch.Tensor]] = {}
    for key, module in model.cross.items():
        module.register_forward_hook(lambda mod, args, out, key=key: seen.setdefault(key, []).append(out))
    b = batch()
    changed = dict(b) | {"a_seq": b["a_seq"] + torch.randn_like(b["a_seq"]) * b["a_mask"][..., None]}
    with torch.no_grad():
        model(b)
        model(changed)
    differs = {key: not torch.allclose(first, second) for key, (first, second) in seen.items()}
    # audio as source (keys/values) or as target (queries) changes exactly the blocks that read it
    assert differs == {"t<-a": True, "v<-a": True, "a<-t": True, "a<-v": True, "t<-v": False, "v<-t": False}


def test_mult_kernel_runs_on_length_one():
    model = make("mult", seq=False, kernel_size=5)
    assert model(batch())["score"].shape == (4,)
    with pytest.raises(ValueError, match="odd"):
        make("mult", kernel_size=4)


@pytest.mark.parametrize("keys", [1, 5])
def test_mult_attention_equals_torch_multihead_attention(keys):
    """Our lean attention (with its one-key shortcut) against nn.MultiheadAttention on the same
    weights: outputs and gradients, with padded keys; the state-dict keys are torch's."""
    torch.manual_seed(0)
    ours, reference = MultiheadAttention(8, 2, dropout=0.0), torch.nn.MultiheadAttention(8, 2, batch_first=True)
    assert list(ours.state_dict()) == list(reference.state_dict())
    reference.load_state_dict(ours.state_dict())
    x, context = torch.randn(3, 4, 8), torch.randn(3, keys, 8)
    mask = torch.ones(3, keys, dtype=torch.bool)
    mask[1, 2:] = False
    got = ours(x, context, mask)
    want = reference(x, context, context, key_padding_mask=~mask, need_weights=False)[0]
    torch.testing.assert_close(got, want)
    got.square().sum().backward()
    want.square().sum().backward()
    for (name, a), b in zip(ours.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_one_step_lstm_equals_the_lstm_kernel(bidirectional):
    """The length-1 shortcut against torch's LSTM on the same weights: states and gradients."""
    torch.manual_seed(0)
    rnn = torch.nn.LSTM(5, 3, batch_first=True, bidirectional=bidirectional)
    x = torch.randn(4, 5, requires_grad=True)
    got = one_step_lstm(rnn, x)
    want = rnn(x[:, None])[1][0].transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(got, want)
    got_grads = torch.autograd.grad(got.square().sum(), [x, *rnn.parameters()], allow_unused=True)
    want_grads = torch.autograd.grad(want.square().sum(), [x, *rnn.parameters()])
    for (name, _), a, b in zip([("x", x), *rnn.named_parameters()], got_grads, want_grads, strict=True):
        if "weight_hh" in name:  # zero initial state: the recurrent weights get no gradient
            assert a is None and not b.any()
        else:
            torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("encoder", [LSTMEncoder(5, 3, bidirectional=True), StackedBiLSTM(5, 3)])
def test_lstm_encoders_take_the_shortcut_only_on_one_step(encoder):
    """A vector (one step) and the same vector with a padded second step give the same states: the
    shortcut and the packed kernel agree inside the encoders."""
    x = torch.randn(4, 1, 5)
    padded = torch.cat([x, torch.randn(4, 1, 5)], 1)
    mask = torch.tensor([[True, False]] * 4)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x, mask[:, :1]), encoder(padded, mask))


def test_mult_attention_dropout_on_one_key_drops_whole_heads():
    torch.manual_seed(0)
    attention = MultiheadAttention(8, 4, dropout=0.5).train()
    torch.nn.init.eye_(attention.out_proj.weight)
    value = attention(torch.randn(64, 1, 8), torch.randn(64, 1, 8), torch.ones(64, 1, dtype=torch.bool))
    heads = value.view(64, 4, 2)
    zero = heads.eq(0).all(-1)
    assert 0 < zero.float().mean() < 1  # some heads dropped, not all
    assert not (heads.eq(0) & ~zero[..., None]).any()  # a head is dropped as a whole or not at all


def test_misa_losses_on_hand_cases():
    x = torch.randn(16, 3)
    assert float(cmd(x, x)) == pytest.approx(0.0, abs=1e-5)
    # a shift moves only the mean, not the central moments: CMD = |shift| * sqrt(d)
    assert float(cmd(x, x + 2.0)) == pytest.approx(2.0 * 3 ** 0.5, rel=1e-4)
    # zero when every code dimension of one is uncorrelated over the batch with every one of the other:
    # columns of a Hadamard matrix are orthogonal and (but the first) zero-mean; rows keep equal norms
    hadamard = torch.tensor([[1.0]])
    for _ in range(3):
        hadamard = torch.cat([torch.cat([hadamard, hadamard], 1), torch.cat([hadamard, -hadamard], 1)])
    a, b = hadamard[:, 1:5], hadamard[:, 5:8]
    assert float(difference_loss(a, b)) == pytest.approx(0.0, abs=1e-10)
    assert float(difference_loss(a, a)) > 0.05

    model = make("misa").train()
    b = batch()
    out = model(b)
    terms = model.extra_losses(out, b)
    assert set(terms) == {"misa_similarity", "misa_difference", "misa_reconstruction"}
    expected = sum(torch.nn.functional.mse_loss(out[f"reconstructed_{m}"], out[f"projected_{m}"]) for m in DIMS) / 3
    torch.testing.assert_close(terms["misa_reconstruction"], expected)  # weight 1.0
    perfect = out | {f"reconstructed_{m}": out[f"projected_{m}"] for m in DIMS}
    assert float(model.extra_losses(perfect, b)["misa_reconstruction"].detach()) == 0.0


def test_self_mm_label_rule_on_a_toy_case():
    # fused features: positive centre 2, negative centre -2; row 0 sits at 1 (delta_f = (3 - 1) / 1 = 2)
    fused = torch.tensor([[1.0], [3.0], [-2.0]])
    # its unimodal features sit halfway between the unimodal centres 1 and -1 (delta_s = 0)
    unimodal = torch.tensor([[0.0], [2.0], [-1.0]])
    target = torch.tensor([[1.0], [1.0], [-1.0]])
    new, valid = generated_labels(fused, unimodal, target, target, bound=3.0)
    assert bool(valid.all())
    # 0.5 * (0 / 2) * 1 + 0.5 * (1 + 0 - 2) = -0.5: the modality is unsure where the fusion is sure
    assert float(new[0, 0]) == pytest.approx(-0.5, abs=1e-6)


def test_self_mm_epoch_hook_updates_and_reloads_the_memory():
    model = make("self-mm", dims={"t": 6})
    data = AffectDataset("toy", np.array(["r0", "r1", "r2", "r3"]), {"t": Modality(torch.zeros(4, 6))},
                         score=torch.tensor([1.0, 1.0, -1.0, 0.0]), default_task="regression")
    features = {"features": torch.tensor([[1.0], [3.0], [-2.0], [0.0]]),
                "features_t": torch.tensor([[0.0], [2.0], [-1.0], [0.0]])}
    rows = np.array([0, 1, 2])
    state = EpochState(epoch=1, data=data, train_rows=rows, outputs=lambda r: {k: v[r] for k, v in features.items()})
    model.on_epoch_end(state)
    assert model.label_known.tolist() == [True, True, True, False]
    # running mean at epoch 1 (n = 2): 1/3 * old label 1 + 2/3 * new label -0.5 = 0
    assert float(model.label_memory[0, 0, 0]) == pytest.approx(0.0, abs=1e-6)
    # the unimodal loss weight is tanh|generated - multimodal|: row 0 now counts, row 3 (never updated) not
    b = {"index": torch.tensor([0, 3]), "score": torch.tensor([1.0, 0.0])}
    out = {"unimodal_t": torch.tensor([[2.0], [5.0]])}
    loss = model.extra_losses(out, b)["self_mm_unimodal"]
    assert float(loss) == pytest.approx(float(torch.tanh(torch.tensor(1.0))) * 2.0 / 2, rel=1e-5)
    fresh = make("self-mm", dims={"t": 6})
    fresh.load_state_dict(model.state_dict())  # the memory is sized by the dataset, known only at load
    torch.testing.assert_close(fresh.label_memory, model.label_memory)


def test_mmim_two_optimizers_own_their_terms():
    model = make("mmim").train()
    optimizers = model.configure_optimizers(TrainConfig())
    assert len(optimizers) == 2
    main, estimator = ({id(p) for g in o.param_groups for p in g["params"]} for o in optimizers)
    estimator_params = {id(p) for p in model.estimators.parameters()}
    assert estimator == estimator_params and not main & estimator
    assert main | estimator == {id(p) for p in model.parameters()}

    def grads(term_names):
        model.zero_grad()
        b = batch()
        out = model(b)
        terms = model.extra_losses(out, b) | {"task": out["score"].pow(2).mean()}
        assert {"mmim_estimator", "mmim_lld", "mmim_nce", "mmim_entropy"} <= set(terms)
        sum(terms[n] for n in term_names).backward()
        return {id(p) for p in model.parameters() if p.grad is not None and p.grad.abs().sum() > 0}

    assert grads(["mmim_estimator"]) == estimator_params  # the estimator learns on detached features
    touched = grads(["task", "mmim_lld", "mmim_nce", "mmim_entropy"])
    assert touched and not touched & estimator_params  # the network maximises the bound, estimator fixed
    assert len(make("mmim", dims={"t": 6}).configure_optimizers(TrainConfig())) == 1  # no pair, no estimator


def test_minilm_text_branch_is_switchable():
    model = make("self-mm", text_encoder="minilm")
    assert {"tokens", "sequences?"} <= model.needs and model.tokenizer == "minilm"
    groups = model.param_groups(TrainConfig())
    assert groups[0]["lr"] == 5e-5 and len(groups) == 2
    tokens = torch.tensor([[101, 2023, 102, 0]] * 4)
    b = batch() | {"t_tokens": tokens, "t_tokens_mask": tokens > 0}
    assert model(b)["score"].shape == (4,)
    assert "tokens" not in make("self-mm").needs  # default: the text features, no transformer on a CPU
    with pytest.raises(ValueError, match="text_encoder"):
        make("misa", text_encoder="bert")


class Crash(Exception):
    pass


def test_self_mm_memory_survives_an_interrupted_fit(tmp_path, monkeypatch):
    """The label memory is model state: a fit interrupted in epoch 3 and resumed from its last saved
    state ends with the same memory and weights as an uninterrupted one."""
    from mmaffect.tasks import make_task
    from mmaffect.training.runs import model_spec
    from mmaffect.training.trainer import fit

    gen = torch.Generator().manual_seed(0)
    n = 60
    score = torch.randn(n, generator=gen) * 2
    modalities = {m: Modality(torch.randn(n, d, generator=gen) + score[:, None] * (m == "t")) for m, d in DIMS.items()}
    split = np.array(["train"] * 40 + ["valid"] * 10 + ["test"] * 10)
    data = AffectDataset("toy", np.array([f"r{i}" for i in range(n)]), modalities, score=score, split=split,
                         default_task="regression")
    task = make_task(data)
    rows = data.split_indices()
    cfg = TrainConfig(epochs=4, patience=10, batch_size=8, checkpoint_seconds=0)

    def build():
        torch.manual_seed(1)
        return create_model("self-mm", model_spec(data, task))

    full_model = build()
    fit(full_model, data, task, rows["train"], rows["valid"], cfg, seed=3, progress=False)
    calls = {"n": 0}
    original = type(data).batch

    def crashing_batch(self, index, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 14:  # epoch 3 (5 training batches, then the hook's and validation's eval batches)
            raise Crash
        return original(self, index, *args, **kwargs)

    monkeypatch.setattr(type(data), "batch", crashing_batch)
    with pytest.raises(Crash):
        fit(build(), data, task, rows["train"], rows["valid"], cfg, seed=3, workdir=tmp_path, progress=False)
    monkeypatch.setattr(type(data), "batch", original)
    model = build()
    fit(model, data, task, rows["train"], rows["valid"], cfg, seed=3, workdir=tmp_path, progress=False)
    assert bool(full_model.label_known[:40].all()) and not bool(full_model.label_known[40:].any())
    for key, value in full_model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
