"""Shared loss functions on hand-worked cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmaffect.losses import (
    class_level_nce,
    info_nce_pairs,
    per_sample_loss,
    same_class,
    sentiment_classes,
    supcon_loss,
    truth_targets,
)


def test_supcon_by_hand_and_normalisers():
    f = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # sample 1 = sample 0 after normalisation
    pos = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 0]]).bool()
    per_anchor = math.log(1 + math.e) - 1  # -log(e^1 / (e^1 + e^0)); anchor 2 has no positive
    assert supcon_loss(f, pos, temperature=1.0).item() == pytest.approx(per_anchor, rel=1e-5)
    assert supcon_loss(f, pos, 1.0, normaliser="batch").item() == pytest.approx(per_anchor / 2, rel=1e-5)
    with pytest.raises(ValueError, match="normaliser"):
        supcon_loss(f, pos, normaliser="anchors")


def test_supcon_is_lower_for_aligned_positives():
    pos = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]).bool()
    aligned = torch.tensor([[1.0, 0], [1.0, 0.1], [0, 1.0], [0.1, 1.0]])
    crossed = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0.1], [0.1, 1.0]])
    assert supcon_loss(aligned, pos) < supcon_loss(crossed, pos)


def test_supcon_without_positives_is_zero_and_differentiable():
    f = torch.randn(3, 4, requires_grad=True)
    loss = supcon_loss(f, torch.zeros(3, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and f.grad is not None


def test_info_nce_pairs_by_hand():
    pos, neg = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.5, 1.0]])
    expected = [-math.log(math.exp(p) / (math.exp(p) + math.exp(0.5) + math.exp(1.0))) for p in (2.0, 0.0)]
    assert info_nce_pairs(pos, neg).item() == pytest.approx(sum(expected) / 2, rel=1e-6)
    # a better-separated positive gives a lower loss
    assert info_nce_pairs(torch.tensor([[3.0]]), neg) < info_nce_pairs(torch.tensor([[0.0]]), neg)


def test_class_level_nce_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    classes = torch.eye(2, dtype=torch.bool)  # two samples of different classes
    p_pos, p_neg = math.e / (math.e + 1), 1 / (math.e + 1)  # cos = 1 on the diagonal, 0 off it, tau = 1
    expected = -math.log(p_pos) - math.log(1 - p_neg)
    assert class_level_nce(z, z, classes, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    # one class for both: every pair is positive, P = softmax rows
    z2 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    same = torch.ones(2, 2, dtype=torch.bool)
    assert class_level_nce(z2, z2, same, temperature=1.0).item() == pytest.approx(math.log(2), rel=1e-6)


def test_class_level_nce_prefers_class_aligned_modalities():
    classes = torch.tensor([0, 0, 1, 1])
    same = classes[:, None] == classes[None, :]
    a = torch.tensor([[1.0, 0], [1.0, 0.2], [0, 1.0], [0.2, 1.0]])
    shuffled = a[torch.tensor([2, 3, 0, 1])]
    assert class_level_nce(a, a, same) < class_level_nce(a, shuffled, same)


def test_same_class_from_labels_tags_and_scores():
    assert same_class({"label": torch.tensor([0, 1, 0])}).tolist() == [[True, False, True], [False, True, False],
                                                                        [True, False, True]]
    tags = torch.tensor([[1.0, 0], [1.0, 1.0], [0, 0]])
    assert same_class({"labels": tags}).tolist() == [[True, True, False], [True, True, False], [False, False, False]]
    score = torch.tensor([-1.0, 0.0, 2.0])
    assert same_class({"score": score})[1, 2] and not same_class({"score": score})[0, 1]
    assert sentiment_classes(score, "three").tolist() == [0, 1, 2]
    assert sentiment_classes(torch.tensor([-3.4, 0.4, 2.6]), "seven").tolist() == [0, 3, 6]
    with pytest.raises(ValueError):
        sentiment_classes(score, "five")


def test_per_sample_loss_hard_and_soft_targets():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    label = torch.tensor([0, 2])
    hard = per_sample_loss("logits", logits, label)
    soft = per_sample_loss("logits", logits, F.one_hot(label, 3).float())
    assert torch.allclose(hard, F.cross_entropy(logits, label, reduction="none"))
    assert torch.allclose(hard, soft)
    score = per_sample_loss("score", torch.tensor([1.0, -1.0]), torch.tensor([[0.5], [1.0]]))
    assert score.tolist() == [0.5, 2.0]
    assert per_sample_loss("score", torch.tensor([1.0]), torch.tensor([0.0]), "mse").item() == 1.0
    tags = per_sample_loss("tags", torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    assert tags.item() == pytest.approx(math.log(2))


def test_truth_targets_label_spaces():
    batch = {"score": torch.tensor([0.5]), "label": torch.tensor([1]), "labels": torch.tensor([[1, 0]])}
    out = truth_targets(batch, {"score": 1, "logits": 3, "tags": 2})
    assert out["score"].shape == (1, 1) and out["logits"].tolist() == [[0, 1, 0]] and out["tags"].dtype == torch.float32
