"""Attention blocks shared by the seed models: a pre-LN transformer block, the perceiver resampler,
the gated bridge attention of SemanticMAC (SGFI) and the modality-bag self-attention of MRE."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmaffect.models.blocks.pooling import masked_adaptive_pool


def feed_forward(dim: int, mult: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * mult, dim))


def _norm(dim: int, enabled: bool) -> nn.Module:
    return nn.LayerNorm(dim) if enabled else nn.Identity()


class AttentionBlock(nn.Module):
    """``x + MHA(LN(x), LN(ctx))`` then ``+ FFN(LN(.))``; ``layer_norm``/``residual`` can be switched
    off (SemanticMAC's perceiver ablations). ``context=None`` is self-attention."""

    def __init__(self, dim: int, heads: int, dropout: float, ffn_mult: int = 4, *, layer_norm: bool = True,
                 residual: bool = True):
        super().__init__()
        self.residual = residual
        self.norm_q, self.norm_kv, self.norm_ff = (_norm(dim, layer_norm) for _ in range(3))
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ff = feed_forward(dim, ffn_mult, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor | None = None, context_mask: Tensor | None = None) -> Tensor:
        q = self.norm_q(x)
        kv = q if context is None else self.norm_kv(context)
        padding = None if context_mask is None else ~context_mask
        attended = self.drop(self.attn(q, kv, kv, key_padding_mask=padding, need_weights=False)[0])
        x = x + attended if self.residual else attended
        fed = self.drop(self.ff(self.norm_ff(x)))
        return x + fed if self.residual else fed


class PerceiverResampler(nn.Module):
    """Flamingo's perceiver resampler: ``tokens`` learnable latents read a variable-length sequence.

    Each layer attends from the latents to ``[frames; latents]`` (keys/values), so the output is
    ``(B, tokens, d)`` whatever the input length, and a row never has every key masked. An optional
    learnable frame (position) embedding up to ``max_frames`` is added to the frames first; longer
    inputs are subsampled uniformly to ``max_frames`` steps.
    """

    def __init__(self, dim: int, tokens: int, layers: int, heads: int, dropout: float, *, max_frames: int = 256,
                 frame_embedding: bool = True, layer_norm: bool = True, residual: bool = True):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(tokens, dim) * dim ** -0.5)
        self.max_frames = max_frames
        self.frame_embedding = nn.Parameter(torch.zeros(max_frames, dim)) if frame_embedding else None
        if self.frame_embedding is not None:
            nn.init.normal_(self.frame_embedding, std=0.02)
        self.layers = nn.ModuleList(AttentionBlock(dim, heads, dropout, layer_norm=layer_norm, residual=residual)
                                    for _ in range(layers))

    def forward(self, frames: Tensor, mask: Tensor) -> Tensor:
        if frames.shape[1] > self.max_frames:
            keep = torch.linspace(0, frames.shape[1] - 1, self.max_frames, device=frames.device).round().long()
            frames, mask = frames[:, keep], mask[:, keep]
        if self.frame_embedding is not None:
            frames = frames + self.frame_embedding[: frames.shape[1]]
        x = self.latents.expand(frames.shape[0], -1, -1)
        latent_mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        for layer in self.layers:
            x = layer(x, torch.cat([frames, x], 1), torch.cat([mask, latent_mask], 1))
        return x


class BridgeAttention(nn.Module):
    """SemanticMAC's attention (eqs. 6-8): multi-query heads reading the keys/values through bridge tokens.

    ``multi_query``: h query heads share one key and one value head (else standard multi-head K/V).
    ``bridge``: per head, ``bridges`` tokens = adaptive average pooling of the queries over real
    query steps; the bridges read the key/value sequence, then the queries read the bridges (the
    two-step proxy-token form). Without it, queries attend to the keys directly.
    """

    def __init__(self, dim: int, heads: int, dropout: float, *, bridges: int = 4, multi_query: bool = True,
                 bridge: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim, self.bridges, self.bridge = heads, dim // heads, bridges, bridge
        kv_dim = self.head_dim if multi_query else dim
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, kv_dim)
        self.v = nn.Linear(dim, kv_dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def _split(self, x: Tensor) -> Tensor:
        """(B, L, h*dh) -> (B, h, L, dh); a single shared head (B, L, dh) -> (B, 1, L, dh)."""
        b, length, width = x.shape
        return x.view(b, length, width // self.head_dim, self.head_dim).transpose(1, 2)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None) -> Tensor:
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        return self.drop(scores.softmax(-1)) @ v

    def forward(self, query: Tensor, context: Tensor, query_mask: Tensor | None = None,
                context_mask: Tensor | None = None) -> Tensor:
        q, k, v = self._split(self.q(query)), self._split(self.k(context)), self._split(self.v(context))
        if self.bridge:
            qmask = None if query_mask is None else query_mask[:, None, :].expand(-1, self.heads, -1)
            flat = q.flatten(0, 1)  # pool every (sample, head) row over its real query steps
            tokens = masked_adaptive_pool(flat, None if qmask is None else qmask.flatten(0, 1), self.bridges)
            tokens = tokens.view(q.shape[0], self.heads, self.bridges, self.head_dim)
            through = self._attend(tokens, k, v, context_mask)  # bridges read the context
            o = self._attend(q, tokens, through, None)  # queries read the bridges
        else:
            o = self._attend(q, k, v, context_mask)
        return self.out(o.transpose(1, 2).flatten(2))


class GatedBridgeLayer(nn.Module):
    """One GBA layer: ``Z = Hq + BridgeAttention(LN Hq, LN Hkv)``, a gate, then ``+ FFN(LN .)``.

    ``gate="relu"`` multiplies Z by ``ReLU(LN(Z) W_g + b_g)`` (activation sparsity); ``"reglu"`` uses a
    ReGLU feed-forward instead; ``"none"`` is the "w/o gated ReLU" ablation.
    """

    def __init__(self, dim: int, heads: int, dropout: float, *, bridges: int, multi_query: bool, bridge: bool,
                 gate: str = "relu", ffn_mult: int = 4):
        super().__init__()
        if gate not in ("relu", "reglu", "none"):
            raise ValueError(f"gate must be relu, reglu or none, not {gate!r}")
        self.gate_type = gate
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = BridgeAttention(dim, heads, dropout, bridges=bridges, multi_query=multi_query, bridge=bridge)
        self.drop = nn.Dropout(dropout)
        if gate == "relu":
            self.gate = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU())
        if gate == "reglu":
            self.ff_in, self.ff_gate = nn.Linear(dim, dim * ffn_mult), nn.Linear(dim, dim * ffn_mult)
            self.ff_out = nn.Linear(dim * ffn_mult, dim)
        else:
            self.ff = feed_forward(dim, ffn_mult, dropout)

    def _feed_forward(self, x: Tensor) -> Tensor:
        if self.gate_type == "reglu":
            return self.ff_out(self.drop(F.relu(self.ff_gate(x)) * self.ff_in(x)))
        return self.ff(x)

    def forward(self, query: Tensor, context: Tensor, query_mask: Tensor | None = None,
                context_mask: Tensor | None = None) -> Tensor:
        z = query + self.drop(self.attn(self.norm_q(query), self.norm_kv(context), query_mask, context_mask))
        if self.gate_type == "relu":
            z = z * self.gate(z)
        return z + self.drop(self._feed_forward(self.norm_ff(z)))


class GatedBridgeStack(nn.Module):
    """SGFI: ``layers`` GBA layers; the context stays fixed, the query stream is refined."""

    def __init__(self, dim: int, heads: int, layers: int, dropout: float, **layer_args):
        super().__init__()
        self.layers = nn.ModuleList(GatedBridgeLayer(dim, heads, dropout, **layer_args) for _ in range(layers))

    def forward(self, query: Tensor, context: Tensor, query_mask: Tensor | None = None,
                context_mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            query = layer(query, context, query_mask, context_mask)
        return query


class ModalityBagAttention(nn.Module):
    """MRE eq. 3: single-head scaled dot-product self-attention across a bag of modality vectors.

    Input ``(B, M, d)`` (one row per modality), output ``(B, M, d)``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.scale = dim ** -0.5

    def forward(self, bag: Tensor) -> Tensor:
        weights = (self.q(bag) @ self.k(bag).transpose(1, 2) * self.scale).softmax(-1)
        return weights @ self.v(bag)
