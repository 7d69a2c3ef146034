"""The factored TFN fusion equals the textbook materialised outer product; LMF matches its formula."""

from __future__ import annotations

import torch

from mmaffect.models.baselines.lmf import LowRankFusion
from mmaffect.models.baselines.tfn import TensorFusion


def materialised_tensor_fusion(xs, weight, bias):
    """TFN as written in the paper: vec(z_1 ⊗ z_2 ⊗ z_3) @ W + b."""
    zs = [torch.cat([torch.ones(x.shape[0], 1, dtype=x.dtype), x], dim=1) for x in xs]
    full = zs[0]
    for z in zs[1:]:
        full = torch.einsum("bi,bj->bij", full, z).flatten(1)
    return full @ weight + bias


def test_factored_tensor_fusion_equals_outer_product():
    torch.manual_seed(0)
    for widths in ([5], [5, 3], [5, 3, 4]):
        fusion = TensorFusion(widths, 6).double()
        xs = [torch.randn(7, w, dtype=torch.float64) for w in widths]
        expected = materialised_tensor_fusion(xs, fusion.weight, fusion.bias)
        torch.testing.assert_close(fusion(xs), expected)


def test_factored_tensor_fusion_gradients_match():
    torch.manual_seed(1)
    fusion = TensorFusion([4, 3, 2], 5).double()
    xs = [torch.randn(6, w, dtype=torch.float64, requires_grad=True) for w in (4, 3, 2)]
    fusion(xs).sum().backward()
    fast = [x.grad.clone() for x in xs] + [fusion.weight.grad.clone()]
    for x in xs:
        x.grad = None
    fusion.weight.grad = None
    materialised_tensor_fusion(xs, fusion.weight, fusion.bias).sum().backward()
    for a, b in zip(fast, [x.grad for x in xs] + [fusion.weight.grad], strict=True):
        torch.testing.assert_close(a, b)


def test_low_rank_fusion_formula():
    torch.manual_seed(2)
    fusion = LowRankFusion([3, 2], 4, rank=2).double()
    xs = [torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)]
    expected = torch.zeros(5, 4, dtype=torch.float64)
    for r in range(2):
        term = torch.ones(5, 4, dtype=torch.float64)
        for x, factor in zip(xs, fusion.factors, strict=True):
            term = term * (torch.cat([torch.ones(5, 1, dtype=torch.float64), x], 1) @ factor[r])
        expected += fusion.rank_weights[0, r] * term
    torch.testing.assert_close(fusion(xs), expected + fusion.bias)
