"""Shared model blocks: shapes, masking (padded steps change nothing) and hand-checked values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmaffect.models.blocks import (
    BridgeAttention,
    GatedBridgeLayer,
    KNNPseudoLabels,
    LowRankFusion,
    MLPHeads,
    ModalityBagAttention,
    PerceiverResampler,
    as_sequence,
    knn_label_shift,
    masked_adaptive_pool,
    masked_mean,
    momentum_update,
)


def padded(x: torch.Tensor, mask: torch.Tensor, extra: int, seed: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    """Append ``extra`` padded steps holding large random values (they must be ignored)."""
    noise = torch.randn(x.shape[0], extra, x.shape[2], generator=torch.Generator().manual_seed(seed)) * 50
    return torch.cat([x, noise], 1), torch.cat([mask, torch.zeros(x.shape[0], extra, dtype=torch.bool)], 1)


def test_as_sequence_vector_and_empty_rows():
    seq, mask = as_sequence({"a": torch.ones(3, 4)}, "a")
    assert seq.shape == (3, 1, 4) and mask.all()
    batch = {"a": torch.ones(2, 4), "a_seq": torch.ones(2, 3, 5), "a_mask": torch.tensor([[1, 1, 0], [0, 0, 0]]).bool()}
    seq, mask = as_sequence(batch, "a")
    assert mask.tolist() == [[True, True, False], [True, False, False]]
    assert seq[1, 0].abs().sum() == 0  # the empty row is one real zero step


def test_masked_mean_ignores_padding():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(x, torch.tensor([[True, True, False]])).item() == 2.0
    assert masked_mean(x, None).item() == pytest.approx(104 / 3)


@pytest.mark.parametrize("length", [1, 2, 3, 7, 8])
def test_masked_adaptive_pool_matches_torch_on_the_real_steps(length):
    x = torch.randn(1, length, 3)
    expected = F.adaptive_avg_pool1d(x.transpose(1, 2), 4).transpose(1, 2)
    xp, mask = padded(x, torch.ones(1, length, dtype=torch.bool), 5)
    assert torch.allclose(masked_adaptive_pool(xp, mask, 4), expected, atol=1e-6)


def test_perceiver_shape_and_padding_invariance():
    torch.manual_seed(0)
    block = PerceiverResampler(16, tokens=3, layers=2, heads=4, dropout=0.0).eval()
    x = torch.randn(2, 5, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]).bool()
    out = block(x, mask)
    assert out.shape == (2, 3, 16)
    assert torch.allclose(block(*padded(x, mask, 4)), out, atol=1e-5)
    long = block(torch.randn(2, 300, 16), torch.ones(2, 300, dtype=torch.bool))  # subsampled to max_frames
    assert long.shape == (2, 3, 16)


def test_perceiver_switches_change_parameters_or_outputs():
    def make(**kw):
        torch.manual_seed(0)
        return PerceiverResampler(8, tokens=2, layers=1, heads=2, dropout=0.0, **kw).eval()

    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(make(frame_embedding=False)) < count(make())
    assert count(make(layer_norm=False)) < count(make())
    x, mask = torch.randn(2, 4, 8), torch.ones(2, 4, dtype=torch.bool)
    assert not torch.allclose(make(residual=False)(x, mask), make()(x, mask))


@pytest.mark.parametrize("multi_query", [True, False])
@pytest.mark.parametrize("bridge", [True, False])
def test_bridge_attention_ignores_padded_queries_and_keys(multi_query, bridge):
    torch.manual_seed(0)
    attn = BridgeAttention(8, 2, 0.0, bridges=2, multi_query=multi_query, bridge=bridge).eval()
    q, qmask = torch.randn(2, 3, 8), torch.tensor([[1, 1, 1], [1, 0, 0]]).bool()
    kv, kvmask = torch.randn(2, 4, 8), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()
    out = attn(q, kv, qmask, kvmask)
    qp, qmp = padded(q, qmask, 2)
    kp, kmp = padded(kv, kvmask, 3, seed=4)
    again = attn(qp, kp, qmp, kmp)
    assert torch.allclose(again[:, :3][qmask], out[qmask], atol=1e-5)


def test_bridge_attention_variants_differ():
    def make(**kw):
        torch.manual_seed(0)
        return BridgeAttention(8, 4, 0.0, bridges=2, **kw).eval()

    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(make(multi_query=True)) < count(make(multi_query=False))
    q, kv = torch.randn(2, 5, 8), torch.randn(2, 6, 8)
    assert not torch.allclose(make(bridge=True)(q, kv), make(bridge=False)(q, kv))


def test_gated_bridge_layer_gate_options():
    def count(gate):
        layer = GatedBridgeLayer(8, 2, 0.0, bridges=2, multi_query=True, bridge=True, gate=gate)
        return sum(p.numel() for p in layer.parameters())

    assert count("none") < count("relu")
    assert count("reglu") != count("none")
    with pytest.raises(ValueError, match="gate"):
        GatedBridgeLayer(8, 2, 0.0, bridges=2, multi_query=True, bridge=True, gate="swish")


def test_low_rank_fusion_matches_the_formula():
    torch.manual_seed(0)
    fusion = LowRankFusion([2, 3], out_dim=4, rank=2)
    x1, x2 = torch.randn(5, 2), torch.randn(5, 3)
    expected = fusion.bias.clone().expand(5, 4).clone()
    for r in range(2):
        p1 = torch.cat([torch.ones(5, 1), x1], 1) @ fusion.factors[0][r]
        p2 = torch.cat([torch.ones(5, 1), x2], 1) @ fusion.factors[1][r]
        expected = expected + fusion.rank_weights[0, r] * p1 * p2
    assert torch.allclose(fusion([x1, x2]), expected, atol=1e-6)


def test_modality_bag_attention_is_permutation_equivariant():
    torch.manual_seed(0)
    bag = ModalityBagAttention(6)
    x = torch.randn(2, 3, 6)
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(bag(x)[:, perm], bag(x[:, perm]), atol=1e-6)


def test_mlp_heads_shapes():
    out = MLPHeads(8, {"score": 1, "logits": 3}, 4, 0.0)(torch.randn(5, 8))
    assert out["score"].shape == (5,) and out["logits"].shape == (5, 3)


def test_knn_label_shift_by_hand():
    # three 1-d points; k = 1, so each sample moves towards its single nearest neighbour
    feats = torch.tensor([[0.0], [1.0], [3.0]])
    labels = torch.tensor([[0.0], [1.0], [2.0]])
    out = knn_label_shift(feats, labels, k=1, gamma=2.0)
    w01 = math.exp(-2.0 * 1.0)  # D = |0-1| / sqrt(1)
    w12 = math.exp(-2.0 * 4.0)  # sample 2's nearest is sample 1 at distance 2
    assert out[0, 0].item() == pytest.approx(0 + w01 * (1 - 0))
    assert out[1, 0].item() == pytest.approx(1 + w01 * (0 - 1))
    assert out[2, 0].item() == pytest.approx(2 + w12 * (1 - 2))
    # with k = 2 every sample averages over both others
    out2 = knn_label_shift(feats, labels, k=2, gamma=2.0)
    w02 = math.exp(-2.0 * 9.0)
    assert out2[0, 0].item() == pytest.approx((w01 * 1 + w02 * 2) / 2)
    # chunking gives the same answer
    assert torch.allclose(knn_label_shift(feats, labels, 2, 2.0, chunk=1), out2)


def test_momentum_schedules():
    prev, cand = torch.tensor([1.0]), torch.tensor([3.0])
    assert momentum_update(prev, cand, 1).item() == 3.0  # (0/2) prev + (2/2) cand
    assert momentum_update(prev, cand, 3).item() == pytest.approx(0.5 * 1 + 0.5 * 3)
    assert momentum_update(prev, cand, 2, "constant", beta=0.9).item() == pytest.approx(0.9 + 0.3)
    assert momentum_update(prev, cand, 5, "none").item() == 3.0


def test_knn_pseudo_labels_update_schedule_and_state():
    gen = KNNPseudoLabels(["t"], {"score": 1, "logits": 2}, k=1, gamma=2.0, start_epoch=2)
    rows = torch.tensor([1, 2, 4])
    feats = {"t": torch.tensor([[0.0], [1.0], [3.0]])}
    truth = {"score": torch.tensor([[0.0], [1.0], [2.0]]), "logits": torch.tensor([[1.0, 0], [0, 1.0], [0, 1.0]])}
    index = torch.tensor([2])
    assert gen.update(1, feats, truth, rows, total_rows=6) is False  # before start_epoch: y_m
    assert gen.targets("t", "score", index, truth["score"][1:2]) is not None
    assert torch.equal(gen.targets("t", "score", index, truth["score"][1:2]), truth["score"][1:2])
    assert gen.update(2, feats, truth, rows, total_rows=6) is True
    # epoch 2 ended -> labels for epoch 3: (2/4) y_m + (2/4) candidate, row 2 = sample 1
    w01 = math.exp(-2.0)
    expected = 0.5 * 1.0 + 0.5 * (1.0 - w01)
    assert gen.labels("t", "score")[2, 0].item() == pytest.approx(expected)
    assert gen.targets("t", "score", index, truth["score"][1:2])[0, 0].item() == pytest.approx(expected)
    soft = gen.labels("t", "logits")[rows]
    assert torch.allclose(soft.sum(1), torch.ones(3)) and (soft >= 0).all()
    assert soft[1, 0] > 0  # sample 1 moved towards its class-0 neighbour
    # a fresh module takes the saved (dataset-sized) buffers
    fresh = KNNPseudoLabels(["t"], {"score": 1, "logits": 2})
    fresh.load_state_dict(gen.state_dict())
    assert torch.equal(fresh.labels("t", "score"), gen.labels("t", "score")) and int(fresh.updates) == 1
