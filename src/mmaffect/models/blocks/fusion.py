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
        ones = xs[0].new_ones(xs[0].shape[0], 1)
        product = None
        for x, factor in zip(xs, self.factors, strict=True):
            projected = torch.matmul(torch.cat([ones, x], dim=-1), factor)  # (R, B, out)
            product = projected if product is None else product * projected
        return torch.einsum("r,rbo->bo", self.rank_weights[0], product) + self.bias
