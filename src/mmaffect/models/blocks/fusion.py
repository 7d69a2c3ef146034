"""Fusion operators used by more than one model."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LowRankFusion(nn.Module):
    """LMF (Liu et al., 2018): ``h = Σ_r λ_r Π_m ([1; x_m] W_m^(r)) + b``.

    TFN's outer-product weight factorised into rank-``rank`` modality factors, so the cost is linear
    in the number of modalities; MRE fuses its relevance-weighted vectors with it.
    """

    def __init__(self, widths: list[int], out_dim: int, rank: int):
        super().__init__()
        self.factors = nn.ParameterList([nn.Parameter(torch.empty(rank, w + 1, out_dim)) for w in widths])
        for factor in self.factors:
            nn.init.xavier_normal_(factor)
        self.rank_weights = nn.Parameter(torch.empty(1, rank))
        nn.init.xavier_normal_(self.rank_weights)
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def forward(self, xs: list[Tensor]) -> Tensor:
        """One ``addmm`` per modality over all ranks at once (the factor's row for the ``1`` of ``[1; x]``
        is its bias): the same sums as a rank-broadcast matmul on ``[1; x]``, without expanding ``x``
        ``rank`` times and reducing its gradient back."""
        rank, out_dim = self.factors[0].shape[0], self.factors[0].shape[2]
        product = None
        for x, factor in zip(xs, self.factors, strict=True):
            weight = factor.transpose(0, 1).reshape(factor.shape[1], rank * out_dim)  # (1 + w, R * out)
            projected = torch.addmm(weight[0], x, weight[1:])  # (B, R * out)
            product = projected if product is None else product * projected
        return torch.matmul(self.rank_weights, product.view(-1, rank, out_dim)).squeeze(1) + self.bias
