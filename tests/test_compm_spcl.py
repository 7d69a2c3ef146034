"""compm (CoMPM-style speaker memory) and SPCL (prototype contrastive term): padding, causality, the
memory reading only the speaker's own earlier frozen vectors, the ablation switches, the loss on a
hand-worked case, the per-class queue, and that ``spcl=0`` leaves the old models exactly as they were."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.errors import ConfigError
from mmaffect.losses.contrastive import prototype_contrastive_loss
from mmaffect.models import create_model
from mmaffect.models.base import ModelSpec
from mmaffect.models.blocks.prototypes import PrototypeQueue

SPEC = ModelSpec(dims={"t": 6}, seq_dims={}, heads={"logits": 3})
SHIFT = torch.linspace(-3.0, 5.0, 6)  # not a constant: the memory's LayerNorm would remove a constant shift


def compm(**args):
    torch.manual_seed(0)
    return create_model("compm", SPEC, **args).eval()


def batch(lengths=(6, 3), width=None, seed=0) -> dict:
    """A dialogue batch as the engine builds it; the frozen vectors differ from the (fine-tuned) text."""
    gen = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    return {"turn_mask": mask,
            "t_dlg": torch.randn(len(lengths), width, 6, generator=gen) * mask[..., None],
            "t_pretrained_dlg": torch.randn(len(lengths), width, 6, generator=gen) * mask[..., None],
            # dialogue 0: A B A A B A A B ...; dialogue 1: A B A
            "speaker_ids": torch.tensor([0, 1, 0, 0, 1, 0] * 2)[None, :width].repeat(len(lengths), 1) * mask}


def changed(b: dict, **edits) -> dict:
    out = {k: v.clone() for k, v in b.items()}
    for key, (index, delta) in edits.items():
        out[key][index] += delta
    return out


def logits(model, b: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(b)["logits"]


def test_one_output_per_real_turn_and_padding_changes_nothing():
    model = compm()
    short = batch(lengths=(3,), seed=1)
    alone = logits(model, short)
    assert alone.shape == (3, 3) and torch.isfinite(alone).all()
    padded = {k: torch.cat([v, torch.zeros(*v.shape[:1], 5, *v.shape[2:], dtype=v.dtype)], 1) for k, v in short.items()}
    padded["turn_mask"][:, 3:] = False
    for key in ("t_dlg", "t_pretrained_dlg"):
        padded[key][:, 3:] = 100.0  # garbage at the padding
    padded["speaker_ids"][:, 3:] = 3
    assert torch.allclose(logits(model, padded), alone, atol=1e-5)
    longer = batch(lengths=(8,), seed=2)
    both = {k: torch.cat([longer[k], padded[k]], 0) for k in padded}
    assert torch.allclose(logits(model, both)[8:], alone, atol=1e-5)


@pytest.mark.parametrize("args", [{}, {"com": "none"}, {"memory": False}], ids=["compm", "pm-only", "com-only"])
def test_a_later_turn_changes_no_earlier_prediction(args):
    model = compm(**args)
    b = batch()
    later = changed(b, t_dlg=((0, slice(3, None)), SHIFT), t_pretrained_dlg=((0, slice(3, None)), SHIFT))
    later["speaker_ids"][0, 3:] = 1
    before, after = logits(model, b), logits(model, later)
    assert torch.allclose(before[:3], after[:3], atol=1e-6)
    assert not torch.allclose(before[3:6], after[3:6], atol=1e-3)
    assert torch.allclose(before[6:], after[6:], atol=1e-6)  # the other dialogue


def test_memory_reads_only_the_same_speakers_earlier_frozen_vectors():
    """PM-only (com=none): turn 3 (speaker A) sees the text of turn 3 and, through the memory, the
    frozen vectors of A's turns 0 and 2 -- not B's turn 1, not turn 3's own frozen vector."""
    model = compm(com="none")
    b = batch()
    base = logits(model, b)[3]
    assert torch.allclose(logits(model, changed(b, t_pretrained_dlg=((0, 1), SHIFT)))[3], base, atol=1e-6)
    assert torch.allclose(logits(model, changed(b, t_pretrained_dlg=((0, 3), SHIFT)))[3], base, atol=1e-6)
    assert torch.allclose(logits(model, changed(b, t_dlg=((0, 1), SHIFT)))[3], base, atol=1e-6)
    assert not torch.allclose(logits(model, changed(b, t_pretrained_dlg=((0, 0), SHIFT)))[3], base, atol=1e-3)
    assert not torch.allclose(logits(model, changed(b, t_pretrained_dlg=((0, 2), SHIFT)))[3], base, atol=1e-3)
    # the memory reads the frozen vectors, not the text modality: A's earlier *text* is invisible to PM-only
    assert torch.allclose(logits(model, changed(b, t_dlg=((0, 0), SHIFT)))[3], base, atol=1e-6)
    # a speaker's first turn has an empty memory: B's turn 1 is the same as without any memory input
    first = logits(model, changed(b, t_pretrained_dlg=((0, 0), SHIFT)))[1]
    assert torch.allclose(first, logits(model, b)[1], atol=1e-6)


def test_the_switches_remove_their_parameters():
    full = {n for n, _ in compm().named_parameters()}
    no_memory = compm(memory=False)
    assert not any(n.startswith(("memory", "memory_map")) for n, _ in no_memory.named_parameters())
    assert {n for n, _ in no_memory.named_parameters()} < full
    assert "pretrained_text" in compm().needs and "pretrained_text" not in no_memory.needs
    b = batch()
    del b["t_pretrained_dlg"]  # CoM alone needs no frozen vectors
    assert logits(no_memory, b).shape == (9, 3)
    assert not any(n.startswith("com.") for n, _ in compm(com="none").named_parameters())
    # CoM alone is the causal dialogue-rnn: same parameters in the same order, same outputs
    torch.manual_seed(0)
    drnn = create_model("dialogue-rnn", SPEC, bidirectional=False).eval()
    assert [p.shape for p in drnn.parameters()] == [p.shape for p in no_memory.parameters()]
    assert torch.equal(logits(drnn, b), logits(no_memory, b))
    with pytest.raises(ConfigError, match="com must be one of"):
        compm(com="transformer-xl")


def test_the_frozen_vectors_reach_the_batch_kept_or_not():
    """``t_pretrained`` is the kept frozen vectors when a fine-tuned encoder replaced the text, else ``t``."""
    frozen, tuned = torch.randn(4, 6), torch.randn(4, 6)
    kwargs = dict(name="toy", ids=np.array(list("abcd")), dialogue_id=np.array(["x", "x", "y", "y"]),
                  utt_index=np.array([1, 0, 0, 1]), speaker=np.array(["A", "B", "A", "A"]))
    replaced = AffectDataset(modalities={"t": Modality(tuned)}, pretrained_text=frozen, **kwargs).take([3, 2, 1, 0])
    needs = ("vectors", "dialogues", "pretrained_text")
    out = replaced.dialogue_batch(replaced.dialogue_table(np.arange(4)), needs)
    assert torch.equal(out["t_pretrained"], frozen[3 - out["index"]])  # row r of the view is row 3 - r
    assert torch.equal(out["t_pretrained_dlg"][out["turn_mask"]], out["t_pretrained"])
    assert not torch.equal(out["t_pretrained"], out["t"])
    plain = AffectDataset(modalities={"t": Modality(frozen)}, **kwargs)
    out = plain.dialogue_batch(plain.dialogue_table(np.arange(4)), needs)
    assert torch.equal(out["t_pretrained"], out["t"])
    assert "t_pretrained" not in plain.dialogue_batch(plain.dialogue_table(np.arange(4)))


def test_spcl_loss_matches_a_hand_computation():
    """Two classes, τ = 0.5. Anchors (1,0) and (0,1) are class 0, (-1,0) class 1; prototypes (1,0), (0,-1).
    Candidates of anchor i: the other two samples and both prototypes; positives: the same-class
    sample and its own prototype."""
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])  # any length: normalised
    labels = torch.tensor([0, 0, 1])
    prototypes = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
    e = math.exp
    # cosine / τ (τ = 0.5 doubles each cosine)
    d1 = e(0) + e(-2) + e(2) + e(0)  # anchor 1 vs sample 2, sample 3, T0, T1
    d2 = e(0) + e(0) + e(0) + e(-2)
    d3 = e(-2) + e(0) + e(-2) + e(0)
    loss_1 = -((0 - math.log(d1)) + (2 - math.log(d1))) / 2  # positives: sample 2 (cos 0), T0 (cos 1)
    loss_2 = -((0 - math.log(d2)) + (0 - math.log(d2))) / 2  # sample 1, T0
    loss_3 = -(0 - math.log(d3))  # no other class-1 sample: its prototype T1 (cos 0) alone
    expected = (loss_1 + loss_2 + loss_3) / 3
    got = prototype_contrastive_loss(features, labels, prototypes, torch.tensor([True, True]), temperature=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # class 1 without a prototype: T1 leaves every denominator and anchor 3 (no positive) the mean
    d1, d2 = e(0) + e(-2) + e(2), e(0) + e(0) + e(0)
    expected = (-((0 - math.log(d1)) + (2 - math.log(d1))) / 2 - (0 - math.log(d2))) / 2
    got = prototype_contrastive_loss(features, labels, prototypes, torch.tensor([True, False]), temperature=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_spcl_loss_is_lower_near_the_own_prototype_and_zero_without_positives():
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    has = torch.tensor([True, True])
    near = prototype_contrastive_loss(torch.tensor([[1.0, 0.1], [0.1, 1.0]]), labels, prototypes, has)
    far = prototype_contrastive_loss(torch.tensor([[0.1, 1.0], [1.0, 0.1]]), labels, prototypes, has)
    assert near < far
    lonely = torch.randn(2, 2, requires_grad=True)
    zero = prototype_contrastive_loss(lonely, labels, prototypes, torch.tensor([False, False]))
    assert zero.item() == 0.0
    zero.backward()  # connected to the graph


def test_the_queue_keeps_the_newest_normalised_rows_per_class():
    queue = PrototypeQueue(classes=3, width=2, size=2)
    prototypes, has = queue.prototypes()
    assert not has.any()
    queue.push(torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, -1.0]]), torch.tensor([0, 1, 1]))
    prototypes, has = queue.prototypes()
    assert has.tolist() == [True, True, False]
    assert torch.allclose(prototypes[0], torch.tensor([1.0, 0.0]))  # one normalised row
    assert torch.allclose(prototypes[1], torch.tensor([0.0, 0.0]))  # (0,1) and (0,-1)
    queue.push(torch.tensor([[1.0, 1.0], [0.0, 5.0]]), torch.tensor([1, 1]))  # class 1 overflows: oldest go
    assert torch.allclose(queue.prototypes()[0][1], torch.tensor([0.5 / math.sqrt(2), 0.5 / math.sqrt(2) + 0.5]))
    assert queue.pushed.tolist() == [1, 4, 0]
    assert {"bank", "pushed"} <= set(queue.state_dict())  # buffers: saved with the weights


def test_spcl_term_reads_the_queue_before_pushing_and_only_in_training():
    torch.manual_seed(0)
    model = create_model("dialogue-rnn", SPEC, bidirectional=False, spcl=0.5)
    b = {**batch(), "label": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])}
    model.eval()
    with torch.no_grad():
        model.extra_losses(model(b), b)
    assert model.spcl.queue.pushed.sum() == 0  # evaluation leaves the queue alone
    model.train()
    out = model(b)
    first = model.extra_losses(out, b)["spcl"]
    assert model.spcl.queue.pushed.tolist() == [3, 3, 3]
    empty_queue = 0.5 * prototype_contrastive_loss(out["features"], b["label"], torch.zeros(3, 64),
                                                   torch.zeros(3, dtype=torch.bool), 0.1)
    assert torch.allclose(first, empty_queue)  # the batch was not its own prototype
    first.backward()
    assert model.project[1].weight.grad is not None


@pytest.mark.parametrize(("name", "args"), [("dialogue-rnn", {}), ("bc-lstm", {}), ("turn-transformer", {}),
                                            ("compm", {})])
def test_spcl_off_is_exactly_the_old_model(name, args):
    """Default (spcl=0): no loss term, no buffers; the same seed gives the same weights and outputs as
    with SPCL on, whose only difference is the added term."""
    torch.manual_seed(0)
    off = create_model(name, SPEC, **args).train()
    torch.manual_seed(0)
    on = create_model(name, SPEC, spcl=0.1, **args).train()
    assert not any("spcl" in k for k in off.state_dict())
    assert {k for k in on.state_dict() if "spcl" not in k} == set(off.state_dict())
    assert all(torch.equal(v, on.state_dict()[k]) for k, v in off.state_dict().items())
    b = {**batch(), "label": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2]),
         "speaker_ids": torch.zeros(2, 6, dtype=torch.long)}
    torch.manual_seed(1)
    out_off = off(b)
    torch.manual_seed(1)
    out_on = on(b)
    assert torch.equal(out_off["logits"], out_on["logits"])
    assert off.extra_losses(out_off, b) == {}
    assert set(on.extra_losses(out_on, b)) == {"spcl"}


def test_spcl_needs_class_labels():
    with pytest.raises(ConfigError, match="class labels"):
        create_model("dialogue-rnn", ModelSpec(dims={"t": 6}, seq_dims={}, heads={"score": 1}), spcl=0.1)


def test_text_finetune_takes_the_same_option():
    torch.manual_seed(0)
    model = create_model("text-finetune", ModelSpec(dims={"t": 384}, seq_dims={}, heads={"logits": 3}),
                         max_tokens=8, spcl=0.1).train()
    assert {k for k in model.state_dict() if "spcl" in k} == {"spcl.queue.bank", "spcl.queue.pushed"}
    b = {"t_tokens": torch.tensor([[101, 2307, 102], [101, 6517, 102], [101, 2307, 102]]),
         "t_tokens_mask": torch.ones(3, 3, dtype=torch.bool), "label": torch.tensor([0, 1, 0])}
    assert model.extra_losses(model(b), b)["spcl"] > 0
    assert model.spcl.queue.pushed.tolist() == [2, 1, 0]
