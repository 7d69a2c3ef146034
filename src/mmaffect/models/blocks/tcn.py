"""Temporal Convolutional Network (Bai et al. 2018), the frame-sequence model of DeepMSI-MER (seed 002).

Each residual block holds two weight-normalised dilated *causal* Conv1d (``y(t) = Σ_i w_i x(t - d i)``,
eq. 4), ReLU and dropout, plus a 1x1 convolution on the residual when the width changes; dilations
double per block (1, 2, 4, ...). Causality is what lets padded sequences be handled by reading the
output at each row's last *real* step: padding sits after the real steps and can never reach them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


class CausalConv1d(nn.Module):
    """Conv1d padded on the left only, so output t sees inputs t, t-d, ..., t-(K-1)d."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, dilation: int):
        super().__init__()
        self.left = (kernel - 1) * dilation
        self.conv = weight_norm(nn.Conv1d(in_ch, out_ch, kernel, dilation=dilation))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, L)
        return self.conv(nn.functional.pad(x, (self.left, 0)))


class TemporalBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(CausalConv1d(in_ch, out_ch, kernel, dilation), nn.ReLU(), nn.Dropout(dropout),
                                 CausalConv1d(out_ch, out_ch, kernel, dilation), nn.ReLU(), nn.Dropout(dropout))
        self.residual = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.net(x) + self.residual(x))


class TCN(nn.Module):
    """``(B, L, d_in)`` with a ``(B, L)`` mask (real steps first) -> last real step ``(B, channels[-1])``.

    Args:
        channels: width of each residual block; block i uses dilation ``2**i``.
    """

    def __init__(self, in_dim: int, channels: tuple[int, ...] = (128, 128, 128), kernel: int = 3,
                 dropout: float = 0.3):
        super().__init__()
        blocks, width = [], in_dim
        for i, c in enumerate(channels):
            blocks.append(TemporalBlock(width, c, kernel, 2 ** i, dropout))
            width = c
        self.net = nn.Sequential(*blocks)
        self.out_dim = width

    def sequence(self, x: Tensor) -> Tensor:
        """Per-step outputs ``(B, L, channels[-1])``."""
        return self.net(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        steps = self.sequence(x)
        last = (mask.long().sum(1) - 1).clamp(min=0)
        return steps[torch.arange(len(steps), device=steps.device), last]
