"""ST-3DH's fusion blocks (seed 001, SEEDS_SPEC §2.3 blocks 4-7).

- :class:`BilinearMatch`: ``M_xy = E_x W E_yᵀ`` -- every step of modality x scored against every
  step of the pivot modality y through a learned coupling matrix W (eqs. 8-9).
- :class:`MatchAttention`: ``α_x = softmax(w tanh(W_x M_xyᵀ + b))`` over the rows of a matching matrix,
  then ``M'_xy[i, j] = α_x[i] M_xy[i, j]`` (eqs. 10-12).
- :func:`broadcast_tensor`: ``P[i, j, k] = M'_xy[i, j] + M'_zy[k, j]`` (eq. 13; "product" for the ablation).
- :class:`TensorAttention`: attention over the k axis of P (eqs. 14-16, read as §9 item 11 says).

Matching matrices are always padded to a fixed number of steps (``max_len``) because W_x and W_p act
on a whole row/slab of the matrix; masks mark the real steps and padded entries are kept at zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

TENSOR_OPS = ("add", "product")
TENSOR_ATTENTION = ("full", "pooled", "off")


def fit_length(seq: Tensor, mask: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Pad (zeros, mask False) or cut ``(B, L, d)`` / ``(B, L)`` to exactly ``length`` steps."""
    steps = seq.shape[1]
    if steps >= length:
        return seq[:, :length], mask[:, :length]
    pad = length - steps
    return (torch.cat([seq, seq.new_zeros(seq.shape[0], pad, seq.shape[2])], 1),
            torch.cat([mask, mask.new_zeros(mask.shape[0], pad)], 1))


class BilinearMatch(nn.Module):
    """``M_xy = E_x W E_yᵀ / √d_y`` with W Xavier-initialised [A: the scale keeps magnitudes stable].

    Entries whose row or column is a padded step are zero, so padding never reaches the attention.
    """

    def __init__(self, dim_x: int, dim_y: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim_x, dim_y))
        nn.init.xavier_uniform_(self.weight)
        self.scale = 1.0 / math.sqrt(dim_y)

    def forward(self, ex: Tensor, ey: Tensor, mask_x: Tensor, mask_y: Tensor) -> Tensor:
        m = torch.einsum("bid,de,bje->bij", ex, self.weight, ey) * self.scale
        return m * (mask_x[:, :, None] & mask_y[:, None, :]).to(m.dtype)


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last axis with padded positions at -inf; a row with no real position gives
    uniform weights over nothing (zeros) rather than NaN."""
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    return torch.nan_to_num(weights, nan=0.0)


class MatchAttention(nn.Module):
    """Temporal attention over the rows of ``M_xy`` (B, t_x, t_y): ``R_x = tanh(W_x M_xyᵀ + b_x)``
    (h x t_x), ``α_x = softmax(w_x R_x)`` over the real rows, output ``α_x[i] M_xy[i, j]`` and α_x."""

    def __init__(self, length_y: int, hidden: int):
        super().__init__()
        self.project = nn.Linear(length_y, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)

    def forward(self, m: Tensor, mask_x: Tensor) -> tuple[Tensor, Tensor]:
        alpha = masked_softmax(self.score(torch.tanh(self.project(m))).squeeze(-1), mask_x)  # (B, t_x)
        return alpha[:, :, None] * m, alpha


def broadcast_tensor(mxy: Tensor, mzy: Tensor, op: str = "add") -> Tensor:
    """``P[b, i, j, k] = mxy[b, i, j] (+|*) mzy[b, k, j]``: (B, t_x, t_y), (B, t_z, t_y) -> (B, t_x, t_y, t_z).

    The paper uses addition so that one small attention weight does not zero out the whole slab as a
    product of two softmax-weighted matrices would; "product" is kept for that ablation.
    """
    if op not in TENSOR_OPS:
        raise ValueError(f"tensor op must be one of {', '.join(TENSOR_OPS)}, not {op!r}")
    a = mxy[:, :, :, None]
    b = mzy.transpose(1, 2)[:, None, :, :]
    return a + b if op == "add" else a * b


class TensorAttention(nn.Module):
    """Attention over the k (Z) axis of ``P`` (B, t_x, t_y, t_z): ``α = softmax_k(w tanh(W_p P_k + b))``
    where ``P_k`` is the (t_x, t_y) slab of step k flattened (``"full"``, W_p has t_x t_y inputs) or
    its mean over i (``"pooled"``, t_y inputs); output ``α[k] P[..., k]`` and α. ``"off"`` returns P."""

    def __init__(self, length_x: int, length_y: int, hidden: int, mode: str = "full"):
        super().__init__()
        if mode not in TENSOR_ATTENTION:
            raise ValueError(f"tensor attention must be one of {', '.join(TENSOR_ATTENTION)}, not {mode!r}")
        self.mode = mode
        if mode != "off":
            self.project = nn.Linear(length_x * length_y if mode == "full" else length_y, hidden)
            self.score = nn.Linear(hidden, 1, bias=False)

    def forward(self, p: Tensor, mask_z: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.mode == "off":
            return p, None
        slabs = p.permute(0, 3, 1, 2)  # (B, t_z, t_x, t_y)
        slabs = slabs.flatten(2) if self.mode == "full" else slabs.mean(2)
        alpha = masked_softmax(self.score(torch.tanh(self.project(slabs))).squeeze(-1), mask_z)  # (B, t_z)
        return p * alpha[:, None, None, :], alpha
