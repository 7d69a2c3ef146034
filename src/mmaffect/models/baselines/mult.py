"""MulT, Multimodal Transformer (Tsai et al., ACL 2019), for unaligned sequences.

Each modality is projected to a common width by a temporal Conv1d, gets sinusoidal positions, and
then each *target* modality reads every other (*source*) modality through its own cross-modal
transformer (``cross["t<-a"]``: queries from text, keys/values from audio, at every layer from the
source's low-level features). A target's cross-modal outputs are concatenated and passed through a
self-attention transformer; the last real step of every target feeds a residual MLP and the heads.

Differences from MMSA's MulT, on purpose: the convolution pads to keep the length ("same"), so it
runs on length-1 sequences (utterance vectors) with any odd kernel where MMSA's unpadded kernel 5
crashes; padded steps are masked as keys and the prediction reads each row's last *real* step, so
padding changes nothing (MMSA reads the last padded position); no causal mask (the last-step
readout sees the whole utterance in either case); one modality alone skips the cross-modal part.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmaffect.models.base import Heads, ModelSpec
from mmaffect.models.baselines.zoo_common import ZOO_SCHEDULE, ZooModel, last_step
from mmaffect.models.registry import register_model


@functools.lru_cache(maxsize=64)
def sinusoidal_positions(length: int, dim: int, device: torch.device) -> Tensor:
    """``(length, dim)`` sin/cos position table (Vaswani et al.), positions 0..length-1; cached, since
    every transformer stack asks for the same few tables at every step."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=device) / max(half - 1, 1))
    angle = torch.arange(length, device=device)[:, None] * freq[None, :]
    table = torch.cat([angle.sin(), angle.cos()], dim=-1)
    return F.pad(table, (0, dim - table.shape[1]))


class Embed(nn.Module):
    """``sqrt(d) * x + positions``, then dropout: MulT's input scaling before every transformer."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.scale = math.sqrt(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.scale * x + sinusoidal_positions(x.shape[1], x.shape[2], x.device))


class MultiheadAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s weights, initialisation and state-dict keys,
    without its per-call argument checks (MulT runs 18 of them per step on tiny tensors).

    One key per row (a length-1 context: an utterance vector) takes a shortcut that is the same maths:
    the softmax over one key is 1, so the output is the value projection, and attention dropout can
    only drop a row's head as a whole. The query and key projections are then skipped; their gradient
    is zero either way.
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)  # after out_proj, as nn.MultiheadAttention (same RNG draws)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        """``x`` (B, Lq, d) reads ``context`` (B, Lk, d); ``context_mask`` (B, Lk) is True at real steps."""
        batch, length, dim = x.shape
        heads, p = self.heads, self.dropout if self.training else 0.0
        w, b = self.in_proj_weight, self.in_proj_bias
        if context.shape[1] == 1:
            value = F.linear(context, w[2 * dim:], b[2 * dim:]) * context_mask[..., None]
            if p:
                keep = F.dropout(value.new_ones(batch, 1, heads, 1), p)
                value = (value.view(batch, 1, heads, dim // heads) * keep).view(batch, 1, dim)
            return self.out_proj(value).expand(batch, length, dim)
        q = F.linear(x, w[:dim], b[:dim]).view(batch, length, heads, -1).transpose(1, 2)
        k, v = F.linear(context, w[dim:], b[dim:]).view(batch, -1, 2, heads, dim // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=context_mask[:, None, None, :], dropout_p=p)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class CrossmodalLayer(nn.Module):
    """MulT's pre-LN layer: ``x + MHA(LN(x), LN(c), LN(c))`` then ``+ FFN(LN(.))`` (ReLU, 4x width).
    One LayerNorm serves queries and keys, as in MulT; ``c = x`` for self-attention."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim, heads, dropout)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.norm(x), self.norm(context), context_mask))
        return x + self.drop(self.ff(self.norm_ff(x)))


class TransformerStack(nn.Module):
    """``layers`` pre-LN blocks reading ``context`` (cross-modal) or themselves, then a LayerNorm."""

    def __init__(self, dim: int, heads: int, layers: int, dropout: float, embed_dropout: float):
        super().__init__()
        self.embed = Embed(dim, embed_dropout)
        self.blocks = nn.ModuleList(CrossmodalLayer(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor, context: Tensor | None = None,
                context_mask: Tensor | None = None) -> Tensor:
        x = self.embed(x)
        if context is not None:
            context = self.embed(context)
        for block in self.blocks:
            x = block(x, x if context is None else context, mask if context is None else context_mask)
        return self.norm(x)


@register_model("mult", description="Multimodal Transformer: cross-modal attention between every modality pair",
                train_defaults={"batch_size": 32, "lr": 1e-3, "grad_clip": 0.8, "weight_decay": 5e-3, **ZOO_SCHEDULE})
class MulT(ZooModel):
    def __init__(self, spec: ModelSpec, *, dim: int = 32, heads: int = 4, layers: int = 2, memory_layers: int = 2,
                 kernel_size: int = 3, dropout: float = 0.1, embed_dropout: float = 0.2,
                 output_dropout: float = 0.3, sequences: bool = True):
        super().__init__(spec, sequences)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the convolution keeps the length), got {kernel_size}")
        self.project = nn.ModuleDict({m: nn.Conv1d(self.step_dims[m], dim, kernel_size, padding=kernel_size // 2,
                                                   bias=False) for m in self.modalities})
        self.cross = nn.ModuleDict({f"{m}<-{s}": TransformerStack(dim, heads, layers, dropout, embed_dropout)
                                    for m in self.modalities for s in self.modalities if s != m})
        memory_dim = dim * max(len(self.modalities) - 1, 1)
        self.memory = nn.ModuleDict({m: TransformerStack(memory_dim, heads, memory_layers, dropout, embed_dropout)
                                     for m in self.modalities})
        width = memory_dim * len(self.modalities)
        self.residual = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Dropout(output_dropout),
                                      nn.Linear(width, width))
        self.heads = Heads(width, spec.heads)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        seqs, masks = {}, {}
        for m in self.modalities:
            x, mask = self.steps(batch, m)
            x = self.project[m]((x * mask[..., None]).transpose(1, 2)).transpose(1, 2)
            seqs[m], masks[m] = x * mask[..., None], mask
        lasts = []
        for m in self.modalities:
            sources = [s for s in self.modalities if s != m]
            if sources:
                h = torch.cat([self.cross[f"{m}<-{s}"](seqs[m], masks[m], seqs[s], masks[s]) for s in sources], -1)
            else:
                h = seqs[m]
            lasts.append(last_step(self.memory[m](h, masks[m]), masks[m]))
        features = torch.cat(lasts, dim=-1)
        features = features + self.residual(features)
        return {**self.heads(features), "features": features}
