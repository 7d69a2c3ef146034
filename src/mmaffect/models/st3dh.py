"""ST-3DH (seed 001, "Research on Emotion Classification Based on Multi-modal Fusion"): space-time
Harris attention on the video, bilinear matching between modality pairs, temporal attention on the
matching matrices, a broadcast-added tri-modal tensor with attention over its audio axis, L1 loss.

Roles (SEEDS_SPEC §2.3, §9 item 11): Y = text is the pivot of both matching matrices, X = video,
Z = audio: ``M_xy = E_v W_1 E_tᵀ``, ``M_zy = E_a W_2 E_tᵀ``; ``α_x``/``α_z`` re-weight their rows,
``P[i, j, k] = M'_xy[i, j] + M'_zy[k, j]``, attention over k, then the three axis means of P' feed a
Dense(128) head. With two modalities the model is the one matching matrix (pivot = text if present),
with one it is the modality's pooled features -- the paper's uni-/bi-modal rows.

Inputs: sequences where a modality has them, else its utterance vector as one step (``needs``
``"sequences?"``), so the same model trains on the clip cache and on vector-only MOSI. Video: with
``video_frames=True`` the grayscale face crops (``v_frames`` (B, T, 48, 48), one per sampled frame)
go through :class:`~mmaffect.models.blocks.harris3d.Harris3DVideoEncoder`, whose per-frame outputs
are E_v; otherwise the per-step visual descriptors stand in and no Harris map is used. Choices,
stand-ins and measured numbers: docs/models/st3dh.md.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmaffect.errors import ConfigError
from mmaffect.models.base import AffectModel, Heads, ModelSpec
from mmaffect.models.blocks import as_sequence, masked_mean
from mmaffect.models.blocks.bilinear import (
    TENSOR_ATTENTION,
    TENSOR_OPS,
    BilinearMatch,
    MatchAttention,
    TensorAttention,
    broadcast_tensor,
    fit_length,
)
from mmaffect.models.blocks.harris3d import Harris3DVideoEncoder
from mmaffect.models.registry import register_model

ROLES = ("v", "t", "a")  # X, Y (pivot), Z


def _axis_mean(p: Tensor, mask: Tensor, keep: int) -> Tensor:
    """Masked mean of ``p`` (B, *axes) over every axis but ``keep`` (1-based axis of p); ``mask`` has
    p's shape and marks the real entries."""
    dims = [d for d in range(1, p.dim()) if d != keep]
    weights = mask.to(p.dtype)
    return (p * weights).sum(dims) / weights.sum(dims).clamp(min=1.0)


# L1 loss and Adam are the paper's; its "initial learning rate 0.15" and 2,000 epochs are read as a
# typo and an over-fitting budget (SEEDS_SPEC §2.4): lr 1e-3, plateau halving, early stopping.
_DEFAULTS = {"lr": 1e-3, "batch_size": 64, "epochs": 200, "patience": 20, "scheduler": "plateau"}


@register_model("st3dh", description="ST-3DH: 3-D Harris video attention, bilinear matching M=E_x W E_y^T, "
                "temporal attention, broadcast-added tri-modal tensor (seed 001)", train_defaults=_DEFAULTS)
class ST3DH(AffectModel):
    """Args (``model_args``):
        dim: width of every modality's per-step features E_m.
        max_len: steps per modality (padded/cut); W_x, W_p act on whole matrix rows, so it is fixed.
        hidden: width h of the attention layers (eqs. 10-16).
        temporal_attention: α_x/α_z re-weighting of the matching matrices (off = ablation).
        tensor_attention: ``full`` (W_p on the flattened t_x x t_y slab), ``pooled`` (on its mean over
            i) or ``off``.
        tensor_op: ``add`` (paper) or ``product`` (ablation).
        video_frames: read the face crops ``v_frames`` (B, T, H, W) and encode them with the
            Harris-weighted 3-D CNN (``video_channels`` per block), one E_v step per frame; ``harris``
            then switches the Harris weight map on/off.
        head_hidden, dropout: the prediction head, Dense(head_hidden) -> ReLU -> Dropout [A].
    """

    needs = frozenset({"vectors", "sequences?"})

    def __init__(self, spec: ModelSpec, *, dim: int = 64, max_len: int = 50, hidden: int = 64,
                 temporal_attention: bool = True, tensor_attention: str = "full", tensor_op: str = "add",
                 video_frames: bool = False, harris: bool = True, video_channels: tuple[int, ...] = (32, 64, 128),
                 head_hidden: int = 128, dropout: float = 0.1):
        super().__init__(spec)
        if tensor_attention not in TENSOR_ATTENTION:
            raise ConfigError(f"st3dh: tensor_attention must be one of {', '.join(TENSOR_ATTENTION)}")
        if tensor_op not in TENSOR_OPS:
            raise ConfigError(f"st3dh: tensor_op must be one of {', '.join(TENSOR_OPS)}")
        if max_len < 1:
            raise ConfigError("st3dh: max_len must be >= 1")
        present = [m for m in ROLES if m in spec.dims]
        if len(present) == 2 and "t" not in present:
            x, y = present  # no text: video is matched against audio
        elif len(present) == 2:
            x, y = next(m for m in present if m != "t"), "t"
        else:
            x, y = (present[0], None) if len(present) == 1 else ("v", "t")
        self.x, self.y, self.z = x, y, ("a" if len(present) == 3 else None)
        self.max_len, self.tensor_op, self.temporal = max_len, tensor_op, temporal_attention
        self.video_frames = video_frames and "v" in spec.dims
        if self.video_frames:
            self.needs = type(self).needs | {"frames"}
        encoders = {}
        for m in present:
            if m == "v" and self.video_frames:
                encoders[m] = Harris3DVideoEncoder(tuple(video_channels), out_dim=dim, harris=harris)
            else:
                encoders[m] = nn.Sequential(nn.Linear(spec.seq_dims.get(m, spec.dims[m]), dim), nn.ReLU())
        self.encoders = nn.ModuleDict(encoders)
        if self.y is not None:
            self.match_xy = BilinearMatch(dim, dim)
            if temporal_attention:
                self.att_x = MatchAttention(max_len, hidden)
        if self.z is not None:
            self.match_zy = BilinearMatch(dim, dim)
            if temporal_attention:
                self.att_z = MatchAttention(max_len, hidden)
            self.tensor_att = TensorAttention(max_len, max_len, hidden, tensor_attention)
        pooled = dim if self.y is None else (2 if self.z is None else 3) * max_len
        self.head = nn.Sequential(nn.Linear(pooled, head_hidden), nn.ReLU(), nn.Dropout(dropout))
        self.heads = Heads(head_hidden, spec.heads)

    def encode(self, batch: dict[str, Tensor], m: str) -> tuple[Tensor, Tensor]:
        """``E_m`` (B, max_len, dim) and its mask."""
        if m == "v" and self.video_frames:
            mask = batch["v_frames_mask"].clone()
            mask[~mask.any(1), 0] = True  # a clip without frames: one black frame, as as_sequence does
            seq = self.encoders[m].steps(batch["v_frames"], mask)
        else:
            seq, mask = as_sequence(batch, m)
            seq = self.encoders[m](seq)
        return fit_length(seq, mask, self.max_len)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        ex, mx = self.encode(batch, self.x)
        out: dict[str, Tensor] = {}
        if self.y is None:  # unimodal: the modality's features, pooled over time
            return self.heads(self.head(masked_mean(ex, mx)))
        ey, my = self.encode(batch, self.y)
        mxy = self.match_xy(ex, ey, mx, my)
        if self.temporal:
            mxy, out["alpha_x"] = self.att_x(mxy, mx)
        if self.z is None:  # bimodal: the one matching matrix, pooled along rows and columns
            pair = mx[:, :, None] & my[:, None, :]
            pooled = torch.cat([_axis_mean(mxy, pair, 1), _axis_mean(mxy, pair, 2)], -1)
            return out | self.heads(self.head(pooled))
        ez, mz = self.encode(batch, self.z)
        mzy = self.match_zy(ez, ey, mz, my)
        if self.temporal:
            mzy, out["alpha_z"] = self.att_z(mzy, mz)
        p = broadcast_tensor(mxy, mzy, self.tensor_op)
        p, alpha = self.tensor_att(p, mz)
        if alpha is not None:
            out["alpha_p"] = alpha
        real = mx[:, :, None, None] & my[:, None, :, None] & mz[:, None, None, :]
        pooled = torch.cat([_axis_mean(p, real, axis) for axis in (1, 2, 3)], -1)
        return out | self.heads(self.head(pooled))

